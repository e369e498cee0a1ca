"""Recall search by meaning: background message vectors, isolation, edits, keyword fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Settings
from bot.engine import Engine
from tests.conftest import SPEC

START = datetime(2024, 4, 2, 9, tzinfo=UTC)
HISTORY = [
    ("Alice", "Morning! Long week ahead."),
    ("Sam", "Good morning, anything planned?"),
    ("Alice", "My golden retriever puppy chewed through the sofa cushions again."),
    ("Sam", "Oh no, poor sofa."),
    ("Alice", "I'm flying to Tokyo in May for a conference."),
    ("Sam", "Sounds exciting!"),
]


@pytest.fixture
async def dense_engine(make_settings: Callable[..., Settings], local_model_dir: Path
                       ) -> AsyncIterator[Engine]:
    settings = make_settings(embedding_provider="local", local_embedding_model_dir=local_model_dir)
    async with Engine(settings) as engine:
        assert engine.recall_indexer is not None and engine.recall.embedder is not None
        yield engine


async def accept_all(engine: Engine, agent_id: str, lines: list[tuple[str, str]]) -> list[int]:
    ids = []
    for offset, (speaker, text) in enumerate(lines):
        message = await engine.accept(agent_id, text, sender_name=speaker, spec=SPEC,
                                      created_at=START + timedelta(minutes=offset), pending=False)
        ids.append(message.id)
    return ids


async def test_messages_are_embedded_after_commit_and_found_by_meaning(dense_engine: Engine
                                                                       ) -> None:
    ids = await accept_all(dense_engine, "cli:a", HISTORY)
    assert await dense_engine.recall_indexer.drain() == 0  # type: ignore[union-attr]
    stored = await dense_engine.store.scalar(
        "SELECT COUNT(*) FROM message_vectors WHERE agent_id='cli:a'")
    assert stored == len(HISTORY)
    # No keyword in common with the dog message: found by meaning.
    page = await dense_engine.search_recall("cli:a", "pet damaged furniture")
    assert page.items[0].id == ids[2]
    assert page.total >= 1


async def test_search_never_returns_another_agents_messages(dense_engine: Engine) -> None:
    await accept_all(dense_engine, "cli:a", HISTORY[:2])
    others = await accept_all(dense_engine, "cli:b", HISTORY[2:])
    await dense_engine.recall_indexer.drain()  # type: ignore[union-attr]
    for query in ("golden retriever puppy sofa", "Tokyo conference", "pet damaged furniture",
                  "May"):
        for page_number in range(3):
            page = await dense_engine.search_recall("cli:a", query, page_number)
            assert all(m.agent_id == "cli:a" and m.id not in others for m in page.items)
            assert page.total <= 2


async def test_edited_text_is_embedded_again(dense_engine: Engine) -> None:
    ids = await accept_all(dense_engine, "cli:a", HISTORY)
    await dense_engine.recall_indexer.drain()  # type: ignore[union-attr]
    first = await dense_engine.search_recall("cli:a", "pet damaged furniture")
    assert first.items[0].id == ids[2]
    await dense_engine.store.commit([(
        "UPDATE messages SET text=? WHERE id=?", ("I baked a lemon cake for my aunt.", ids[2]))])
    assert await dense_engine.recall_indexer.drain() == 0  # type: ignore[union-attr]
    vectors = await dense_engine.store.scalar(
        "SELECT COUNT(*) FROM message_vectors WHERE message_id=?", (ids[2],))
    assert vectors == 1
    page = await dense_engine.search_recall("cli:a", "dessert for a relative")
    assert page.items[0].id == ids[2] and page.items[0].text.startswith("I baked")
    await dense_engine.store.commit([("DELETE FROM messages WHERE id=?", (ids[2],))])
    page = await dense_engine.search_recall("cli:a", "dessert for a relative")
    assert ids[2] not in [m.id for m in page.items]


async def test_messages_not_yet_embedded_are_found_by_keywords(dense_engine: Engine) -> None:
    await dense_engine.recall_indexer.aclose()  # type: ignore[union-attr]  # nothing embeds now
    ids = await accept_all(dense_engine, "cli:a", HISTORY)
    queued = await dense_engine.store.scalar("SELECT COUNT(*) FROM vector_queue")
    assert queued == len(HISTORY)
    page = await dense_engine.search_recall("cli:a", "When is the Tokyo conference?")
    assert page.items[0].id == ids[4]
    # A named day finds that day's messages even without a shared word.
    on_day = await dense_engine.search_recall("cli:a", "What happened on 2 April 2024?")
    assert on_day.total == len(HISTORY) and {m.id for m in on_day.items} <= set(ids)
