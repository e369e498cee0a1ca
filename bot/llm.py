"""The LLM: any OpenAI-compatible chat-completions endpoint, with retries and a concurrency cap."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import openai

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
    """The server says the prompt does not fit the model's context window."""


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
    wait_seconds: float = 0.0  # time spent waiting on the server, for overhead measurements


def is_context_overflow(error: openai.APIStatusError) -> bool:
    code = getattr(error, "code", None) or ""
    text = f"{code} {error.message}".lower()
    return error.status_code in (400, 413, 422) and any(h in text for h in _OVERFLOW_HINTS)


def _retry_after(error: openai.APIStatusError) -> float | None:
    value = error.response.headers.get("retry-after") if error.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


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
        # The openai client's own retries are off: ours know about overflow and Retry-After.
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
        )
        self.model = model
        self.temperature = temperature
        self.max_response_tokens = max_response_tokens
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.tool_choice = tool_choice
        self._slots = asyncio.Semaphore(max_concurrency)

    async def aclose(self) -> None:
        await self.client.close()

    async def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> Completion:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_response_tokens,
        }
        if tools:
            request["tools"] = tools
            request["tool_choice"] = self.tool_choice
        started = time.perf_counter()
        response = await self._with_retries(request)
        waited = time.perf_counter() - started
        if not response.choices:
            raise LLMError("The model returned no answer (empty choices).")
        choice = response.choices[0]
        message = choice.message
        calls = [
            ToolCall(
                id=call.id or f"call_{index}",
                name=(call.function.name or "").strip(),
                arguments=call.function.arguments or "",
            )
            for index, call in enumerate(message.tool_calls or [])
            if getattr(call, "function", None) is not None
        ]
        usage = response.usage
        return Completion(
            content=message.content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            usage=Usage(
                usage.prompt_tokens or 0, usage.completion_tokens or 0, usage.total_tokens or 0
            ) if usage else Usage(),
            model=response.model,
            wait_seconds=waited,
        )

    async def _with_retries(self, request: dict[str, Any]) -> Any:
        attempt = 0
        while True:
            try:
                async with self._slots:
                    return await self.client.chat.completions.create(**request)
            except openai.APIStatusError as error:
                if is_context_overflow(error):
                    raise ContextOverflow(error.message) from error
                retryable = error.status_code == 429 or error.status_code >= 500
                if not retryable or attempt >= self.max_retries:
                    raise LLMError(_describe(error)) from error
                delay = _retry_after(error)
            except (openai.APITimeoutError, openai.APIConnectionError) as error:
                if attempt >= self.max_retries:
                    raise LLMError(_describe(error)) from error
                delay = None
            except openai.OpenAIError as error:  # e.g. a malformed response body
                raise LLMError(_describe(error)) from error
            attempt += 1
            if delay is None:
                delay = min(8.0, self.retry_backoff * 2 ** (attempt - 1))
            backoff = delay
            backoff = min(backoff, 30.0) * (0.8 + 0.4 * random.random())
            log.warning("LLM call failed (attempt %d), retrying in %.1fs", attempt, backoff)
            await asyncio.sleep(backoff)


def _describe(error: Exception) -> str:
    if isinstance(error, openai.APITimeoutError):
        return "The language model did not answer in time."
    if isinstance(error, openai.APIConnectionError):
        return "The language model server could not be reached."
    if isinstance(error, openai.AuthenticationError):
        return "The language model server rejected the API key."
    if isinstance(error, openai.RateLimitError):
        return "The language model is rate-limited right now."
    if isinstance(error, openai.APIStatusError):
        return f"The language model server returned an error ({error.status_code})."
    return "The language model returned something that could not be read."
