"""The LLM client over real HTTP against the scripted server: requests as sent, answers as parsed,
and every failure mapped to a user-safe LLMError (retried when worth retrying)."""

from __future__ import annotations

import json

import pytest

from bot.llm import ContextOverflow, LLMClient, LLMError, LLMUnreachable, RawJSON
from bot.tools import TOOL_SCHEMAS
from tests.llm_server import (
    ScriptedLLM,
    call,
    context_overflow,
    empty_choices,
    fail,
    hang,
    raw_body,
    reset_connection,
    say,
)


def client_for(llm: ScriptedLLM, **options: object) -> LLMClient:
    values: dict[str, object] = {"base_url": llm.base_url, "api_key": "sk-test", "model": "m",
                                 "max_retries": 0, "retry_backoff": 0.0}
    values.update(options)
    return LLMClient(**values)  # type: ignore[arg-type]


async def test_request_carries_messages_tools_and_key(llm: ScriptedLLM) -> None:
    llm.push(call("send_message", thoughts="hm", message="hi"))
    client = client_for(llm, temperature=0.2, max_response_tokens=77)
    encoded = RawJSON(json.dumps({"role": "user", "content": "pre-encoded"}))
    try:
        completion = await client.chat([{"role": "system", "content": "sys"}, encoded],
                                       TOOL_SCHEMAS)
    finally:
        await client.aclose()
    request = llm.requests[0]
    assert request["messages"] == [{"role": "system", "content": "sys"},
                                   {"role": "user", "content": "pre-encoded"}]
    assert request["tools"] == TOOL_SCHEMAS and request["tool_choice"] == "auto"
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("m", 0.2, 77)
    assert completion.content == "hm" and completion.finish_reason == "tool_calls"
    [tool_call] = completion.tool_calls
    assert tool_call.name == "send_message" and json.loads(tool_call.arguments) == {
        "message": "hi"}
    assert completion.usage.total_tokens > 0 and completion.wait_seconds > 0


async def test_plain_answer_without_tools(llm: ScriptedLLM) -> None:
    llm.push(say("just text"))
    client = client_for(llm)
    try:
        completion = await client.chat([{"role": "user", "content": "x"}])
    finally:
        await client.aclose()
    assert "tools" not in llm.requests[0] and "tool_choice" not in llm.requests[0]
    assert completion.content == "just text" and completion.tool_calls == []


@pytest.mark.parametrize(("step", "error", "text"), [
    (fail(401), LLMError, "rejected the API key"),
    (fail(429, headers={"retry-after": "0"}), LLMError, "rate-limited"),
    (fail(503), LLMError, r"had a problem \(HTTP 503\)"),
    (fail(400, "bad request"), LLMError, r"refused the request \(HTTP 400: bad request\)"),
    (context_overflow(1000, 5000), ContextOverflow, "maximum context length"),
    (empty_choices(), LLMError, "empty choices"),
    (raw_body("{not json"), LLMError, "could not be read"),
    (raw_body('{"choices": [{"message": "nope"}]}'), LLMError, "could not be read"),
    (reset_connection(), LLMUnreachable, "could not be reached"),
])
async def test_failures_become_user_safe_errors(llm: ScriptedLLM, step: object, error: type,
                                                text: str) -> None:
    llm.push(step)  # type: ignore[arg-type]
    client = client_for(llm)
    try:
        with pytest.raises(error, match=text):
            await client.chat([{"role": "user", "content": "x"}])
    finally:
        await client.aclose()


async def test_timeouts_and_dropped_connections_are_retried(llm: ScriptedLLM) -> None:
    llm.push(hang(), reset_connection(), fail(500), call("send_message", message="made it"))
    client = client_for(llm, max_retries=3, timeout=0.5)
    try:
        completion = await client.chat([{"role": "user", "content": "x"}])
    finally:
        await client.aclose()
    assert completion.tool_calls[0].name == "send_message" and llm.chat_calls == 4


async def test_no_answer_in_time(llm: ScriptedLLM) -> None:
    llm.push(hang())
    client = client_for(llm, timeout=0.3)
    try:
        with pytest.raises(LLMUnreachable, match="did not answer in time"):
            await client.chat([{"role": "user", "content": "x"}])
    finally:
        await client.aclose()


async def test_probe(llm: ScriptedLLM) -> None:
    client = client_for(llm)
    unreachable = LLMClient(base_url="http://127.0.0.1:9/v1", api_key="", model="m")
    try:
        assert await client.probe() == 200
        with pytest.raises(LLMUnreachable):
            await unreachable.probe()
    finally:
        await client.aclose()
        await unreachable.aclose()
