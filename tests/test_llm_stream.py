"""The LLM client streaming (`stream: true`) over real HTTP against the scripted server, which
streams as OpenAI does (tests/llm_server.py `_serve_stream`, rules cited there; the request's
`stream`/`stream_options` are checked as OpenAI checks them, tests/openai_rules.py)."""

from __future__ import annotations

import itertools
import json

from bot.llm import LLMClient
from bot.streaming import StreamAssembler
from bot.tools import TOOL_SCHEMAS
from tests.llm_server import ScriptedLLM, call, fail, raw_body, say

MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
ARGUMENTS = {"inner_thoughts": "greet them", "message": "Hello \"there\" \u00e9\U0001f600 " * 4,
             "request_heartbeat": False}


def client_for(llm: ScriptedLLM, **options: object) -> LLMClient:
    values: dict[str, object] = {"base_url": llm.base_url, "api_key": "sk-test", "model": "m",
                                 "max_retries": 1, "retry_backoff": 0.0}
    values.update(options)
    return LLMClient(**values)  # type: ignore[arg-type]


class Watcher:
    """What the stream showed while it came: send_message's text after each chunk."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []
        self.assemblers: list[int] = []

    def __call__(self, assembler: StreamAssembler) -> None:
        self.seen.append(assembler.spoken())
        if not self.assemblers or self.assemblers[-1] != id(assembler):
            self.assemblers.append(id(assembler))


async def test_a_streamed_answer_is_the_answer_unstreamed(llm: ScriptedLLM) -> None:
    llm.push(call("send_message", **ARGUMENTS), call("send_message", **ARGUMENTS))
    client, watch = client_for(llm), Watcher()
    try:
        whole = await client.chat(MESSAGES, TOOL_SCHEMAS)
        streamed = await client.chat(MESSAGES, TOOL_SCHEMAS, on_stream=watch)
    finally:
        await client.aclose()
    assert "stream" not in llm.requests[0]
    assert llm.requests[1]["stream"] is True
    assert llm.requests[1]["stream_options"] == {"include_usage": True}
    assert llm.streamed_calls == 1
    assert [(c.name, json.loads(c.arguments)) for c in streamed.tool_calls] == [
        (c.name, json.loads(c.arguments)) for c in whole.tool_calls]
    assert streamed.finish_reason == whole.finish_reason == "tool_calls"
    assert streamed.usage.prompt_tokens == whole.usage.prompt_tokens > 0
    # The text grew in many steps, each a prefix of the next, to the whole message.
    texts = [seen[0] for seen in watch.seen if seen]
    assert len(set(texts)) > 10
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert texts[-1] == ARGUMENTS["message"]


async def test_plain_text_streams_too(llm: ScriptedLLM) -> None:
    llm.push(say("one two three four"))
    contents: list[str] = []
    client = client_for(llm)
    try:
        completion = await client.chat(MESSAGES, TOOL_SCHEMAS, on_stream=lambda a: contents.append(
            "".join(a.content)))
    finally:
        await client.aclose()
    assert completion.content == "one two three four" and not completion.tool_calls
    assert "one two " in contents


async def test_a_server_refusing_stream_is_asked_without_it_from_then_on(
        llm: ScriptedLLM) -> None:
    llm.push(fail(400, "stream is not supported", param="stream"), say("a"), say("b"))
    client = client_for(llm, max_retries=0)
    try:
        first = await client.chat(MESSAGES, on_stream=Watcher())
        second = await client.chat(MESSAGES, on_stream=Watcher())
    finally:
        await client.aclose()
    assert (first.content, second.content) == ("a", "b")
    assert [r.get("stream") for r in llm.requests] == [True, None, None]


async def test_a_server_refusing_stream_options_still_streams(llm: ScriptedLLM) -> None:
    llm.push(fail(400, "Unrecognized request argument supplied: stream_options",
                  param="stream_options"), say("streamed anyway"))
    client = client_for(llm, max_retries=0)
    try:
        completion = await client.chat(MESSAGES, on_stream=Watcher())
    finally:
        await client.aclose()
    assert completion.content == "streamed anyway"
    assert llm.requests[-1]["stream"] is True and "stream_options" not in llm.requests[-1]
    assert llm.streamed_calls == 1


async def test_a_server_that_ignores_stream_is_read_whole(llm: ScriptedLLM) -> None:
    body = {"choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "whole"}}]}
    llm.push(raw_body(json.dumps(body)))
    client = client_for(llm)
    try:
        completion = await client.chat(MESSAGES, on_stream=Watcher())
    finally:
        await client.aclose()
    assert completion.content == "whole"


async def test_a_stream_cut_or_failing_midway_is_asked_again_from_the_start(
        llm: ScriptedLLM) -> None:
    for fault in ("drop", "error"):
        llm.stream_faults.append((fault, 6))
        llm.push(call("send_message", **ARGUMENTS), call("send_message", **ARGUMENTS))
        client, watch = client_for(llm), Watcher()
        try:
            completion = await client.chat(MESSAGES, TOOL_SCHEMAS, on_stream=watch)
        finally:
            await client.aclose()
        assert json.loads(completion.tool_calls[0].arguments) == ARGUMENTS, fault
        assert len(watch.assemblers) == 2, fault  # the retry started a fresh answer
        llm.take_violations()


async def test_stream_options_without_stream_is_refused_as_openai_does(
        llm: ScriptedLLM) -> None:
    """The double's own rule, so a client sending stream_options alone fails a test."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(
        f"{llm.base_url}/chat/completions", headers={"Authorization": "Bearer sk-test"},
        json={"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": True}},
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == "stream_options"
    assert [v.param for v in llm.take_violations()] == ["stream_options"]
