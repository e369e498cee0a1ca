"""An answer of the chat-completions endpoint, as the agent reads it.

Servers differ in where they put things: the text as a string or a list of parts, the model's
reasoning in a field or in <think> blocks, tool-call arguments as text or as an object, fields a
provider needs sent back. This module reads them all into one `Completion`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.llm_errors import LLMError
from bot.messages import ToolCall


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass
class Completion:
    content: str | None  # the answer's text, without any <think> block
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    # Time spent waiting on the server (a free concurrency slot, the HTTP exchange, retry
    # back-off), excluding our own JSON work: what is left of a turn is the bot's overhead.
    wait_seconds: float = 0.0
    # The provider's fields of the answer that must go back with it (MESSAGE_FIELDS).
    extra: dict[str, Any] = field(default_factory=dict)
    # The model's private reasoning: a `reasoning_content` / `reasoning` field (DeepSeek, vLLM,
    # Ollama, OpenRouter), "thinking" content parts (Magistral) or <think> blocks in the text.
    reasoning: str | None = None


# Fields of an answer a provider needs back, unchanged, with the message in later requests:
# DeepSeek's thinking mode refuses a history whose tool-calling assistant messages lack their
# reasoning_content (400 "The reasoning_content in the thinking mode must be passed back to the
# API", api-docs.deepseek.com guides/thinking_mode); OpenRouter asks for reasoning_details back
# (openrouter.ai docs, reasoning tokens: preserving reasoning blocks).
MESSAGE_FIELDS = ("reasoning_content", "reasoning_details")
# ... and of each tool call: Gemini 3's thought signature, {"extra_content": {"google":
# {"thought_signature": "…"}}} beside "function" (ai.google.dev/gemini-api/docs/
# thought-signatures, OpenAI compatibility), else 400 "Function call is missing a
# thought_signature in functionCall parts".
CALL_FIELDS = ("extra_content",)


def parse_completion(raw: bytes, waited: float) -> Completion:
    """A chat-completions answer as the agent reads it; LLMError when there is none to read."""
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
            # No id: replayable_calls gives it a fresh one (unique, and in every server's shape).
            id=str(call.get("id") or ""),
            name=str(call["function"].get("name") or "").strip(),
            arguments=_arguments(call["function"].get("arguments")),
            extra={k: call[k] for k in CALL_FIELDS if k in call},
        )
        for call in (listed if isinstance(listed, list) else [])
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    ]
    usage = response.get("usage")
    content, reasoning = read_content(message.get("content"))
    reasoning = _joined(*(message.get(key) for key in _REASONING_FIELDS), reasoning)
    model = response.get("model")
    return Completion(
        content=content,
        reasoning=reasoning,
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
        usage=Usage(*(_count(usage.get(key)) for key in (
            "prompt_tokens", "completion_tokens", "total_tokens"))
        ) if isinstance(usage, dict) else Usage(),
        model=model if isinstance(model, str) else None,
        wait_seconds=waited,
        extra={k: message[k] for k in MESSAGE_FIELDS if message.get(k)},
    )


# Where servers put a thinking model's reasoning beside `content`: `reasoning_content` (DeepSeek,
# api-docs.deepseek.com/guides/reasoning_model; vLLM's reasoning parsers before 0.10) and
# `reasoning` (Ollama's /v1, openai/openai.go; vLLM since 0.10; OpenRouter; Groq).
_REASONING_FIELDS = ("reasoning_content", "reasoning")
# <think>…</think> in the text when the server runs no reasoning parser (Qwen3, DeepSeek-R1
# distills). A template that opens the block in the prompt leaves only "…</think>" in the answer
# (the Qwen3-Thinking-2507 model card); a cut-off answer may never close it.
_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
_THINK_CLOSE = "</think>"


def read_content(value: Any) -> tuple[str | None, str | None]:
    """(text, reasoning) of a message's content: a string, or a list of parts — {"type":
    "text"} and Magistral's {"type": "thinking", "thinking": [parts]} (spring-projects/spring-ai
    #5019 shows the shape) — with any <think> blocks moved to the reasoning."""
    thoughts: list[str | None] = []
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "thinking":
                thoughts.append(read_content(part.get("thinking"))[0])
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
        value = "".join(texts) if texts else None
    if not isinstance(value, str):
        return None, _joined(*thoughts)
    if _THINK_CLOSE in value and "<think>" not in value.split(_THINK_CLOSE, 1)[0]:
        before, value = value.split(_THINK_CLOSE, 1)
        thoughts.append(before)
    if "<think>" in value:
        thoughts += _THINK.findall(value)
        value = _THINK.sub("", value)
    return value.strip() or None, _joined(*thoughts)


def _joined(*parts: Any) -> str | None:
    texts = [p.strip() for p in parts if isinstance(p, str) and p.strip()]
    return "\n\n".join(texts) if texts else None


def _arguments(value: Any) -> str:
    """Arguments as the JSON text the agent parses; some servers send an object instead."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _count(value: Any) -> int:
    """A token count from the usage block; anything unreadable counts as 0, not as a crash."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
