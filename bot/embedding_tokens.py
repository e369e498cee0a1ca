"""Embedding models' own tokens: how long a text is for the model, and where to cut it.

Documents are cut into passages the model embeds whole (bot/memory/chunking.py), and inputs
longer than a model's window are clipped before they are sent (bot/embeddings.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TokenSplitter(Protocol):
    """An embedding model's own tokenizer, used to cut text into pieces the model embeds whole.

    ``starts`` is plain blocking work: call it from a worker thread, never the event loop.
    """

    window: int  # the most tokens of one input the model embeds (its special tokens excluded)

    def starts(self, texts: list[str]) -> list[np.ndarray]:
        """Per text, the character offset where each of its tokens starts (non-decreasing;
        its length is the text's token count)."""
        ...


class WordpieceSplitter:
    """The local model's tokenizer.json, without truncation: where every wordpiece lies."""

    def __init__(self, tokenizer_path: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # [CLS] and [SEP] take two of the model's max_tokens positions.
        self.window = max(1, max_tokens - self.tokenizer.num_special_tokens_to_add(False))

    def starts(self, texts: list[str]) -> list[np.ndarray]:
        # encode_batch runs without the GIL (and returns character offsets): the event loop
        # keeps running while a long document is tokenized.
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [np.maximum.accumulate(np.fromiter((o[0] for o in e.offsets), np.int64,
                                                  len(e.offsets))) if e.offsets
                else np.zeros(0, np.int64) for e in encodings]


# Input limits of OpenAI's embedding models, in tokens: 8191 "max input" in the embeddings guide
# (platform.openai.com/docs/guides/embeddings); the API reference for /v1/embeddings says 8192
# per input and 300,000 summed over one request (our batches stay far below that).
KNOWN_EMBEDDING_WINDOWS = {"text-embedding-3": 8191, "text-embedding-ada-002": 8191}
# Other servers' models: 512 is the smallest window common embedding models have (BERT-sized
# ones such as mxbai-embed-large, bge); EMBEDDING_MAX_INPUT_TOKENS says more when it is known.
DEFAULT_EMBEDDING_WINDOW = 512


def embedding_window_for(model: str) -> int:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, window in KNOWN_EMBEDDING_WINDOWS.items():
        if name.startswith(prefix):
            return window
    return DEFAULT_EMBEDDING_WINDOW


class TiktokenSplitter:
    """Token offsets by tiktoken, the tokenizer of OpenAI's embedding models (for another
    server's model an estimate; its window then leaves the margin)."""

    def __init__(self, model: str, window: int) -> None:
        from bot.tokens import load_encoding

        self.encoding = load_encoding(model)
        self.window = window

        # Each token's length in bytes, by id: offsets come from array lookups, not a Python
        # loop over the tokens (a 2 MB CSV is 2 million of them).
        self._lengths: np.ndarray | None = None
        if hasattr(self.encoding, "decode_single_token_bytes"):
            lengths = np.zeros(self.encoding.n_vocab, np.int64)  # type: ignore[attr-defined]
            for token in range(len(lengths)):
                with contextlib.suppress(KeyError):  # ids between ranks and special tokens
                    lengths[token] = len(self.encoding.decode_single_token_bytes(token))  # type: ignore[attr-defined]
            self._lengths = lengths

    def starts(self, texts: list[str]) -> list[np.ndarray]:
        return [self._starts(text) for text in texts]

    def _starts(self, text: str) -> np.ndarray:
        if self._lengths is None:  # the approximate counter: a token every four characters
            return np.arange(0, len(text), 4, dtype=np.int64)
        tokens = np.asarray(self.encoding.encode_ordinary(text), np.int64)  # no GIL held
        byte_starts = np.concatenate(([0], np.cumsum(self._lengths[tokens])[:-1]))
        raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8)
        # The character each byte belongs to (continuation bytes are 10xxxxxx).
        char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1
        return char_of_byte[np.minimum(byte_starts, len(raw) - 1)] if len(raw) else byte_starts

    def clip(self, text: str) -> str:
        starts = self._starts(text)
        return text if len(starts) <= self.window else text[: int(starts[self.window])]
