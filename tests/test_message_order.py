"""The context keeps its order across every reload, whatever arrives while a tool runs.

A message accepted while a tool awaits I/O is stored in the middle of the turn, between the
assistant's tool call and its result, but it joins the context only at the next turn. Every path
that rebuilds the context from the database (restart, unloading an idle agent, /pop, /load,
/forget-me) must rebuild that order, or the prompt has a user message between a call and its
result, which OpenAI rejects (the strict scripted LLM does too) on every later turn.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.engine import Engine
from bot.migrations import MIGRATIONS
from bot.store import Store
from tests.conftest import SCRIPTED_EMBEDDINGS, SPEC
from tests.llm_server import ScriptedLLM, call
from tests.openai_rules import validate_messages

KEY = "chan:shared"
ZED = {"sender_name": "Zed", "sender_id": "u-zed"}
AMY = {"sender_name": "Amy", "sender_id": "u-amy"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The embedding endpoint is scripted here: the test holds an archival insert on it."""
    return make_settings(**SCRIPTED_EMBEDDINGS)


async def interleave(engine: Engine, llm: ScriptedLLM) -> None:
    """Zed asks the agent to remember something; while its archival insert waits for the
    embedding model, Amy's message is accepted. Both are answered."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(_body: dict[str, Any]) -> None:
        entered.set()
        await release.wait()

    llm.on_embedding = hold
    llm.push(
        call("archival_memory_insert", content="Zed likes green tea", request_heartbeat=True),
        call("send_message", message="Noted, Zed."),
        call("send_message", message="Hi Amy."),
    )
    zed_turn = asyncio.create_task(engine.send(KEY, "remember: I like green tea", spec=SPEC,
                                               **ZED))
    # The tool is awaiting the embedding request now (the bound only turns a hang into a failure).
    await asyncio.wait_for(entered.wait(), 60)
    amy = await engine.accept(KEY, "hello, anyone here?", **AMY)
    llm.on_embedding = None
    release.set()
    assert (await zed_turn).replies == ["Noted, Zed."]
    assert (await engine.answer(amy)).replies == ["Hi Amy."]


async def _restart(engine: Engine, settings: Settings) -> Engine:
    await engine.aclose()
    return await Engine(settings).open()


async def _unload(engine: Engine, settings: Settings) -> Engine:
    engine.settings.max_loaded_agents = 1
    await engine.agent("cli:other", SPEC)  # loading another agent unloads the idle one
    assert KEY not in engine._agents
    return engine


async def _pop(engine: Engine, settings: Settings) -> Engine:
    assert await engine.pop(KEY, 1) == 2  # Amy's answer: the call and its result
    return engine


async def _load(engine: Engine, settings: Settings) -> Engine:
    await engine.save(KEY, "before")
    await engine.load(KEY, "before")
    return engine


async def _forget_zed(engine: Engine, settings: Settings) -> Engine:
    await engine.forget_sender(KEY, "u-zed", ["Zed"])
    return engine


async def _forget_someone_else(engine: Engine, settings: Settings) -> Engine:
    await engine.forget_sender(KEY, "u-nobody", ["Nobody"])
    return engine


Reload = Callable[[Engine, Settings], Awaitable[Engine]]


@pytest.mark.parametrize("reload_context", [
    _restart, _unload, _pop, _load, _forget_zed, _forget_someone_else,
], ids=["restart", "unload", "pop", "load", "forget-me", "forget-me-other"])
async def test_message_accepted_during_a_tool_keeps_its_place(
    settings: Settings, llm: ScriptedLLM, reload_context: Reload
) -> None:
    engine = await Engine(settings).open()
    try:
        await interleave(engine, llm)
        engine = await reload_context(engine, settings)
        llm.push(call("send_message", message="Still here."))
        result = await engine.send(KEY, "and now?", **AMY)
        rejected = llm.take_violations()  # what the strict server refused
        queue = [m.to_openai() for m in (await engine.agent(KEY)).queue]
    finally:
        await engine.aclose()
    assert rejected == []
    assert result.replies == ["Still here."], result.notices
    assert validate_messages(queue) == []


def _old_database(path: Path) -> None:
    """A database from before the context-order migration, holding what the defect left: Amy's
    message stored between Zed's archival call and its result, all of it in context."""
    path.parent.mkdir(parents=True, exist_ok=True)
    from bot.migrations import CONTEXT_ORDER_MIGRATION

    before = MIGRATIONS.index(CONTEXT_ORDER_MIGRATION)
    with closing(sqlite3.connect(path)) as db:
        for number, script in enumerate(MIGRATIONS[:before], start=1):
            db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
        now = "2026-01-01T10:00:00.000000+00:00"
        db.execute("INSERT INTO agents (id, name, created_at) VALUES (?, 'Sam', ?)", (KEY, now))
        for position, label in enumerate(("persona", "human")):
            db.execute("INSERT INTO core_blocks (agent_id, label, value, char_limit, position)"
                       " VALUES (?, ?, ?, 2000, ?)", (KEY, label, f"{label} text", position))

        def tool_call(call_id: str, name: str, args: dict[str, Any]) -> str:
            return json.dumps([{"id": call_id, "type": "function",
                                "function": {"name": name, "arguments": json.dumps(args)}}])

        rows = [  # id, role, kind, content, tool_calls, tool_call_id
            (1, "user", "user_message", '{"message": "remember: tea"}', None, None),
            (2, "assistant", "assistant", None,
             tool_call("call_a", "archival_memory_insert", {"content": "tea"}), None),
            (3, "user", "user_message", '{"message": "hello?"}', None, None),
            (4, "tool", "tool_result", '{"status": "OK"}', None, "call_a"),
            (5, "assistant", "assistant", None,
             tool_call("call_b", "send_message", {"message": "Hi."}), None),
            (6, "tool", "tool_result", '{"status": "OK"}', None, "call_b"),
        ]
        for message_id, role, kind, content, calls, call_id in rows:
            db.execute(
                "INSERT INTO messages (id, agent_id, agent_tag, role, kind, content,"
                " tool_calls, tool_call_id, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (message_id, KEY, "tag", role, kind, content, calls, call_id, now))
        db.commit()


async def test_migration_puts_old_results_back_next_to_their_calls(
    settings: Settings, llm: ScriptedLLM
) -> None:
    _old_database(settings.db_path)
    store = Store(settings.db_path)
    await store.open()
    try:
        assert await store.scalar("PRAGMA user_version") == len(MIGRATIONS)
        # A message created now sorts after everything already in order.
        assert store.allocate_message_id() > 6
    finally:
        await store.close()
    llm.push(call("send_message", message="Fine."))
    async with Engine(settings) as engine:
        agent = await engine.agent(KEY)
        assert [m.id for m in agent.queue] == [1, 2, 4, 3, 5, 6]
        result = await engine.send(KEY, "are you ok?")
    assert result.replies == ["Fine."], result.notices
    assert llm.take_violations() == []
