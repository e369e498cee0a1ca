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
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai

from bot import windows
from bot.messages import ToolCall

log = logging.getLogger(__name__)

_OVERFLOW_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "exceeds the context",
)


class LLMError(Exception):
    """The model could not be reached or gave no usable answer; the message is user-safe."""


class ContextOverflow(LLMError):
    """The server says the prompt does not fit the model's context window (`limit`: the window
    its error states, if it states one; bot/windows.py reads every provider's wording)."""

    def __init__(self, message: str, limit: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class LLMUnreachable(LLMError):
    """No HTTP answer at all: connection refused or dropped, or no answer in time."""


class RawJSON(str):
    """A chat message already encoded as JSON, sent as is: a long conversation's messages are
    encoded once each (and cached by the context window), not again on every call."""


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass
class Completion:
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    # Time spent waiting on the server (a free concurrency slot, the HTTP exchange, retry
    # back-off), excluding our own JSON work: what is left of a turn is the bot's overhead.
    wait_seconds: float = 0.0


@dataclass
class _StatusError(Exception):
    status: int
    message: str
    code: str
    retry_after: float | None
    limit: int | None = None  # the context window an overflow error states


def is_context_overflow(status: int, code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    return status in (400, 413, 422) and (
        any(h in text for h in _OVERFLOW_HINTS) or windows.is_overflow_wording(text))


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _status_error(status: int, body: bytes, headers: Any) -> _StatusError:
    message, code = body.decode("utf-8", "replace")[:2000], ""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        code = str(error.get("code") or error.get("type") or "")
        if isinstance(error.get("type"), str):  # llama.cpp: integer code, the kind in type
            code = f"{code} {error['type']}".strip()
    elif isinstance(error, str):
        message = error
    limit = windows.overflow_limit(message, {"error": error})
    return _StatusError(status, message, code, _retry_after(headers), limit)


class LLMClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        temperature: float = 0.7,
        max_response_tokens: int = 1024,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_concurrency: int = 16,
        tool_choice: str = "auto",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.max_response_tokens = max_response_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.tool_choice = tool_choice
        self.max_concurrency = max_concurrency
        # The client's own retries are off: ours know about overflow and Retry-After.
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key or "not-needed", timeout=timeout,
            max_retries=0, http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )
        self._tools_cache: tuple[list[dict[str, Any]], str] | None = None
        self._slots = asyncio.Semaphore(max_concurrency)

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

    async def chat(
        self, messages: Sequence[dict[str, Any] | RawJSON],
        tools: list[dict[str, Any]] | None = None,
    ) -> Completion:
        head: dict[str, Any] = {"model": self.model}
        if _is_reasoning_model(self.model):
            # They refuse `max_tokens` ("Use 'max_completion_tokens' instead") and any
            # temperature but the default; reasoning tokens count against this budget too.
            head["max_completion_tokens"] = self.max_response_tokens
        else:
            head["temperature"] = self.temperature
            head["max_tokens"] = self.max_response_tokens
        if tools:
            head["tool_choice"] = self.tool_choice
        parts = [json.dumps(head, ensure_ascii=False)[:-1], ',"messages":[']
        parts.append(",".join(
            m if isinstance(m, RawJSON) else json.dumps(m, ensure_ascii=False) for m in messages
        ))
        parts.append("]")
        if tools:
            parts += [',"tools":', self._tools_json(tools)]
        parts.append("}")
        body = "".join(parts).encode()
        started = time.perf_counter()
        raw = await self._with_retries(body)
        waited = time.perf_counter() - started
        return _parse(raw, waited)

    def _tools_json(self, tools: list[dict[str, Any]]) -> str:
        # The tool schemas are the same list on every call: encode them once.
        if self._tools_cache is None or self._tools_cache[0] is not tools:
            self._tools_cache = (tools, json.dumps(tools, ensure_ascii=False))
        return self._tools_cache[1]

    async def _post(self, body: bytes) -> bytes:
        async with self._slots:
            try:
                return await self.client.post(
                    "/chat/completions", cast_to=bytes, content=body,
                    options={"headers": {"Content-Type": "application/json"}},
                )
            except openai.APIStatusError as error:
                raise _status_error(
                    error.status_code, error.response.content, error.response.headers
                ) from None

    async def _with_retries(self, body: bytes) -> bytes:
        attempt = 0
        while True:
            try:
                return await self._post(body)
            except _StatusError as error:
                if is_context_overflow(error.status, error.code, error.message):
                    raise ContextOverflow(error.message, error.limit) from None
                retryable = error.status == 429 or error.status >= 500
                if not retryable or attempt >= self.max_retries:
                    raise LLMError(_describe_status(error.status)) from None
                delay = error.retry_after
            except (openai.APIConnectionError, TimeoutError) as error:  # incl. APITimeoutError
                if attempt >= self.max_retries:
                    raise LLMUnreachable(_describe_unreachable(error)) from error
                delay = None
            attempt += 1
            if delay is None:
                delay = min(8.0, self.retry_backoff * 2 ** (attempt - 1))
            backoff = min(delay, 30.0) * (0.8 + 0.4 * random.random())
            log.warning("LLM call failed (attempt %d), retrying in %.1fs", attempt, backoff)
            await asyncio.sleep(backoff)


# What the API takes back in an assistant message (tests/openai_rules.py cites the rules): function
# names of 1-64 letters, digits, "_" or "-", and distinct call ids of at most 40 characters.
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_-]")
MAX_CALL_ID = 40


def replayable_calls(calls: list[ToolCall], fresh_id: Callable[[], str]) -> list[ToolCall]:
    """The model's calls as they can be sent back: a name or id the API would refuse (a model
    can return anything) would make every later request of the agent fail. What the model asked
    for is still what runs and what its result reports."""
    replayed: list[ToolCall] = []
    taken: set[str] = set()
    for call in calls:
        name = _NOT_IN_NAME.sub("_", call.name)[:64] or "unnamed_function"
        call_id = call.id
        if not call_id or len(call_id) > MAX_CALL_ID or call_id in taken:
            call_id = fresh_id()
        taken.add(call_id)
        replayed.append(ToolCall(call_id, name, call.arguments))
    return replayed


# OpenAI's reasoning models: o1, o3, o4-mini and gpt-5.x (but not gpt-5-chat, a chat model).
_REASONING_MODEL = re.compile(r"^(o1|o3|o4)(-|$)|^gpt-5(?!(\.\d+)?-chat)")


def _is_reasoning_model(model: str) -> bool:
    return _REASONING_MODEL.search(model.rsplit("/", 1)[-1]) is not None


def _parse(raw: bytes, waited: float) -> Completion:
    unreadable = LLMError("The language model returned something that could not be read.")
    try:
        response = json.loads(raw)
        choices = response.get("choices")
    except (ValueError, AttributeError):
        raise unreadable from None
    if not isinstance(choices, list):
        raise unreadable
    if not choices:
        raise LLMError("The model returned no answer (empty choices).")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        raise unreadable
    listed = message.get("tool_calls")
    calls = [
        ToolCall(
            id=str(call.get("id") or f"call_{index}"),
            name=str(call["function"].get("name") or "").strip(),
            arguments=_arguments(call["function"].get("arguments")),
        )
        for index, call in enumerate(listed if isinstance(listed, list) else [])
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    ]
    usage = response.get("usage")
    content = message.get("content")
    model = response.get("model")
    return Completion(
        content=content if isinstance(content, str) else None,
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
        usage=Usage(*(_count(usage.get(key)) for key in (
            "prompt_tokens", "completion_tokens", "total_tokens"))
        ) if isinstance(usage, dict) else Usage(),
        model=model if isinstance(model, str) else None,
        wait_seconds=waited,
    )


def _arguments(value: Any) -> str:
    """Arguments as the JSON text the agent parses; some servers send an object instead."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _count(value: Any) -> int:
    """A token count from the usage block; anything unreadable counts as 0, not as a crash."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


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


def _describe_status(status: int) -> str:
    if status == 401:
        return "The language model server rejected the API key."
    if status == 429:
        return "The language model is rate-limited right now."
    return f"The language model server returned an error ({status})."
