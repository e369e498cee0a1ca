"""The scripted LLM server, exercised through the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
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
    with pytest.raises(openai.BadRequestError, match="stream"):
        await chat(client, stream=True)


async def test_script_exhausted(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError, match="script exhausted"):
        await chat(client)


async def test_models(server: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert models == ["scripted-model"]


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
