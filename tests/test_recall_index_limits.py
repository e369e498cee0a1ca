"""The recall indexer under bad input (issue 10, item 9): an oversized message, an input the
endpoint refuses, and dense recall switched off."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.engine import Engine
from tests.conftest import SCRIPTED_EMBEDDINGS, SPEC
from tests.llm_server import ScriptedLLM

HUGE = " ".join(f"word{i}" for i in range(30_000))  # ~60k tokens: far past any window


async def _accept(engine: Engine, texts: list[str]) -> list[int]:
    ids = []
    for text in texts:
        message = await engine.accept("cli:a", text, sender_name="Alice", spec=SPEC,
                                      pending=False)
        ids.append(message.id)
    return ids


async def _vectors(engine: Engine) -> set[int]:
    rows = await engine.store.fetchall("SELECT message_id FROM message_vectors")
    return {row[0] for row in rows}


async def test_oversized_message_is_embedded_by_the_local_model(
    make_settings: Callable[..., Settings], local_model_dir: Path
) -> None:
    settings = make_settings(embedding_provider="local", local_embedding_model_dir=local_model_dir)
    async with Engine(settings) as engine:
        ids = await _accept(engine, ["before", HUGE, "after"])
        assert engine.recall_indexer is not None
        assert await engine.recall_indexer.drain() == 0
        assert await _vectors(engine) == set(ids)


async def test_oversized_message_is_clipped_for_the_openai_endpoint(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    settings = make_settings(**{**SCRIPTED_EMBEDDINGS, "embedding_model": "text-embedding-3-small"},
                             recall_embeddings="on")
    async with Engine(settings) as engine:
        ids = await _accept(engine, ["before", HUGE, "after"])
        assert engine.recall_indexer is not None
        assert await engine.recall_indexer.drain() == 0
        assert await _vectors(engine) == set(ids)
        assert engine.recall_indexer.failures == 0


async def test_an_input_the_endpoint_refuses_is_skipped_once(
    make_settings: Callable[..., Settings], llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    # A window set larger than the server's (a misconfigured EMBEDDING_MAX_INPUT_TOKENS): the
    # client does not clip enough and the server refuses the request with a 400.
    settings = make_settings(**{**SCRIPTED_EMBEDDINGS, "embedding_model": "text-embedding-3-small"},
                             recall_embeddings="on",
                             embedding_max_input_tokens=100_000)
    caplog.set_level(logging.WARNING, "bot.memory.recall_index")
    async with Engine(settings) as engine:
        ids = await _accept(engine, ["first", "second", HUGE, "fourth", "fifth"])
        assert engine.recall_indexer is not None
        assert await engine.recall_indexer.drain() == 0
        huge_id = ids[2]
        assert await _vectors(engine) == set(ids) - {huge_id}
        # The refused one was sent a bounded number of times, then left alone for good.
        sent = [body for body in llm.embedding_requests
                if any(HUGE in text for text in body["input"])]
        assert 1 <= len(sent) <= 4
        later = await _accept(engine, ["sixth"])
        assert await engine.recall_indexer.drain() == 0
        assert later[0] in await _vectors(engine)
        assert len([body for body in llm.embedding_requests
                    if any(HUGE in text for text in body["input"])]) == len(sent)
        skipped = [r for r in caplog.records if f"message {huge_id}" in r.getMessage()]
        assert len(skipped) == 1 and "maximum context length" in skipped[0].getMessage()
        assert engine.recall_indexer.skipped == 1


async def test_vector_queue_stays_empty_while_dense_recall_is_off(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    off = make_settings(recall_embeddings="off")
    async with Engine(off) as engine:
        assert engine.recall_indexer is None
        await _accept(engine, [f"message {i}" for i in range(20)])
        assert await engine.store.scalar("SELECT COUNT(*) FROM vector_queue") == 0
    # Turned on later: what was stored meanwhile gets its vectors after all.
    async with Engine(make_settings(recall_embeddings="on")) as engine:
        assert engine.recall_indexer is not None
        assert await engine.recall_indexer.drain() == 0
        texts = await engine.store.scalar("SELECT COUNT(*) FROM messages WHERE text IS NOT NULL")
        assert texts == 20
        assert len(await _vectors(engine)) == texts


async def test_dense_recall_on_from_the_start_still_queues(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    async with Engine(make_settings(recall_embeddings="on")) as engine:
        assert engine.recall_indexer is not None
        await engine.recall_indexer.aclose()  # stopped: what is stored waits in the queue
        await _accept(engine, ["one", "two"])
        queued: Any = await engine.store.scalar("SELECT COUNT(*) FROM vector_queue")
        assert queued == 2
