"""Recall memory (FTS5/BM25, dates, paging) and archival memory (Chroma + a real local model)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.embeddings import LocalEmbedder
from bot.engine import Engine
from bot.memory.archival import chunk_text
from bot.messages import INSERT_MESSAGE, Message, unpack_tool_result
from bot.store import agent_tag
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call


async def store_said(engine: Engine, agent_id: str, texts: list[str], start: datetime) -> None:
    """Store user messages exactly as accepted messages are stored, at chosen times."""
    await engine.agent(agent_id, SPEC)
    statements = []
    for offset, text in enumerate(texts):
        message = Message(
            id=engine.store.allocate_message_id(), agent_id=agent_id, role="user",
            kind="user_message", content=json.dumps({"message": text}), text=text,
            created_at=start + timedelta(days=offset), sender_name="Alice", in_context=False,
        )
        statements.append((INSERT_MESSAGE, message.row(agent_tag(agent_id))))
    await engine.store.commit(statements)


@pytest.mark.settings(recall_embeddings="off")  # keywords only: what BM25 alone ranks
async def test_fts_ranks_by_bm25_and_reports_true_totals(engine: Engine) -> None:
    texts = [f"filler chat number {i} about the weather" for i in range(12)]
    texts += ["My sister Jenna is moving to Lisbon in June",
              "Lisbon again: Jenna found an apartment in Lisbon near the river",
              "I had pasta for dinner"]
    await store_said(engine, "cli:a", texts, datetime(2024, 5, 1, 12, tzinfo=UTC))
    await store_said(engine, "cli:b", ["Lisbon Lisbon Lisbon from another agent"],
                     datetime(2024, 5, 1, tzinfo=UTC))
    # Results are the keyword matches plus the turns up to two away from one (a reply often
    # answers without the question's words), matches first.
    page = await engine.search_recall("cli:a", "Lisbon")
    assert page.total == 2 + 3  # the two Lisbon messages, two turns before, the one after
    assert page.items[0].text.startswith("Lisbon again")  # more occurrences rank first
    assert page.items[1].text.startswith("My sister Jenna")
    assert all(m.agent_id == "cli:a" for m in page.items)
    weather = await engine.search_recall("cli:a", "weather", page=2)
    assert weather.total == 12 + 2 and weather.pages == 3 and len(weather.items) == 4
    assert "page 2 of pages 0-2" in weather.header()
    assert "pasta" not in " ".join(m.text or "" for m in weather.items)  # three turns away
    stemmed = await engine.search_recall("cli:a", "moves")  # porter stemming: moving ~ moves
    assert stemmed.total == 1 + 4 and stemmed.items[0].text.startswith("My sister Jenna")


async def test_conversation_search_tools_page_and_dates(engine: Engine, llm: ScriptedLLM) -> None:
    texts = [f"garden update {i}: the roses" for i in range(7)]
    await store_said(engine, "cli:a", texts, datetime(2024, 3, 1, 12, tzinfo=UTC))
    llm.push(
        call("conversation_search", query="roses garden", page=1),
        call("conversation_search_date", start_date="2024-03-02", end_date="2024-03-03"),
        call("conversation_search_date", start_date="2024-13-01", end_date="2024-03-03"),
        call("send_message", message="found them"),
    )
    result = await engine.send("cli:a", "what did I say about roses?", spec=SPEC)
    assert result.replies == ["found them"]
    results = [dict(zip(("ok", "message"), unpack_tool_result(m["content"]), strict=True))
               for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
    search, by_date, bad = results
    # The question itself is in context, so the search leaves it out: 7 stored updates remain.
    assert "Showing results 6-7 of 7 (page 1 of pages 0-1)" in search["message"]
    assert "of 2 " in by_date["message"] and "garden update 1" in by_date["message"]
    assert "garden update 3" not in by_date["message"]
    assert not bad["ok"] and "YYYY-MM-DD" in bad["message"]


async def test_recall_date_search_boundaries(engine: Engine) -> None:
    await store_said(engine, "cli:a", ["day one", "day two", "day three"],
                     datetime(2024, 1, 1, 23, 30, tzinfo=UTC))
    page = await engine.recall.search_date("cli:a", date(2024, 1, 2), date(2024, 1, 2))
    assert [m.text for m in page.items] == ["day two"]


async def test_chunking_keeps_sentences_and_bounds_size(engine: Engine) -> None:
    splitter = await engine.embedder.splitter()  # the embedding model's tokens
    text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(400))
    chunks = chunk_text(text, splitter, max_tokens=300)
    assert len(chunks) > 5
    assert all(len(s) <= 300 for s in splitter.starts(chunks))
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == text
    giant = "x" * 5000  # no sentence breaks at all
    assert all(len(s) <= 300 for s in splitter.starts(chunk_text(giant, splitter)))


async def test_archival_memory_with_a_real_local_model(
    make_settings, llm: ScriptedLLM, local_model_dir: Path, tmp_path: Path
) -> None:
    embedder = LocalEmbedder(local_model_dir, tmp_path / "models")
    facts = [
        "Alice adopted a golden retriever puppy named Biscuit in March.",
        "Alice works as a nurse on night shifts at the city hospital.",
        "Alice's favourite band is Radiohead; she saw them live in 2017.",
        "Alice is allergic to peanuts.",
        "Alice is learning to play the cello.",
        "Alice grew up in a small town near the coast.",
    ]
    try:
        async with Engine(make_settings(embedding_provider="local"), embedder=embedder) as engine:
            for fact in facts:
                llm.push(call("archival_memory_insert", content=fact))
                await engine.send("cli:a", "remember this", spec=SPEC)
            llm.push(
                call("archival_memory_search", query="what pet dog does she have?"),
                call("archival_memory_search", query="what pet dog does she have?", page=1),
                call("send_message", message="Biscuit!"),
            )
            await engine.send("cli:a", "what's my dog called?", spec=SPEC)
            results = [unpack_tool_result(m["content"]) for m in llm.requests[-1]["messages"]
                       if m["role"] == "tool"][-2:]
            first_page, second_page = (report for _, report in results)
            assert "of 6 ranked by relevance (page 0 of pages 0-1)" in first_page
            assert first_page.splitlines()[1].endswith("named Biscuit in March.")
            assert "passages 6-6 of 6" in second_page
            page = await engine.search_archival("cli:a", "food allergy")
            assert "peanuts" in page.items[0].text
            await engine.archival.flush("cli:a")  # vectors reach Chroma after their turn
            assert await engine.vectors.count("cli:a") == 6
        # Reopen: passages and vectors persisted.
        async with Engine(make_settings(embedding_provider="local"), embedder=embedder) as engine:
            page = await engine.search_archival("cli:a", "musical instrument")
            assert "cello" in page.items[0].text and page.total == 6
    finally:
        await embedder.aclose()


async def test_failed_turn_leaves_no_orphan_vectors(engine: Engine, llm: ScriptedLLM) -> None:
    await engine.agent("cli:a", SPEC)
    agent = await engine.agent("cli:a")
    await agent.archive("a passage from a turn that will never commit")
    page = await engine.archival.search("cli:a", "a passage that will never commit")
    assert page.total == 1 and page.items  # searchable within its turn, from memory
    assert await engine.vectors.count("cli:a") == 0  # Chroma only gets committed passages
    await agent.abandon()
    assert await engine.vectors.count("cli:a") == 0
    assert (await engine.archival.search("cli:a", "passage")).total == 0
    # A crash leaves a vector whose passage never committed: reconcile removes it.
    _ids, _ = await engine.archival.insert("cli:a", "orphan text")
    engine.archival.mark_committed("cli:a")
    assert await engine.archival.reconcile("cli:a") == (0, 1)
    assert await engine.vectors.count("cli:a") == 0
