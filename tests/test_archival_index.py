"""Archival vectors reach Chroma after their turn commits, and loading an agent checks the index
against a recorded count instead of loading the agent's index from Chroma."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.config import Settings
from bot.engine import Engine
from bot.memory.archival import INDEXED_KEY, INSERT_PASSAGE
from bot.messages import iso, utcnow
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call


async def remember(engine: Engine, llm: ScriptedLLM, *facts: str) -> None:
    for fact in facts:
        llm.push(call("archival_memory_insert", content=fact, request_heartbeat=True),
                 call("send_message", message="noted"))
        await engine.send("cli:a", f"remember: {fact}", spec=SPEC)


async def test_a_loaded_agent_leaves_chroma_alone_while_the_count_agrees(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    settings = make_settings()
    async with Engine(settings) as engine:
        await remember(engine, llm, "Alice's cat is called Miso.", "Alice likes tea.")
        page = await engine.search_archival("cli:a", "cat name")  # found before Chroma has it
        assert page.total == 2 and "Miso" in page.items[0].text
    async with Engine(settings) as engine:  # the first load counts Chroma once and records it
        await engine.agent("cli:a")
        assert await engine.get_setting(INDEXED_KEY.format("cli:a")) == 2
    async with Engine(settings) as engine:
        async def untouchable(*args: Any) -> int:
            raise AssertionError("Chroma was asked")

        engine.vectors.count = untouchable  # type: ignore[method-assign]
        agent = await engine.agent("cli:a")
        assert agent.archival_count == 2


async def test_a_passage_whose_vector_was_lost_is_indexed_again_on_load(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    settings = make_settings()
    async with Engine(settings) as engine:
        await remember(engine, llm, "Alice's cat is called Miso.")
        await engine.reload("cli:a")
        # A crash after the turn committed, before its vector reached Chroma:
        await engine.store.commit([(INSERT_PASSAGE, (
            "lost1", "cli:a", "Alice grew up near the coast.", None, iso(utcnow())))])
    async with Engine(settings) as engine:
        agent = await engine.agent("cli:a")
        assert agent.archival_count == 2
        assert await engine.vectors.count("cli:a") == 2
        assert await engine.get_setting(INDEXED_KEY.format("cli:a")) == 2
        page = await engine.search_archival("cli:a", "where did she grow up")
        assert any("coast" in p.text for p in page.items)


async def test_closing_right_after_a_turn_indexes_its_passages_cleanly(
    make_settings: Callable[..., Settings], llm: ScriptedLLM, caplog: Any
) -> None:
    settings = make_settings()
    async with Engine(settings) as engine:
        await remember(engine, llm, "Alice's cat is called Miso.")
        await engine.reload("cli:a")  # loading verifies and records the count Chroma holds
        await remember(engine, llm, "Alice likes tea.")  # its write is still on its way
    # The engine waited for the write and let it record its count before the store closed.
    assert not [r for r in caplog.records if "could not index" in r.getMessage()]
    async with Engine(settings) as engine:
        assert await engine.get_setting(INDEXED_KEY.format("cli:a")) == 2
        assert await engine.vectors.count("cli:a") == 2
