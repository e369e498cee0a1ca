"""The LLM: any OpenAI-compatible chat-completions endpoint, with retries and a concurrency cap.

Requests go through `openai.AsyncOpenAI` (its HTTP client, auth and error types), but through
its low-level `post` with a JSON body we build ourselves: `chat.completions.create` was measured
(docs/benchmarks.md) to spend 4-6 ms of our CPU per call at 10 messages and 44 ms at 200 —
validating and copying every message, building pydantic models of the answer — where posting
pre-encoded bytes and reading the bytes back costs about a millisecond. The SDK runs on its
aiohttp transport (`DefaultAioHttpClient`): its default httpx transport cost 1.1-1.6 ms of CPU a
call alone and more with many connections open (it scans its whole pool on every request).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import openai

# Re-exported (with the errors below): what callers of the client handle.
from bot.completion import Completion as Completion
from bot.completion import parse_completion
from bot.llm_errors import ContextOverflow as ContextOverflow
from bot.llm_errors import LLMError as LLMError
from bot.llm_errors import LLMUnreachable as LLMUnreachable
from bot.llm_errors import (
    ProviderError,
    Verdict,
    classify,
    history_explanation,
    parse_error,
    rescue_calls,
)
from bot.messages import ToolCall

# Re-exported: the agent imports them from here.
from bot.replay import MAX_CALL_ID as MAX_CALL_ID
from bot.replay import replayable_calls as replayable_calls
from bot.streaming import StreamAssembler

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

# Sees a streamed answer grow: called with its assembler after each chunk (keep it cheap).
StreamSink = Callable[[StreamAssembler], None]


class RawJSON(str):
    """A chat message already encoded as JSON, sent as is: a long conversation's messages are
    encoded once each (and cached by the context window), not again on every call."""


class _StatusError(Exception):
    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.describe())
        self.error = error


class LLMClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        temperature: float | None = None,
        max_response_tokens: int = 1024,
        reasoning_tokens: int = 8192,
        context_window: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_concurrency: int = 16,
        tool_choice: str = "auto",
        stream: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.max_response_tokens = max_response_tokens
        self.reasoning_tokens = reasoning_tokens
        # Caps the room for reasoning (the model's window; the engine keeps it current).
        self.context_window = context_window
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.tool_choice = tool_choice
        self.max_concurrency = max_concurrency
        # Whether answers an adapter shows while written are asked for with `stream: true`.
        self.stream = stream
        # The client's own retries are off: ours know about overflow and Retry-After.
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key or "not-needed", timeout=timeout,
            max_retries=0, http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )
        # Set when the server refuses the parameter, whatever the model's name says (a reasoning
        # model deployed under another name): not sent again.
        self.refused: set[str] = set()
        self._tools_cache: tuple[list[dict[str, Any]], str] | None = None
        self._slots = asyncio.Semaphore(max_concurrency)

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        return cls(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            model=settings.llm_model,
            temperature=settings.llm_temperature,
            max_response_tokens=settings.llm_max_response_tokens,
            reasoning_tokens=settings.llm_reasoning_tokens,
            context_window=settings.context_window,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            retry_backoff=settings.llm_retry_backoff,
            max_concurrency=settings.llm_max_concurrency,
            tool_choice=settings.llm_tool_choice,
            stream=settings.llm_stream,
        )

    async def aclose(self) -> None:
        await self.client.close()

    async def probe(self) -> int:
        """GET /models: the HTTP status (any answer means reachable); LLMUnreachable if none."""
        try:
            await self.client.get("/models", cast_to=bytes)
        except openai.APIStatusError as error:
            return error.status_code
        except (openai.APIConnectionError, TimeoutError) as error:
            raise LLMUnreachable(_describe_unreachable(error)) from error
        return 200

    def output_budget(self, max_tokens: int | None = None) -> int:
        """Tokens a call may generate: the answer's budget, plus room for the reasoning of a
        model that thinks first (it counts against the same budget; without room the answer
        comes back empty with finish_reason "length")."""
        budget = max_tokens or self.max_response_tokens
        if not _thinks(self.model):
            return budget
        room = self.reasoning_tokens
        if self.context_window:
            # A local R1 distill on Ollama's 4,096-token default must keep most of its window
            # for the conversation: vLLM refuses prompt + max_tokens over max_model_len.
            room = min(room, self.context_window // 4)
        return budget + room

    def request_head(self, *, max_tokens: int | None = None,
                     tool_choice: str | dict[str, Any] | None = None,
                     tools: bool = False) -> dict[str, Any]:
        """The request's parameters besides messages and tools."""
        head: dict[str, Any] = {"model": self.model}
        budget = self.output_budget(max_tokens)
        if _is_reasoning_model(self.model) or "max_tokens" in self.refused:
            # OpenAI's reasoning models refuse `max_tokens` ("Use 'max_completion_tokens'
            # instead") and any temperature but the default (tests/providers/openai_reasoning.py).
            head["max_completion_tokens"] = budget
        else:
            head["max_tokens"] = budget
        reasoning = _is_reasoning_model(self.model) or bool(
            self.refused & {"max_tokens", "temperature"})
        if self.temperature is not None and not reasoning:  # None: the model's own default
            head["temperature"] = self.temperature
        if tools:
            head["tool_choice"] = tool_choice or self.tool_choice
        return head

    async def chat(
        self, messages: Sequence[dict[str, Any] | RawJSON],
        tools: list[dict[str, Any]] | None = None, *, max_tokens: int | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        on_stream: StreamSink | None = None,
    ) -> Completion:
        """One completion. With `on_stream` (and streaming on, and not refused by the server)
        the answer is streamed and `on_stream` sees it grow, chunk by chunk; the Completion is
        the same either way."""
        parts = [',"messages":[', ",".join(
            m if isinstance(m, RawJSON) else json.dumps(m, ensure_ascii=False) for m in messages
        ), "]"]
        if tools:
            parts += [',"tools":', self._tools_json(tools)]
        parts.append("}")
        rest = "".join(parts)
        started = time.perf_counter()
        while True:
            head = self.request_head(max_tokens=max_tokens, tool_choice=tool_choice,
                                     tools=bool(tools))
            streaming = on_stream is not None and self.stream and "stream" not in self.refused
            if streaming:
                head["stream"] = True
                if "stream_options" not in self.refused:  # the usage, in a last chunk
                    head["stream_options"] = {"include_usage": True}
            body = (json.dumps(head, ensure_ascii=False)[:-1] + rest).encode()
            try:
                raw = await self._with_retries(body, on_stream if streaming else None)
            except _Rescued as rescued:
                rescued.completion.wait_seconds = time.perf_counter() - started
                return rescued.completion
            except _Refused as refused:
                param = refused.verdict.param or ""
                if param in self.refused:
                    raise LLMError(refused.verdict.explanation, "config") from None
                log.warning("the model refuses %r: not sending it from now on", param)
                self.refused.add(param)
                continue
            return parse_completion(raw, time.perf_counter() - started)

    def _tools_json(self, tools: list[dict[str, Any]]) -> str:
        # The tool schemas are the same list on every call: encode them once.
        if self._tools_cache is None or self._tools_cache[0] is not tools:
            self._tools_cache = (tools, json.dumps(tools, ensure_ascii=False))
        return self._tools_cache[1]

    async def _post(self, body: bytes, on_stream: StreamSink | None = None) -> bytes:
        async with self._slots:
            try:
                if on_stream is not None:
                    return await self._post_streaming(body, on_stream)
                return await self.client.post(
                    "/chat/completions", cast_to=bytes, content=body,
                    options={"headers": {"Content-Type": "application/json"}},
                )
            except openai.APIStatusError as error:
                raise _StatusError(parse_error(
                    error.status_code, error.response.content, error.response.headers
                )) from None

    async def _post_streaming(self, body: bytes, on_stream: StreamSink) -> bytes:
        """A streamed answer, put together as the body the same answer unstreamed has."""
        events = await self.client.post(
            "/chat/completions", cast_to=object, content=body, stream=True,
            stream_cls=openai.AsyncStream[object],
            options={"headers": {"Content-Type": "application/json"}},
        )
        if "json" in events.response.headers.get("content-type", ""):
            return await events.response.aread()  # a server that ignores `stream` answers whole
        assembler = StreamAssembler()
        try:
            async for chunk in events:
                assembler.feed(chunk)
                on_stream(assembler)
        except openai.APIStatusError:
            raise
        except openai.APIError as error:
            if isinstance(error, openai.APIConnectionError):
                raise
            # An error event in the middle of the stream ({"error": {...}} as a data line):
            # read like the same error answered before any chunk.
            raise _StatusError(parse_error(
                500, json.dumps({"error": error.body}).encode(), {})) from None
        if not assembler.chunks:
            return b"{}"  # nothing came: unreadable, like an empty body
        return json.dumps(assembler.response(), ensure_ascii=False).encode()

    async def _with_retries(self, body: bytes, on_stream: StreamSink | None = None) -> bytes:
        attempt = 0
        tool_use_failures = 0
        while True:
            try:
                return await self._post(body, on_stream)
            except _StatusError as failure:
                error = failure.error
                # The provider's own words reach the operator; the user gets one line.
                log.warning("LLM request refused: %s", error.describe())
                verdict = classify(error)
                if verdict.kind == "overflow":
                    raise ContextOverflow(error.message, error.window) from None
                if verdict.kind == "tool_use_failed":
                    # A sampling accident more often than not: ask once more, then make the
                    # call out of what the model wrote.
                    tool_use_failures += 1
                    if tool_use_failures == 1:
                        continue
                    if rescued := _rescue(body, error):
                        raise _Rescued(rescued) from None
                if verdict.kind == "parameter":
                    raise _Refused(verdict) from None
                if verdict.kind == "history":
                    raise LLMError(history_explanation(body, verdict), "history") from None
                if verdict.kind != "retry" or attempt >= self.max_retries:
                    raise LLMError(verdict.explanation, verdict.kind) from None
                delay = verdict.wait
            except (openai.APIConnectionError, TimeoutError) as error:  # incl. APITimeoutError
                if attempt >= self.max_retries:
                    raise LLMUnreachable(_describe_unreachable(error)) from error
                delay = None
            attempt += 1
            if delay is None:
                delay = min(8.0, self.retry_backoff * 2 ** (attempt - 1))
                backoff = min(delay, 30.0) * (0.8 + 0.4 * random.random())
            else:  # the server said how long: a little more, never less
                backoff = min(delay, 60.0) * (1.0 + 0.1 * random.random())
            log.warning("LLM call failed (attempt %d), retrying in %.1fs", attempt, backoff)
            await asyncio.sleep(backoff)


class _Refused(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.explanation)
        self.verdict = verdict


class _Rescued(Exception):
    def __init__(self, completion: Completion) -> None:
        super().__init__("rescued")
        self.completion = completion


def _rescue(body: bytes, error: ProviderError) -> Completion | None:
    """Groq's tool_use_failed carries what the model wrote (`failed_generation`): the calls to
    offered functions in it, arguments repaired, as if the server had parsed them."""
    if not error.failed_generation:
        return None
    request = json.loads(body)
    names = [t.get("function", {}).get("name", "") for t in request.get("tools") or []]
    found = rescue_calls(error.failed_generation, names)
    if not found:
        return None
    log.info("rescued %d call(s) from a tool_use_failed answer", len(found))
    calls = [ToolCall("", name, arguments) for name, arguments in found]
    return Completion(content=None, tool_calls=calls, finish_reason="tool_calls")


# OpenAI's reasoning models: o1, o3, o4-mini and gpt-5.x (but not gpt-5-chat, a chat model).
_REASONING_MODEL = re.compile(r"^(o1|o3|o4)(-|$)|^gpt-5(?!(\.\d+)?-chat)")
# Other models that think before they answer, inside the same output budget: DeepSeek's thinking
# mode ("max_tokens … includes the chain of thought", api-docs.deepseek.com guides/
# reasoning_model; on by default for V4, guides/thinking_mode), Gemini 2.5/3 (thinking counts
# toward maxOutputTokens), QwQ and R1 distills.
_THINKING_MODEL = re.compile(r"deepseek-(reasoner|v4|r1)|gemini-(2\.5|3)|qwq|-r1\b|thinking")


def _is_reasoning_model(model: str) -> bool:
    return _REASONING_MODEL.search(model.rsplit("/", 1)[-1]) is not None


def _thinks(model: str) -> bool:
    return _is_reasoning_model(model) or _THINKING_MODEL.search(model.lower()) is not None


def _describe_unreachable(error: BaseException) -> str:
    if isinstance(error, TimeoutError | openai.APITimeoutError) and _timed_out(error):
        return "The language model did not answer in time."
    return "The language model server could not be reached."


def _timed_out(error: BaseException) -> bool:
    """Whether a time-out really was one: the SDK's aiohttp transport reports a dropped or
    refused connection as a connect time-out too; the aiohttp error underneath tells."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, aiohttp.ServerTimeoutError | aiohttp.SocketTimeoutError):
            return True
        if isinstance(seen, aiohttp.ClientConnectionError):
            return False
        seen = seen.__cause__ or seen.__context__
    return True
