"""/attach chunking (issue 10, defect 3): linear work, off the event loop, in the embedding
model's own tokens, nothing lost."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from bot.config import Settings
from bot.embeddings import LocalEmbedder, TokenSplitter
from bot.engine import Engine
from bot.memory import archival
from bot.memory.chunking import CHUNK_TOKENS, chunk_text
from tests.conftest import SCRIPTED_EMBEDDINGS, SPEC


class CountingSplitter:
    """The real splitter, counting the characters it is asked to tokenize (a spy)."""

    def __init__(self, inner: TokenSplitter) -> None:
        self.inner = inner
        self.window = inner.window
        self.chars = 0
        self.calls = 0

    def starts(self, texts: list[str]) -> list[Any]:
        self.calls += 1
        self.chars += sum(len(t) for t in texts)
        return self.inner.starts(texts)


def _one_giant_sentence(chars: int) -> str:
    """A log/CSV-like run with no sentence end at all (the quadratic case)."""
    words = ("alpha", "beta7", "gamma,42", "delta;x", "eps-99", "zeta/2")
    out: list[str] = []
    size = 0
    i = 0
    while size < chars:
        word = words[i % len(words)] + str(i % 97)
        out.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(out)[:chars]


def _assert_preserved(text: str, chunks: list[str]) -> None:
    """Every chunk is the text's own next piece, in order; only whitespace lies between."""
    position = 0
    for chunk in chunks:
        assert chunk and chunk == chunk.strip()
        found = text.find(chunk, position)
        assert found >= 0, "a chunk is not a piece of the text"
        assert text[position:found].strip() == "", "text was lost between two chunks"
        position = found + len(chunk)
    assert text[position:].strip() == "", "the text's tail was lost"


async def test_chunking_tokenizes_each_character_a_bounded_number_of_times(
    local_model_dir: Path, tmp_path: Path
) -> None:
    embedder = LocalEmbedder(local_model_dir, tmp_path / "models")
    try:
        splitter = CountingSplitter(await embedder.splitter())
        text = _one_giant_sentence(200_000)
        chunks = await asyncio.to_thread(chunk_text, text, splitter)
        assert len(chunks) > 100
        # Linear: each character is tokenized a small constant number of times (once to cut,
        # once to check each piece), not once per cut as before (~n²/cut characters).
        assert splitter.chars <= 3 * len(text), splitter.chars
        _assert_preserved(text, chunks)
    finally:
        await embedder.aclose()


async def test_chunking_with_tiktoken_splitter_is_linear_too(engine: Engine) -> None:
    splitter = CountingSplitter(await engine.embedder.splitter())
    text = _one_giant_sentence(200_000)
    chunks = await asyncio.to_thread(chunk_text, text, splitter)
    assert splitter.chars <= 3 * len(text), splitter.chars
    counts = [len(s) for s in splitter.inner.starts(chunks)]
    assert max(counts) <= CHUNK_TOKENS
    _assert_preserved(text, chunks)


async def test_event_loop_keeps_running_during_a_2mb_attach(
    make_settings: Callable[..., Settings], monkeypatch: Any
) -> None:
    # The scripted endpoint embeds the ~4,500 passages: the local model would spend minutes of
    # CPU on them (off the loop, but this test is about the chunking).
    async with Engine(make_settings(**SCRIPTED_EMBEDDINGS)) as engine:
        await _attach_while_the_loop_ticks(engine, monkeypatch)


async def _attach_while_the_loop_ticks(engine: Engine, monkeypatch: Any) -> None:
    await engine.send("cli:a", "hello", spec=SPEC)
    loop_thread = threading.get_ident()
    ticks = 0
    seen: dict[str, Any] = {}
    chunked = threading.Event()
    real_chunk_text = archival.chunk_text

    def spying_chunk_text(*args: Any, **kwargs: Any) -> list[str]:
        seen["thread"] = threading.get_ident()
        seen["ticks_before"] = ticks
        try:
            return real_chunk_text(*args, **kwargs)
        finally:
            seen["ticks_after"] = ticks
            chunked.set()

    monkeypatch.setattr(archival, "chunk_text", spying_chunk_text)
    lines = [f"2026-12-04T03:{i % 60:02d}:00Z,host{i % 13},GET /api/item/{i},200,{i * 7 % 997}"
             for i in range(40_000)]
    text = "\n".join(lines)[:2_000_000]
    assert len(text) > 1_900_000

    attach = asyncio.create_task(engine.attach("cli:a", text, "server.log"))
    # A conversation's coroutine: it must keep getting turns while the file is chunked.
    while not attach.done():
        ticks += 1
        await asyncio.sleep(0)
    passages = attach.result()
    assert chunked.is_set()
    assert seen["thread"] != loop_thread, "chunking ran on the event loop's thread"
    assert seen["ticks_after"] > seen["ticks_before"], "the loop stood still while chunking"
    assert passages > 1000
    stored = await engine.store.scalar(
        "SELECT COUNT(*) FROM passages WHERE agent_id='cli:a' AND source='server.log'")
    assert stored == passages


def _wordpieces(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text).ids)  # with [CLS]/[SEP], as the model sees it


async def test_every_chunk_fits_the_local_models_window(
    local_model_dir: Path, tmp_path: Path
) -> None:
    reference = Tokenizer.from_file(str(local_model_dir / "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    embedder = LocalEmbedder(local_model_dir, tmp_path / "models")
    try:
        splitter = await embedder.splitter()
        # The model embeds at most 256 wordpieces (max_tokens), [CLS] and [SEP] included.
        assert splitter.window == embedder.max_tokens - 2
        text = "\n\n".join([
            " ".join(f"Sentence {i} is about the topic of number {i}." for i in range(300)),
            _one_giant_sentence(30_000),
            "Überraschung! Ça marche très bien, naïve café, 東京都の天気は晴れです。" * 40,
            "x" * 5000,  # no break at all: one "word" of 5,000 characters
            "id,name,amount\n" + "\n".join(f"{i},item{i},{i * 3.25:.2f}" for i in range(2000)),
            "supercalifragilisticexpialidocious antidisestablishmentarianism " * 200,
        ])
        chunks = await asyncio.to_thread(chunk_text, text, splitter)
        sizes = [_wordpieces(reference, c) for c in chunks]
        assert max(sizes) <= embedder.max_tokens, max(sizes)
        # The window is used: pieces are not tiny (most of them near the limit).
        assert sorted(sizes)[len(sizes) // 2] > embedder.max_tokens // 2
        _assert_preserved(text, chunks)
    finally:
        await embedder.aclose()


async def test_attached_passages_fit_the_local_model(
    make_settings: Any, local_model_dir: Path
) -> None:
    settings = make_settings(embedding_provider="local", local_embedding_model_dir=local_model_dir)
    reference = Tokenizer.from_file(str(local_model_dir / "tokenizer.json"))
    reference.no_truncation()
    text = " ".join(f"Passage sentence {i} mentions the word marker{i} and little else"
                    for i in range(600))  # no sentence end: one long "sentence"
    async with Engine(settings) as engine:
        await engine.send("cli:a", "hello", spec=SPEC)
        count = await engine.attach("cli:a", text, "notes.txt")
        passages = await engine.archival.all_passages("cli:a")
        assert len(passages) == count
        assert max(len(reference.encode(p.text).ids) for p in passages) <= 256
        # The last words are in a passage (before, tails past 256 wordpieces were cut off).
        assert any("marker599" in p.text for p in passages)
        # Passages of one attach share created_at and have random ids: order them by place.
        _assert_preserved(text, sorted((p.text for p in passages), key=text.find))


async def test_chunks_keep_sentences_whole_when_they_fit(local_model_dir: Path) -> None:
    embedder = LocalEmbedder(local_model_dir, local_model_dir)
    try:
        splitter = await embedder.splitter()
        text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(400))
        chunks = chunk_text(text, splitter)
        assert len(chunks) > 5
        assert all(c.endswith(".") for c in chunks)
        assert " ".join(chunks) == text
        assert chunk_text("   \n\n  ", splitter) == []
    finally:
        await embedder.aclose()
