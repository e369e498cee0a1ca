"""What an LLM server's error means, and what to do about it: retry, wait, or tell the operator.

Providers answer the same few problems in their own words (sources next to each rule). A server
that is set up wrong (vLLM without tool calling, llama.cpp without --jinja, an Ollama model
without tool support) answers every request the same way, so retrying it only delays a one-line
explanation of what to change on the server; a request the server refuses because of something
stored in the conversation names that message and points to /pop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from bot import windows
from bot.redact import redact
from bot.tools import ToolError, parse_arguments


class LLMError(Exception):
    """The model could not be reached or gave no usable answer; the message is user-safe.
    `kind` says why (bot/llm_errors.py Kind, or "unreachable"/"unreadable")."""

    def __init__(self, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.kind = kind


class ContextOverflow(LLMError):
    """The server says the prompt does not fit the model's context window (`limit`: the window
    its error states, if it states one; bot/windows.py reads every provider's wording)."""

    def __init__(self, message: str, limit: int | None = None) -> None:
        super().__init__(message, "overflow")
        self.limit = limit


class LLMUnreachable(LLMError):
    """No HTTP answer at all: connection refused or dropped, or no answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "unreachable")


Kind = Literal["overflow", "retry", "config", "history", "tool_use_failed", "parameter",
               "refused"]

_OVERFLOW_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "exceeds the context",
    "exceeds the available context size",  # llama.cpp exceed_context_size_error
    "exceed_context_size_error",
    "input token count exceeds",  # Gemini
)


@dataclass(frozen=True)
class ProviderError:
    """An HTTP error answer, as the provider gave it."""

    status: int
    message: str
    code: str = ""
    type: str = ""
    param: str = ""
    retry_after: float | None = None
    failed_generation: str | None = None  # Groq tool_use_failed: what the model wrote
    window: int | None = None  # the context window an overflow error states (bot/windows.py)

    def describe(self) -> str:
        """Everything the operator needs, for the log (records are redacted by bot/redact.py)."""
        said = f" failed_generation={self.failed_generation[:500]!r}" if (
            self.failed_generation) else ""
        return (f"HTTP {self.status} code={self.code or '-'} type={self.type or '-'}"
                f" param={self.param or '-'}: {self.message[:1000]}{said}")


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    explanation: str  # one line, safe to show a user
    wait: float | None = None  # seconds to wait before the retry (kind "retry")
    message_index: int | None = None  # kind "history": which message of the request
    param: str | None = None  # kind "parameter": the request parameter the model refuses


def parse_error(status: int, body: bytes, headers: Any) -> ProviderError:
    """The error of any provider's body: OpenAI's {"error": {...}}, Gemini's [{"error": ...}],
    Ollama's {"error": "text"}, Anthropic's {"type": "error", "error": {...}}, llama.cpp's
    integer code with the kind in `type`, or plain text."""
    text = body.decode("utf-8", "replace")
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini's OpenAI endpoint wraps the error in a list
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(data, dict) and error is None and "message" in data:
        error = data  # a bare {"message": ..., "object": "error"} (vLLM, Mistral)
    message, code, kind, param, generation = text[:2000], "", "", "", None
    upstream = _upstream(error)
    if upstream is not None:
        # OpenRouter: {"message": "Provider returned error", "metadata": {"raw": "<the upstream
        # provider's own error body>", "provider_name": …}} (reVrost/go-openrouter#21,
        # prism-php/prism#813): the upstream's words are the reason.
        inner = parse_error(status, upstream.encode(), headers)
        name = error["metadata"].get("provider_name") if isinstance(error, dict) else None
        return ProviderError(status, f"{inner.message} (upstream: {name})" if name else
                             inner.message, inner.code, inner.type, inner.param,
                             inner.retry_after, inner.failed_generation, inner.window)
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        code = str(error.get("code") or "")
        kind = str(error.get("type") or error.get("status") or "")
        param = str(error.get("param") or "")
        if isinstance(error.get("failed_generation"), str):
            generation = error["failed_generation"]
    elif isinstance(error, str):
        message = error
    return ProviderError(status, message, code, kind, param, _retry_after(headers), generation,
                         windows.overflow_limit(message, {"error": error}))


def _upstream(error: Any) -> str | None:
    metadata = error.get("metadata") if isinstance(error, dict) else None
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    if isinstance(raw, dict | list):
        return json.dumps(raw)
    return raw if isinstance(raw, str) and raw.strip() else None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_context_overflow(status: int, code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    return status in (400, 413, 422) and (
        any(h in text for h in _OVERFLOW_HINTS) or windows.is_overflow_wording(text))


# -- server set up wrong: (what the server says, lower-cased) -> what to change -----------------
_CONFIG: list[tuple[str, str]] = [
    # vLLM, entrypoints/openai/serving_chat.py: 400 '"auto" tool choice requires
    # --enable-auto-tool-choice and --tool-call-parser to be set' (docs.vllm.ai features/
    # tool_calling).
    ("--enable-auto-tool-choice",
     "The vLLM server was started without tool calling: restart it with"
     " --enable-auto-tool-choice --tool-call-parser <parser for the model> (hermes for Qwen,"
     " llama3_json for Llama 3.1, mistral for Mistral)."),
    # llama.cpp server: 500 "tools param requires --jinja flag" (current builds,
    # /work/shared/PROVIDERS.md, measured); older builds 500 "Unsupported param: tools"
    # (ggml-org/llama.cpp#10920).
    ("requires --jinja",
     "The llama.cpp server cannot take tools: restart llama-server with --jinja (and a chat"
     " template with tool support)."),
    ("unsupported param: tools",
     "The llama.cpp server cannot take tools: update llama.cpp and start llama-server with"
     " --jinja."),
    # Ollama: 400 "registry.ollama.ai/library/llama2:13b does not support tools"
    # (ollama/ollama#14795, #11131; FoundationAgents/OpenManus#220 shows the /v1 body).
    ("does not support tools",
     "The model on this Ollama server has no tool support: set LLM_MODEL to one that has"
     " (e.g. qwen2.5, llama3.1; `ollama show <model>` lists its capabilities)."),
]

# Groq: 413 "Request too large for model `llama-3.3-70b-versatile` in organization `org_…` service
# tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 14810, please reduce your
# message size and try again." type "tokens", code "rate_limit_exceeded" (continuedev/
# continue#10218, assafelovic/gpt-researcher#985). A request larger than the whole per-minute
# allowance never succeeds by waiting (the answer budget counts too: zeeyado/koassistant.koplugin
# #106). 429 "Rate limit reached … Limit 6000, Used 5034, Requested 1443. Please try again in
# 4.77s." (elizaOS/eliza#4040) does, after that wait.
_TPM = re.compile(r"limit (\d+), (?:used (\d+), )?requested (\d+)", re.IGNORECASE)
_TRY_AGAIN = re.compile(r"try again in (?:(\d+)m)?(\d+(?:\.\d+)?)(ms|s)\b", re.IGNORECASE)
# Where a provider names the offending part of the request: OpenAI's param "messages.[3].role"
# or "messages[12].tool_calls[0].id", Anthropic's "messages.3.content", or the same in the text.
_MESSAGE_PARAM = re.compile(r"\bmessages\.?\[?(\d+)\]?")
# Refusals caused by what is stored in the conversation, with no index given.
_HISTORY_HINTS = (
    "failed to parse tool call arguments as json",  # llama.cpp/vLLM, replayed arguments
    "reasoning_content in the thinking mode must be passed back",  # DeepSeek
    "missing a thought_signature",  # Gemini 3
    "tool call id was",  # Mistral (mistral-common validator)
    "must be followed by tool messages",  # OpenAI ordering
    "must be a response to a preceeding message",
    "assistant message must contain either",  # llama.cpp
)


def wait_hint(error: ProviderError) -> float | None:
    """Seconds the provider asks us to wait: Retry-After, or "try again in 1m2.5s"."""
    if error.retry_after is not None:
        return error.retry_after
    match = _TRY_AGAIN.search(error.message)
    if not match:
        return None
    minutes, amount, unit = match.groups()
    seconds = float(amount) / (1000 if unit == "ms" else 1)
    return seconds + 60 * int(minutes or 0)


def classify(error: ProviderError) -> Verdict:
    text = error.message.lower()
    if is_context_overflow(error.status, f"{error.code} {error.type}", error.message):
        return Verdict("overflow", error.message)
    for hint, explanation in _CONFIG:
        if hint in text:
            return Verdict("config", explanation)
    # OpenAI's reasoning models under a name we do not recognise (an Azure deployment, a proxy's
    # alias): their refusals of max_tokens and temperature (tests/openai_rules.py cites them).
    if "use 'max_completion_tokens' instead" in text:
        return Verdict("parameter", "The model refuses max_tokens.", param="max_tokens")
    if "only the default (1) value is supported" in text and "temperature" in text:
        return Verdict("parameter", "The model refuses the temperature setting: leave"
                       " LLM_TEMPERATURE empty.", param="temperature")
    if error.status in (400, 422) and (streaming := _refused_streaming(error, text)):
        return Verdict("parameter", f"The server refuses {streaming}.", param=streaming)
    if "tool_use_failed" in (error.code, error.type):
        return Verdict("tool_use_failed", "The model wrote a function call the server could not"
                       " read (Groq tool_use_failed), twice.")
    if error.status == 401:
        return Verdict("config", "The language model server rejected the API key: check"
                       " LLM_API_KEY.")
    if error.status == 404 and "model" in text:
        return Verdict("config", "The language model server does not know this model: check"
                       " LLM_MODEL (GET /models lists what it serves).")
    tpm = _TPM.search(error.message) if "per minute" in text else None
    if tpm and int(tpm.group(3)) > int(tpm.group(1)):
        return Verdict("config", f"One request ({tpm.group(3)} tokens with the answer budget) is"
                       f" larger than the plan's {tpm.group(1)} tokens per minute: lower"
                       " LLM_CONTEXT_WINDOW and LLM_MAX_RESPONSE_TOKENS below that, or raise the"
                       " plan's limit.")
    wait = wait_hint(error)
    if error.status in (408, 409, 429) or error.status >= 500 or (
            error.status == 413 and wait is not None):
        if any(hint in text for hint in _HISTORY_HINTS):
            return _history(error)
        return Verdict("retry", _busy(error.status), wait)
    if error.status in (400, 413, 422) and (
            _MESSAGE_PARAM.search(error.param) or any(h in text for h in _HISTORY_HINTS)):
        return _history(error)
    return Verdict("refused", f"The language model server refused the request (HTTP"
                   f" {error.status}: {_clip(error.message, 160)}).")


# How servers word an unknown parameter: "Unrecognized request argument supplied: X" (OpenAI,
# Azure), "Extra inputs are not permitted" (pydantic-validated servers), "X is not supported".
_UNKNOWN_PARAM = ("unrecognized", "not supported", "unsupported", "extra inputs", "not permitted",
                  "unknown")


def _refused_streaming(error: ProviderError, text: str) -> str | None:
    """`stream_options` or `stream` when that is what the server refuses (it is then asked
    without it), else None."""
    for param in ("stream_options", "stream"):
        named = param in text.replace("stream_options", "") if param == "stream" else (
            param in text)
        if error.param == param or (named and any(h in text for h in _UNKNOWN_PARAM)):
            return param
    return None


def history_explanation(body: bytes, verdict: Verdict) -> str:
    """Which stored message the server refused, so the operator can /pop it."""
    where = ""
    if verdict.message_index is not None:
        messages = json.loads(body).get("messages") or []
        if 0 <= verdict.message_index < len(messages):
            message = messages[verdict.message_index]
            said = message.get("content") if isinstance(message.get("content"), str) else ""
            names = [c.get("function", {}).get("name") for c in message.get("tool_calls") or []]
            shown = said or (f"calls {', '.join(n for n in names if n)}" if names else "")
            where = (f" It is message {verdict.message_index} of the prompt"
                     f" ({message.get('role')}: {_clip(shown, 60)!r}).")
    return (f"{verdict.explanation}{where} If this keeps happening, /pop removes the latest"
            " messages from the conversation.")


def _history(error: ProviderError) -> Verdict:
    found = _MESSAGE_PARAM.search(error.param) or _MESSAGE_PARAM.search(error.message)
    index = int(found.group(1)) if found else None
    return Verdict("history", f"The language model server refused the stored conversation:"
                   f" {_clip(error.message, 160)}", message_index=index)


def _busy(status: int) -> str:
    if status == 429:
        return "The language model is rate-limited right now."
    return f"The language model server had a problem (HTTP {status})."


def _clip(text: str, limit: int) -> str:
    """The provider's words, short and without credentials (servers echo keys back)."""
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- Groq tool_use_failed: the call the model meant ----------------------------------------------
# `failed_generation` holds what the model wrote when Groq's parser gave up, in the model's own
# dialect: `<function=read={"file_path": "x"}</function>` (tashfeenahmed/freellmapi#291),
# `web_search{"query": "…"}</function>` (huggingface/smolagents#1119), or a fenced JSON
# `{"tool_calls": [...]}` (groq/groq-typescript#28).
_FENCE = re.compile(r"```(?:json)?")


def rescue_calls(generation: str, names: list[str]) -> list[tuple[str, str]]:
    """(name, arguments JSON) of the calls to offered functions found in the text, arguments
    repaired the way the agent repairs them; empty if none can be made out."""
    text = _FENCE.sub("", generation).strip()
    found: list[tuple[str, str]] = []
    for name, raw in _json_calls(text) or _dialect_calls(text, names):
        if name not in names:
            continue
        try:
            arguments = parse_arguments(raw) if isinstance(raw, str) else raw
        except ToolError:
            continue
        if isinstance(arguments, dict):
            found.append((name, json.dumps(arguments, ensure_ascii=False)))
    return found


def _json_calls(text: str) -> list[tuple[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    items = data.get("tool_calls", [data]) if isinstance(data, dict) else data
    calls: list[tuple[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        function = item.get("function") if isinstance(item.get("function"), dict) else item
        name = function.get("name")
        arguments = function.get("arguments", function.get("parameters", {}))
        if isinstance(name, str):
            calls.append((name, arguments))
    return calls


def _dialect_calls(text: str, names: list[str]) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    for name in sorted(names, key=len, reverse=True):
        for match in re.finditer(rf"(?<![\w-]){re.escape(name)}(?![\w-])[\s=>\"':,]*(?=\{{)",
                                 text):
            rest = text[match.end():]
            end = rest.find("</function>")
            calls.append((name, rest[:end] if end >= 0 else rest))
        if calls:
            break
    return calls
