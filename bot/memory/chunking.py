"""Cutting a document into passages the embedding model embeds whole.

Pieces are measured in the model's own tokens (`TokenSplitter`, from the embedder) and cut where
a sentence or paragraph ends if one fits, else at whitespace. The work is linear in the text's
length: it is tokenized once to find the cuts and each piece once more to check it.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from bot.embeddings import TokenSplitter

# A passage's size for retrieval, in the embedding model's tokens (less if its window is smaller).
CHUNK_TOKENS = 300
_BLOCK_CHARS = 16_384  # characters tokenized (or scanned) per call while cutting a document
_BLOCK_OVERLAP = 256
_TEXTS_PER_CALL = 16
_SPACE_POINTS = np.asarray([c for c in range(0x3001) if chr(c).isspace()], np.uint32)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")


def chunk_text(text: str, splitter: TokenSplitter, max_tokens: int = CHUNK_TOKENS) -> list[str]:
    """Split into pieces of at most max_tokens of the embedding model's own tokens (and never
    more than its window), cut at sentence/paragraph ends where one fits, else at whitespace.

    Linear: the text is tokenized once to find the cuts and each piece once more to check it.
    Blocking work (seconds for megabytes): run it on a worker thread."""
    limit = max(1, min(max_tokens, splitter.window))
    chunks = _chunks(text, splitter, limit)
    if len(chunks) == 1 and len(text) <= _BLOCK_CHARS:
        return chunks  # the whole text, and its count was its own: nothing to check
    # A piece tokenized alone can come out a token or two longer than in its context (a cut
    # inside a word): check each and cut the few that overflow again, a little shorter.
    for _ in range(3):
        counts = [len(starts) for starts in _starts(splitter, chunks)]
        if all(count <= limit for count in counts):
            break
        fitted: list[str] = []
        for chunk, count in zip(chunks, counts, strict=True):
            fitted.extend([chunk] if count <= limit else
                          _chunks(chunk, splitter, max(1, limit - (count - limit) - 1)))
        chunks = fitted
    return chunks


def _starts(splitter: TokenSplitter, texts: list[str]) -> list[np.ndarray]:
    """splitter.starts, a few texts per call: the GIL is let go between calls."""
    found: list[np.ndarray] = []
    for begin in range(0, len(texts), _TEXTS_PER_CALL):
        found.extend(splitter.starts(texts[begin:begin + _TEXTS_PER_CALL]))
    return found


def _token_starts(text: str, splitter: TokenSplitter) -> np.ndarray:
    """Where each token of the whole text starts, tokenized in blocks cut at whitespace (so a
    block's tokens are the text's, and no one call holds megabytes)."""
    blocks: list[tuple[int, int]] = []
    begin = 0
    while begin < len(text):
        end = min(len(text), begin + _BLOCK_CHARS)
        if end < len(text):
            space = max(text.rfind(" ", begin + _BLOCK_CHARS // 2, end),
                        text.rfind("\n", begin + _BLOCK_CHARS // 2, end))
            end = space if space > begin else end
        blocks.append((begin, end))
        begin = end
    found = _starts(splitter, [text[a:b] for a, b in blocks])
    parts = [offset + starts for (offset, _), starts in zip(blocks, found, strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _whitespace(text: str) -> np.ndarray:
    """Per character, whether it is whitespace (str.isspace), as an array."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    space = (points == 32) | ((points >= 9) & (points <= 13)) | ((points >= 28) & (points <= 31))
    high = np.flatnonzero(points > 127)  # usually few: look those up
    if len(high):
        space[high] = np.isin(points[high], _SPACE_POINTS)
    return space


def _sentence_gaps(text: str) -> np.ndarray:
    """(start, end) of each sentence/paragraph break. Scanned a block at a time: one regex
    scan of megabytes holds the GIL throughout (260 ms for 2 MB), stalling the event loop."""
    gaps: list[tuple[int, int]] = []
    for begin in range(0, len(text), _BLOCK_CHARS):
        end = begin + _BLOCK_CHARS
        stop = min(len(text), end + _BLOCK_OVERLAP)
        for match in _SENTENCE_END.finditer(text, begin, stop):  # lookbehind sees before begin
            if match.start() >= end:
                break
            if gaps and match.start() < gaps[-1][1]:
                continue  # the rest of a break the previous block found
            finish = match.end()
            if finish == stop < len(text):  # it may run on past the scanned part
                whole = _SENTENCE_END.match(text, match.start())
                finish = whole.end() if whole else finish
            gaps.append((match.start(), finish))
    return np.asarray(gaps or [(-1, -1)], np.int64)


def _chunks(text: str, splitter: TokenSplitter, limit: int) -> list[str]:
    starts = _token_starts(text, splitter)
    if len(starts) <= limit:
        piece = text.strip()
        return [piece] if piece else []
    index = np.arange(len(starts))
    # Good places to cut before token k: a sentence/paragraph end (the token starts in or
    # right after the gap), else whitespace on either side of where it starts.
    gaps = _sentence_gaps(text)
    gap = np.searchsorted(gaps[:, 1], starts, side="left")
    inside = gap < len(gaps)
    sentence = inside & (gaps[np.minimum(gap, len(gaps) - 1), 0] <= starts)
    space = _whitespace(text)
    spaced = space[starts] | space[np.maximum(starts - 1, 0)]
    sentence[0] = spaced[0] = False
    last_sentence = np.maximum.accumulate(np.where(sentence, index, 0))
    last_space = np.maximum.accumulate(np.where(spaced, index, 0))
    cuts = [0]
    first = 0  # the first token of the piece being built
    while len(starts) - first > limit:
        end = first + limit  # the piece ends before this token at the latest
        cut = int(last_sentence[end])
        if cut <= first:
            cut = int(last_space[end])
        if cut <= first:
            cut = end
        cuts.append(int(starts[cut]))
        first = cut
    cuts.append(len(text))
    pieces = (text[a:b].strip() for a, b in itertools.pairwise(cuts))
    return [piece for piece in pieces if piece]
