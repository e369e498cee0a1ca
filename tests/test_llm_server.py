"""The scripted LLM server, exercised through the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.llm_server import (
    ScriptedLLM,
    Step,
    call,
    calls,
    context_overflow,
    embed_text,
    empty_choices,
    fail,
    hang,
    last_user_text,
    raw_call,
    reset_connection,
    say,
    tool_names,
    truncated,
)

MSGS: list[Any] = [
    {"role": "system", "content": "You are a test."},
    {"role": "user", "content": "hello there"},
]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "send_message",
            "parameters": {"type": "object", "properties": {"message": {"type": "string"}}},
        },
    }
]


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as srv:
        yield srv


@pytest.fixture
async def client(server: ScriptedLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


async def chat(client: openai.AsyncOpenAI, **kw: Any) -> Any:
    return await client.chat.completions.create(
        model=kw.pop("model", "gpt-test"), messages=MSGS, tools=TOOLS, **kw
    )


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_plain_text(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(say("Hi!"))
    resp = await chat(client, model="my-model")
    assert resp.object == "chat.completion" and resp.model == "my-model"
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "Hi!"
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


async def test_tool_call_arguments_parsed(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(call("send_message", thoughts="greet them", message="hey ✓"))
    choice = (await chat(client)).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "greet them"
    (tc,) = choice.message.tool_calls or []
    assert tc.type == "function" and tc.id.startswith("call_")
    assert tc.function.name == "send_message"
    assert json.loads(tc.function.arguments) == {"message": "hey ✓"}


async def test_multiple_calls_unique_ids(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(calls([("core_memory_append", {"name": "human", "content": "x"}), ("noop", {})]))
    msg = (await chat(client)).choices[0].message
    assert msg.content is None
    tcs = msg.tool_calls or []
    assert [t.function.name for t in tcs] == ["core_memory_append", "noop"]
    assert json.loads(tcs[0].function.arguments) == {"name": "human", "content": "x"}
    assert len({t.id for t in tcs}) == 2


async def test_raw_arguments_verbatim(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(raw_call("send_message", '{"message": "unterminated'))
    (tc,) = (await chat(client)).choices[0].message.tool_calls or []
    assert tc.function.arguments == '{"message": "unterminated'


async def test_rate_limit(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(fail(429, "Slow down", code="rate_limit_exceeded", headers={"retry-after": "1"}))
    with pytest.raises(openai.RateLimitError) as exc:
        await chat(client)
    assert exc.value.code == "rate_limit_exceeded" and "Slow down" in exc.value.message
    assert exc.value.response.headers["retry-after"] == "1"


async def test_server_error(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(fail(500, "boom"))
    with pytest.raises(openai.InternalServerError, match="boom"):
        await chat(client)


async def test_context_overflow(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(context_overflow(limit=10), context_overflow(limit=4096, tokens=5000))
    with pytest.raises(openai.BadRequestError) as exc:
        await chat(client)
    assert exc.value.code == "context_length_exceeded"
    assert "maximum context length is 10 tokens. However, your messages resulted in" in str(
        exc.value
    )
    with pytest.raises(openai.BadRequestError, match="resulted in 5000 tokens"):
        await chat(client)


async def test_empty_choices(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(empty_choices())
    assert (await chat(client)).choices == []


async def test_truncated(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(truncated("Once upon a"), truncated(raw_call("send_message", '{"mess')))
    first = (await chat(client)).choices[0]
    assert first.finish_reason == "length" and first.message.content == "Once upon a"
    second = (await chat(client)).choices[0]
    assert second.finish_reason == "length"
    assert (second.message.tool_calls or [])[0].function.arguments == '{"mess'


async def test_hang_times_out_and_stop_returns() -> None:
    srv = ScriptedLLM()
    await srv.start()
    c = openai.AsyncOpenAI(base_url=srv.base_url, api_key="test", max_retries=0, timeout=0.3)
    srv.push(hang(), hang())
    with pytest.raises(openai.APITimeoutError):
        await chat(c)
    # A second hang still in flight must not block shutdown.
    pending = asyncio.create_task(chat(c, timeout=30))
    await srv.wait_for_requests(2)
    await asyncio.wait_for(srv.stop(), timeout=5)
    with pytest.raises(openai.APIConnectionError):
        await pending
    await c.close()


async def test_reset_connection(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push(reset_connection(), say("still alive"))
    with pytest.raises(openai.APIConnectionError):
        await chat(client)
    assert (await chat(client)).choices[0].message.content == "still alive"


async def test_requests_recorded_and_counters(
    server: ScriptedLLM, client: openai.AsyncOpenAI
) -> None:
    server.push(say("a"), say("b"))
    await chat(client)
    await chat(client, temperature=0.5)
    assert server.chat_calls == 2 and len(server.requests) == 2 and server.pending == 0
    assert server.requests[1]["temperature"] == 0.5
    assert server.requests[0]["messages"] == MSGS
    assert last_user_text(server.requests[0]) == "hello there"
    assert tool_names(server.requests[0]) == ["send_message"]
    assert server.inflight == 0 and server.max_inflight == 1


async def test_concurrency_and_latency_accounting() -> None:
    async with ScriptedLLM(latency=0.05) as srv:

        async def handler(req: dict[str, Any]) -> Step:
            await srv.wait_for_requests(4)  # every request is in flight before any answers
            return call("send_message", message=last_user_text(req).upper())

        srv.handler = handler
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="t", max_retries=0) as c:
            replies = await asyncio.gather(*(chat(c) for _ in range(4)))
        for r in replies:
            args = (r.choices[0].message.tool_calls or [])[0].function.arguments
            assert json.loads(args) == {"message": "HELLO THERE"}
        assert srv.chat_calls == 4 and srv.max_inflight == 4 and srv.inflight == 0
        assert srv.busy_seconds == pytest.approx(0.2)


async def test_async_handler_and_stream_rejected(
    server: ScriptedLLM, client: openai.AsyncOpenAI
) -> None:
    async def handler(req: dict[str, Any]) -> str:
        return f"{len(req['messages'])} messages"

    server.handler = handler
    assert (await chat(client)).choices[0].message.content == "2 messages"
    server.provider.streams = False  # a server that does not stream (the openai profile does)
    with pytest.raises(openai.BadRequestError, match="stream"):
        await chat(client, stream=True)


async def test_script_exhausted(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError, match="script exhausted"):
        await chat(client)


async def test_models(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert models == ["gpt-4o-mini"]  # the openai profile's model


async def test_embeddings(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    texts = ["my cat likes fish", "the cat likes fish a lot", "quarterly tax report deadline"]
    resp = await client.embeddings.create(model="emb", input=texts)  # base64 by default
    vecs = [d.embedding for d in resp.data]
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert all(len(v) == 64 and math.isclose(cosine(v, v), 1, rel_tol=1e-5) for v in vecs)
    assert cosine(vecs[0], vecs[1]) > cosine(vecs[0], vecs[2])
    assert vecs[0] == pytest.approx(embed_text(texts[0]), abs=1e-6)
    assert server.embedding_requests[0]["encoding_format"] == "base64"

    floats = await client.embeddings.create(model="emb", input=texts[0], encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vecs[0], abs=1e-6)  # deterministic
    tokens = await client.embeddings.create(model="emb", input=[[1, 2, 3]], dimensions=8)
    assert len(tokens.data[0].embedding) == 8
    assert resp.usage.prompt_tokens > 0


async def test_embedding_failure(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    server.push_embedding_failure(503)
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model="emb", input="x")
    ok = await client.embeddings.create(model="emb", input="x")
    assert len(ok.data[0].embedding) == 64


# -- strict mode: requests the OpenAI API rejects are rejected (and recorded) ---------------------

USER = {"role": "user", "content": "hi"}


def asks(*ids: str) -> dict[str, Any]:
    """An assistant message calling send_message once per id."""
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function",
         "function": {"name": "send_message", "arguments": '{"message": "x"}'}} for i in ids]}


def answers(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": '{"status": "OK"}'}


def with_call(**changes: Any) -> dict[str, Any]:
    """asks("c1") with fields of its tool call (or of its function) replaced."""
    message = asks("c1")
    tool_call = message["tool_calls"][0]
    for key, value in changes.items():
        (tool_call["function"] if key in ("name", "arguments") else tool_call)[key] = value
    return message


def tool(name: str = "send_message", parameters: Any = None) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "parameters": parameters or {"type": "object", "properties": {}}}}


REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("user-between-call-and-result", {"messages": [USER, asks("c1"), USER, answers("c1")]},
     "must be followed by tool messages responding to each 'tool_call_id'"),
    ("missing-result", {"messages": [USER, asks("c1", "c2"), answers("c1")]},
     "did not have response messages: c2"),
    ("assistant-before-result", {"messages": [USER, asks("c1"), asks("c2"), answers("c1")]},
     "must be followed by tool messages"),
    ("orphan-result", {"messages": [USER, answers("c9")]},
     "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'"),
    ("result-twice", {"messages": [USER, asks("c1"), answers("c1"), answers("c1")]},
     "Duplicate value for 'tool_call_id' of 'c1'"),
    ("same-id-twice-in-one-message", {"messages": [USER, asks("c1", "c1"), answers("c1")]},
     "Duplicate value for 'tool_call_id'"),
    ("unknown-role", {"messages": [{"role": "bot", "content": "hi"}]},
     "Invalid value: 'bot'. Supported values are"),
    ("user-content-null", {"messages": [{"role": "user", "content": None}]},
     "expected a string, got null"),
    ("assistant-null-without-calls",
     {"messages": [USER, {"role": "assistant", "content": None}, USER]},
     "expected a string, got null"),
    ("image-in-system", {"messages": [
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, USER]},
     "Invalid value: 'image_url'"),
    ("call-type-not-function", {"messages": [USER, with_call(type="tool"), answers("c1")]},
     "Supported values are: 'function'"),
    ("call-name-with-space", {"messages": [USER, with_call(name="send message"), answers("c1")]},
     "tool_calls[0].function.name': string does not match pattern"),
    ("call-name-too-long", {"messages": [USER, with_call(name="n" * 65), answers("c1")]},
     "string does not match pattern"),
    ("arguments-not-a-string",
     {"messages": [USER, with_call(arguments={"message": "x"}), answers("c1")]},
     "function.arguments': expected a string"),
    ("call-id-too-long",
     {"messages": [USER, asks("c" * 41), answers("c" * 41)]},
     "Expected a string with maximum length 40, but got a string with length 41"),
    ("no-calls-listed", {"messages": [USER, {"role": "assistant", "content": "hm",
                                             "tool_calls": []}, USER]},
     "tool_calls': empty array"),
    ("nickname-as-name", {"messages": [{"role": "user", "name": "Zed 🍵", "content": "hi"}]},
     "messages[0].name': string does not match pattern"),
    ("tool-name-with-space", {"tools": [tool("send message")]},
     "tools[0].function.name': string does not match pattern"),
    ("tool-parameters-not-object", {"tools": [tool(parameters={"type": "array"})]},
     "schema must be a JSON Schema of 'type: \"object\"'"),
    ("no-tools-listed", {"tools": []}, "'tools': empty array"),
    ("tool-choice-without-tools", {"tools": None, "tool_choice": "auto"},
     "'tool_choice' is only allowed when 'tools' are specified"),
    ("unknown-parameter", {"extra_body": {"reasoning_budget": 3}},
     "Unrecognized request argument supplied: reasoning_budget"),
    ("reasoning-max-tokens", {"model": "o3-mini", "max_tokens": 100},
     "'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."),
    ("o1-max-tokens", {"model": "o1", "max_tokens": 100}, "Use 'max_completion_tokens'"),
    ("o4-mini-temperature", {"model": "o4-mini", "temperature": 0.2},
     "'temperature' does not support 0.2 with this model. Only the default (1) value"),
    ("gpt-5-temperature", {"model": "gpt-5.1", "temperature": 0.7},
     "Only the default (1) value is supported"),
]


async def rejected_request(client: openai.AsyncOpenAI, request: dict[str, Any]) -> str:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(**{
            "model": "gpt-4o-mini", "messages": MSGS, "tools": TOOLS, **request})
    assert caught.value.type == "invalid_request_error"
    return caught.value.message


@pytest.mark.parametrize(("request_", "expected"), [r[1:] for r in REJECTED],
                         ids=[r[0] for r in REJECTED])
async def test_strict_mode_rejects_what_openai_rejects(
    server: ScriptedLLM, client: openai.AsyncOpenAI, request_: dict[str, Any], expected: str
) -> None:
    server.push(say("never sent"))
    message = await rejected_request(client, request_)
    assert expected in message
    violations = server.take_violations()
    assert violations and expected in violations[0].message
    assert server.pending == 1  # a rejected request consumes no scripted answer


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("call-then-results", {"messages": [USER, asks("c1", "c2"), answers("c2"), answers("c1"),
                                        USER]}),
    ("name-pattern", {"messages": [{"role": "user", "name": "Zed_01-x", "content": "hi"}]}),
    ("content-parts", {"messages": [{"role": "user", "content": [{"type": "text",
                                                                  "text": "hi"}]}]}),
    ("chat-model-params", {"model": "gpt-4o-mini", "max_tokens": 100, "temperature": 0.7}),
    ("reasoning-model-params", {"model": "gpt-5", "max_completion_tokens": 100,
                                "temperature": 1, "reasoning_effort": "low"}),
    ("gpt-5-chat-temperature", {"model": "gpt-5-chat-latest", "temperature": 0.7}),
    ("tool-choice-object", {"tool_choice": {"type": "function",
                                            "function": {"name": "send_message"}}}),
]


@pytest.mark.parametrize("request_", [r[1] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
async def test_strict_mode_accepts_what_openai_accepts(
    server: ScriptedLLM, client: openai.AsyncOpenAI, request_: dict[str, Any]
) -> None:
    server.push(say("fine"))
    reply = await client.chat.completions.create(**{
        "model": "gpt-4o-mini", "messages": MSGS, "tools": TOOLS, **request_})
    assert reply.choices[0].message.content == "fine"
    assert server.violations == []


async def test_a_violation_nobody_took_fails_the_test_even_if_the_400_was_handled() -> None:
    srv = ScriptedLLM()
    with pytest.raises(AssertionError, match="requests the OpenAI API would reject: request #1"):
        async with srv, openai.AsyncOpenAI(base_url=srv.base_url, api_key="t",
                                           max_retries=0) as c:
            with contextlib.suppress(openai.BadRequestError):  # the bot "handles" it
                await rejected_request(c, {"messages": [USER, answers("c9")]})
    assert srv.violations == []  # reported once


async def test_lenient_mode_is_opt_in() -> None:
    async with ScriptedLLM(strict=False) as srv:
        srv.push(say("anything goes"))
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="t", max_retries=0) as c:
            reply = await c.chat.completions.create(
                model="o3", max_tokens=5, messages=[USER, answers("c9")])  # type: ignore[list-item]
        assert reply.choices[0].message.content == "anything goes"
