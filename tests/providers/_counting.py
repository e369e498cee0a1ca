"""How local servers count a prompt: their own tokenizer over the chat template's rendering.

Measured here against real tokenizers (../shared/PROVIDERS.md, "Token counts"): on English prose
Qwen2.5's tokenizer counts about what tiktoken's cl100k counts, but it splits numbers into single
digits (its pre-tokenizer's `\\p{N}` rule; cl100k groups up to three), which is where its +27% on
this bot's event JSON (timestamps, 18-digit ids) and +74% on digit-heavy text come from. Gemma's
tokenizer counted about 1.25x cl100k overall. Chat templates add framing per message and write
the tools as one JSON object a line with ", " / ": " separators (Qwen) or indented (Llama 3.1):
23-54% more than compact JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_ENCODING: Any = None
_DIGITS = re.compile(r"\d+")


def cl100k(text: str) -> int:
    global _ENCODING
    if _ENCODING is None:
        from bot.tokens import load_encoding

        _ENCODING = load_encoding("gpt-4")
    return len(_ENCODING.encode_ordinary(text))


def single_digit_tokens(text: str) -> int:
    """cl100k's count with every digit a token of its own (Qwen2.5, Llama 2, Gemma...)."""
    extra = sum(len(run) - math.ceil(len(run) / 3) for run in _DIGITS.findall(text))
    return cl100k(text) + extra


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    parts = [content if isinstance(content, str) else ""]
    for call in message.get("tool_calls") or []:
        function = (call.get("function") or {}) if isinstance(call, dict) else {}
        parts.append(json.dumps({"name": function.get("name", ""),
                                 "arguments": function.get("arguments", "")}))
    return " ".join(parts)


def template_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, *,
                    factor: float = 1.0, per_message: int = 5, tools_indent: int | None = None,
                    split_digits: bool = True) -> int:
    """The prompt's tokens as the server counts them: single digits, the template's framing,
    then `factor` for what else its tokenizer does differently (ceil: never below cl100k's).
    With `split_digits=False` and a factor, a tokenizer measured only as a whole (Gemma)."""
    count = single_digit_tokens if split_digits else cl100k
    total = sum(count(_text(m)) + per_message for m in messages if isinstance(m, dict))
    if tools and split_digits:
        rendered = "\n".join(json.dumps(t, indent=tools_indent) for t in tools)
        total += count(rendered) + 60  # the template's "# Tools ... <tools></tools>" preamble
    elif tools:
        total += count(json.dumps(tools, separators=(",", ":")))
    return math.ceil(factor * total)
