"""Scripted OpenAI-compatible HTTP server for tests and benchmarks.

The real ``openai`` client talks HTTP to it on 127.0.0.1. Tests queue exactly what the
"model" answers (``server.push(say("hi"), call("send_message", message="ok"))``);
benchmarks set ``server.handler`` to build a step per request, plus ``latency``.

Strict by default: every chat request is checked the way the OpenAI API checks it
(tests/openai_rules.py). A request OpenAI would reject gets the same kind of 400 and is recorded
in ``violations``; leaving the server with violations nobody took (``take_violations``) fails the
test, so a bot that swallows the 400 cannot hide it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import hashlib
import inspect
import itertools
import json
import math
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

from aiohttp import web

from tests.openai_rules import Violation
from tests.providers import Provider, estimate_tokens
from tests.providers import provider as make_provider

StepKind = Literal["reply", "error", "empty", "hang", "reset", "raw"]
Handler = Callable[[dict[str, Any]], "Step | str | Awaitable[Step | str]"]

_call_ids = itertools.count(1)
_WORD = re.compile(r"\w+")
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


@dataclasses.dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # sent verbatim as function.arguments


@dataclasses.dataclass(frozen=True)
class Step:
    """One scripted answer. Build with the module-level helpers, not directly."""

    kind: StepKind
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None  # None -> "tool_calls" if calls else "stop"
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    delay: float = 0.0
    overflow_limit: int | None = None  # context_overflow: message computed per request

    def with_delay(self, seconds: float) -> Step:
        return dataclasses.replace(self, delay=seconds)


# -- step builders ---------------------------------------------------------------------------


def _tool_call(name: str, arguments: str) -> ToolCall:
    return ToolCall(id=f"call_{next(_call_ids)}", name=name, arguments=arguments)


def say(text: str, *, delay: float = 0.0) -> Step:
    """Plain assistant text, no tool calls, finish_reason "stop"."""
    return Step("reply", content=text, delay=delay)


def call(name: str, thoughts: str | None = None, *, delay: float = 0.0, **arguments: Any) -> Step:
    """One tool call; ``arguments`` are JSON-encoded. (Use ``calls`` for args named
    ``name``/``thoughts``/``delay``.)"""
    return calls([(name, arguments)], thoughts=thoughts, delay=delay)


def calls(
    items: Iterable[tuple[str, dict[str, Any]]], thoughts: str | None = None, *, delay: float = 0.0
) -> Step:
    """Several tool calls in one assistant message."""
    tcs = tuple(_tool_call(name, json.dumps(args)) for name, args in items)
    return Step("reply", content=thoughts, tool_calls=tcs, delay=delay)


def raw_call(
    name: str, arguments_text: str, thoughts: str | None = None, *, delay: float = 0.0
) -> Step:
    """Tool call whose ``arguments`` string is sent verbatim (e.g. malformed JSON)."""
    tcs = (_tool_call(name, arguments_text),)
    return Step("reply", content=thoughts, tool_calls=tcs, delay=delay)


def fail(
    status: int,
    message: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    delay: float = 0.0,
) -> Step:
    """HTTP error with an OpenAI-shaped body ``{"error": {message, type, param, code}}``."""
    etype = "server_error" if status >= 500 else _ERROR_TYPES.get(status, "invalid_request_error")
    msg = message or f"Scripted error (HTTP {status})"
    err = {"message": msg, "type": etype, "param": param, "code": code}
    return Step("error", status=status, error=err, headers=headers, delay=delay)


def context_overflow(limit: int = 8192, tokens: int | None = None, *, delay: float = 0.0) -> Step:
    """400 ``context_length_exceeded``; ``tokens`` defaults to max(limit+1, prompt estimate)."""
    msg = _overflow_message(limit, tokens) if tokens is not None else None
    step = fail(400, msg, code="context_length_exceeded", param="messages", delay=delay)
    return step if tokens is not None else dataclasses.replace(step, overflow_limit=limit)


def _overflow_message(limit: int, tokens: int) -> str:
    return (
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages."
    )


def truncated(text_or_call: str | Step, *, delay: float | None = None) -> Step:
    """Reply cut off at max_tokens: finish_reason "length" (a Step's calls are kept verbatim)."""
    step = say(text_or_call) if isinstance(text_or_call, str) else text_or_call
    delay = step.delay if delay is None else delay
    return dataclasses.replace(step, finish_reason="length", delay=delay)


def empty_choices(*, delay: float = 0.0) -> Step:
    """HTTP 200 with ``choices: []``."""
    return Step("empty", delay=delay)


def raw_body(body: str, *, status: int = 200, content_type: str = "application/json",
             delay: float = 0.0) -> Step:
    """Answer with exactly this body (truncated or invalid JSON, an HTML error page...)."""
    return Step("raw", content=body, status=status, headers={"Content-Type": content_type},
                delay=delay)


def hang() -> Step:
    """Never answer; released when the client disconnects or the server stops."""
    return Step("hang")


def reset_connection(*, delay: float = 0.0) -> Step:
    """Close the TCP connection without sending any response."""
    return Step("reset", delay=delay)


# -- request helpers -------------------------------------------------------------------------


def last_user_text(req: dict[str, Any]) -> str:
    """Text of the latest user-role message in a chat request ("" if none)."""
    for msg in reversed(req.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, list):  # content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    return ""


def tool_names(req: dict[str, Any]) -> list[str]:
    """Names of the tools (or legacy functions) offered in a chat request."""
    names = [t.get("function", {}).get("name") for t in req.get("tools") or []]
    names += [f.get("name") for f in req.get("functions") or []]
    return [n for n in names if n]


def embed_text(text: str, dim: int = 64) -> list[float]:
    """Deterministic L2-normalised signed hashed bag of lowercase words."""
    vec = [0.0] * dim
    for word in _WORD.findall(text.lower()) or [text]:
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 40) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def _embedding_inputs(raw: Any) -> list[str] | None:
    """str | list[str] | list[int] | list[list[int]] -> texts (token ids joined by spaces)."""
    if isinstance(raw, str) or (raw and isinstance(raw, list) and isinstance(raw[0], int)):
        raw = [raw]
    if not raw or not isinstance(raw, list):
        return None
    out = [" ".join(map(str, x)) if isinstance(x, list) else x for x in raw]
    return out if all(isinstance(x, str) for x in out) else None


_EMBEDDING_ENCODING: Any = None


def _embedding_tokens(text: str) -> int:
    """Tokens of one input as OpenAI counts them (cl100k_base, text-embedding-3's tokenizer)."""
    global _EMBEDDING_ENCODING
    if _EMBEDDING_ENCODING is None:
        from bot.tokens import load_encoding

        _EMBEDDING_ENCODING = load_encoding("text-embedding-3-small")
    return len(_EMBEDDING_ENCODING.encode_ordinary(text))


def _tool_call_json(tc: ToolCall) -> dict[str, Any]:
    return {
        "id": tc.id,
        "type": "function",
        "function": {"name": tc.name, "arguments": tc.arguments},
    }


def _error_response(step: Step) -> web.Response:
    return web.json_response({"error": step.error}, status=step.status, headers=step.headers)


# -- server ----------------------------------------------------------------------------------


class ScriptedLLM:
    """aiohttp server speaking the OpenAI chat/embeddings/models API from a script."""

    def __init__(
        self,
        latency: float = 0.0,
        embedding_dim: int = 64,
        *,
        model: str | None = None,
        embedding_latency: float = 0.0,
        strict: bool = True,
        provider: str | Provider = "openai",
        api_key: str | None = None,
    ) -> None:
        self.latency = latency
        # When set, every /v1 request must carry it as a bearer token (else OpenAI's 401).
        self.api_key = api_key
        self.strict = strict
        # Which real endpoint it plays (tests/providers/): what it rejects and how it answers.
        self.provider = make_provider(provider)
        self.provider.server = self
        # Requests OpenAI would have refused: (request index, what was wrong).
        self.violations: list[tuple[int, Violation]] = []
        self.embedding_dim = embedding_dim
        self.embedding_latency = embedding_latency
        # OpenAI refuses an input over the model's context (8192 tokens for every embedding
        # model: platform.openai.com/docs/api-reference/embeddings/create, "input").
        self.embedding_context_tokens = 8192
        self.model = model or self.provider.model
        self.handler: Handler | None = None
        # Called with each embeddings request body before it is answered (e.g. to inject a
        # crash at that moment); may be async.
        self.on_embedding: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None
        self.requests: list[dict[str, Any]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.chat_calls = 0
        self.streamed_calls = 0  # answers sent as server-sent events
        self.stream_piece = 7  # characters per streamed fragment of text or arguments
        self.stream_delay = 0.0  # seconds between streamed chunks (generation speed)
        # One-shot faults of the next streamed answers: ("drop", n) closes the connection after
        # n chunks; ("error", n) sends an error event instead of chunk n+1, as OpenAI does when
        # generation fails mid-stream.
        self.stream_faults: collections.deque[tuple[str, int]] = collections.deque()
        self.inflight = 0
        self.max_inflight = 0
        self.busy_seconds = 0.0  # summed simulated latency (overlapping requests add up)
        # Summed time from a handler's start (body still unread) to its response, simulated
        # latency excluded: the server's own work, which benchmarks do not charge to the bot.
        self.handled_seconds = 0.0
        self._script: collections.deque[Step] = collections.deque()
        self._embedding_script: collections.deque[Step] = collections.deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._port: int | None = None
        self._ids = itertools.count(1)
        self._arrived = asyncio.Condition()

    # -- lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._authorize])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        self.provider.routes(app)
        # handler_cancellation: a client that gives up (timeout) releases hang() at once.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        self._closing = asyncio.Event()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        self._closing.set()  # wakes hang()/delays so shutdown does not wait on them
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> ScriptedLLM:
        await self.start()
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.stop()
        if exc_type is None:
            self.assert_no_violations()

    def assert_no_violations(self) -> None:
        """Fail if a request broke the API's rules and no test claimed it."""
        if self.violations:
            listed = "; ".join(f"request #{n}: {v.message} (param {v.param})"
                               for n, v in self.violations)
            self.violations = []  # reported once
            raise AssertionError(f"requests the OpenAI API would reject: {listed}")

    def take_violations(self) -> list[Violation]:
        """The violations recorded so far, which the calling test expected (clears them)."""
        taken = [v for _, v in self.violations]
        self.violations = []
        return taken

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("ScriptedLLM not started")
        return f"http://127.0.0.1:{self._port}/v1"

    # -- scripting

    def push(self, *steps: Step) -> None:
        """Queue chat responses, consumed one per request in order."""
        for step in steps:
            if not isinstance(step, Step):
                raise TypeError(f"expected Step, got {type(step).__name__}")
        self._script.extend(steps)

    def push_embedding_failure(
        self, status: int | Step = 500, message: str | None = None, code: str | None = None
    ) -> None:
        """Make the next embeddings request fail (status, or a fail/hang/reset Step)."""
        step = status if isinstance(status, Step) else fail(status, message, code)
        if step.kind not in ("error", "hang", "reset"):
            raise ValueError("embedding failures must be fail(), hang() or reset_connection()")
        self._embedding_script.append(step)

    async def wait_for_requests(self, n: int) -> None:
        """Block until at least ``n`` chat requests have arrived (test synchronisation)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.chat_calls >= n)

    @property
    def pending(self) -> int:
        """Chat steps still queued."""
        return len(self._script)

    # -- internals

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Any) -> web.StreamResponse:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.api_key is None or sent == self.api_key or not request.path.startswith("/v1/"):
            return await handler(request)
        # OpenAI's answer to a wrong key: 401, code invalid_api_key, the key echoed with its
        # middle masked (openai/openai-python#2046 and countless threads quote it).
        masked = f"{sent[:3]}{'*' * 8}{sent[-4:]}" if len(sent) > 8 else sent
        return _error_response(fail(401, f"Incorrect API key provided: {masked}. You can find"
                                    " your API key at https://platform.openai.com/account/api-keys.",
                                    code="invalid_api_key"))

    async def _simulate(self, request: web.Request, step: Step | None, latency: float) -> None:
        """Apply latency / hang / reset. Drops the connection if the server is stopping."""
        if step is not None and step.kind == "hang":
            await self._closing.wait()
        elif (seconds := latency + (step.delay if step else 0.0)) > 0:
            self.busy_seconds += seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)
        if self._closing.is_set() or (step is not None and step.kind in ("hang", "reset")):
            if request.transport is not None:
                request.transport.abort()  # close TCP without a response
            await asyncio.sleep(0)  # connection_lost cancels this handler (handler_cancellation)
            raise ConnectionResetError("scripted connection drop")

    async def _read_json(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error_response(fail(400, "Request body must be a JSON object"))
        return body

    async def _next_step(self, body: dict[str, Any]) -> Step:
        if self._script:
            return self._script.popleft()
        if self.handler is None:
            return fail(500, f"script exhausted (chat request #{self.chat_calls})")
        try:
            result = self.handler(body)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            return fail(500, f"ScriptedLLM handler raised {exc!r}")
        result = say(result) if isinstance(result, str) else result
        if not isinstance(result, Step):
            return fail(500, f"ScriptedLLM handler returned {result!r}, not a Step")
        return result

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._timed(self._chat_timed, request)

    async def _timed(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     request: web.Request) -> web.StreamResponse:
        started, busy = time.perf_counter(), self.busy_seconds
        try:
            return await handler(request)
        finally:
            self.handled_seconds += time.perf_counter() - started - (self.busy_seconds - busy)

    async def _chat_timed(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        if isinstance(body, web.Response):
            return body
        self.requests.append(body)
        self.chat_calls += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        async with self._arrived:
            self._arrived.notify_all()
        try:
            problems = self.provider.reject(body) if self.strict else []
            if problems:
                self.violations += [(self.chat_calls, p) for p in problems]
                return web.json_response(problems[0].error_body(), status=problems[0].status)
            if body.get("stream") and not self.provider.streams:
                return _error_response(fail(400, "stream=true is not supported", param="stream"))
            refused = self.provider.refuse(body)
            if refused is not None:
                return await self._serve_chat(request, body, refused)
            body = self.provider.visible(body)
            step = self.provider.render(body, await self._next_step(body))
            if body.get("stream") and step.kind == "reply":
                return await self._serve_stream(request, body, step)
            return await self._serve_chat(request, body, step)
        finally:
            self.inflight -= 1

    async def _serve_chat(
        self, request: web.Request, body: dict[str, Any], step: Step
    ) -> web.StreamResponse:
        await self._simulate(request, step, self.latency)
        prompt_tokens = self.provider.prompt_tokens(body)
        if step.kind == "raw":
            content_type = (step.headers or {}).get("Content-Type", "application/json")
            return web.Response(text=step.content or "", status=step.status,
                                content_type=content_type)
        if step.kind == "error":
            if step.overflow_limit is not None:
                tokens = max(step.overflow_limit + 1, prompt_tokens)
                msg = _overflow_message(step.overflow_limit, tokens)
                step = dataclasses.replace(step, error={**(step.error or {}), "message": msg})
            return _error_response(step)
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        if step.kind == "reply":
            message: dict[str, Any] = {"role": "assistant", "content": step.content}
            if step.tool_calls:  # like OpenAI, the key is absent when there are no calls
                message["tool_calls"] = [_tool_call_json(tc) for tc in step.tool_calls]
            self.provider.shape(body, message, step)
            reason = step.finish_reason or ("tool_calls" if step.tool_calls else "stop")
            choices.append({"index": 0, "message": message, "finish_reason": reason})
            completion_tokens = max(1, estimate_tokens(message))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        usage["total_tokens"] = prompt_tokens + completion_tokens
        model = body.get("model", self.model)
        return web.json_response(
            {"id": f"chatcmpl-scripted-{next(self._ids)}", "object": "chat.completion",
             "created": int(time.time()), "model": model, "choices": choices, "usage": usage}
        )  # fmt: skip

    async def _serve_stream(
        self, request: web.Request, body: dict[str, Any], step: Step
    ) -> web.StreamResponse:
        """The answer as server-sent events of `chat.completion.chunk`s, the way OpenAI streams
        (platform.openai.com/docs/api-reference/chat-streaming and chat/object-chunk): a role
        delta, provider fields and content in pieces, each tool call opened at its `index` with
        id, type, name and empty arguments, then its arguments in `stream_piece`-character
        fragments cut anywhere (inside a word or an escape, as tokens fall) that carry only the
        index, a finish chunk, and with `stream_options.include_usage` a last chunk with the
        usage and an empty `choices` (every other chunk then has "usage": null), then
        `data: [DONE]`. A provider that does not stream tool calls (Ollama before 0.8) sends
        each call whole in one chunk. `stream_delay` seconds pass between chunks."""
        await self._simulate(request, step, self.latency)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{next(self._ids)}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.get("model", self.model)}
        if include_usage:
            head["usage"] = None
        message: dict[str, Any] = {"role": "assistant", "content": step.content}
        if step.tool_calls:
            message["tool_calls"] = [_tool_call_json(tc) for tc in step.tool_calls]
        self.provider.shape(body, message, step)
        piece = self.stream_piece
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        for key, value in message.items():  # reasoning fields and the like come first
            if key in ("role", "content", "tool_calls") or value is None:
                continue
            if isinstance(value, str):
                deltas += [{key: value[i:i + piece]} for i in range(0, len(value), piece)]
            else:
                deltas.append({key: value})
        content = message.get("content")
        if isinstance(content, str):
            deltas += [{"content": word} for word in re.findall(r"\S+\s*|\s+", content)]
        elif content is not None:
            deltas.append({"content": content})
        for index, tool_call in enumerate(message.get("tool_calls") or []):
            if not self.provider.streams_tool_calls:
                deltas.append({"tool_calls": [{"index": index, **tool_call}]})
                continue
            function = tool_call["function"]
            arguments = function["arguments"]
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            opening = {**tool_call, "function": {"name": function["name"], "arguments": ""}}
            deltas.append({"tool_calls": [{"index": index, **opening}]})
            deltas += [{"tool_calls": [{"index": index, "function": {
                "arguments": arguments[i:i + piece]}}]} for i in range(0, len(arguments), piece)]
        reason = step.finish_reason or ("tool_calls" if step.tool_calls else "stop")
        chunks = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                  for delta in deltas]
        chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
        if include_usage:
            prompt_tokens = self.provider.prompt_tokens(body)
            completion_tokens = max(1, estimate_tokens(message))
            chunks.append({**head, "choices": [], "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.streamed_calls += 1
        fault = self.stream_faults.popleft() if self.stream_faults else None
        for number, chunk in enumerate(chunks):
            if fault is not None and number == fault[1]:
                if fault[0] == "error":
                    error = {"error": {"message": "The server had an error while processing"
                                       " your request.", "type": "server_error",
                                       "param": None, "code": None}}
                    await response.write(f"data: {json.dumps(error)}\n\n".encode())
                    await response.write_eof()
                    return response
                if request.transport is not None:
                    request.transport.abort()
                return response
            if number and self.stream_delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.stream_delay)
                if self._closing.is_set():
                    return response
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._timed(self._embeddings_timed, request)

    async def _embeddings_timed(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        if isinstance(body, web.Response):
            return body
        self.embedding_requests.append(body)
        if self.on_embedding is not None:
            hooked = self.on_embedding(body)
            if inspect.isawaitable(hooked):
                await hooked
        step = self._embedding_script.popleft() if self._embedding_script else None
        await self._simulate(request, step, self.embedding_latency)
        if step is not None:
            return _error_response(step)
        texts = _embedding_inputs(body.get("input"))
        if texts is None:
            return _error_response(fail(400, "'input' must be a string or array", param="input"))
        for text in texts:
            if len(text) > self.embedding_context_tokens and (
                    _embedding_tokens(text) > self.embedding_context_tokens):
                # The whole request is refused, with OpenAI's wording: "Invalid 'input':
                # maximum context length is 8192 tokens." (neo4j-labs/agent-memory#104, 2026;
                # older: "This model's maximum context length is 8192 tokens, however you
                # requested N tokens", pingcap/autoflow#265), type invalid_request_error.
                return _error_response(fail(400, "Invalid 'input': maximum context length is"
                                            f" {self.embedding_context_tokens} tokens."))
        dim = int(body.get("dimensions") or self.embedding_dim)
        b64 = body.get("encoding_format") == "base64"
        data: list[dict[str, Any]] = []
        for i, text in enumerate(texts):
            vec: Sequence[float] | str = embed_text(text, dim)
            if b64:
                vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = sum(max(1, len(_WORD.findall(t))) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = body.get("model", self.model)
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list",
                                  "data": [self.provider.model_entry(self.model)]})
