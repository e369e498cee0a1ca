"""Progressive delivery: each send_message reaches Discord as its step ends, not after the
whole turn; one typing indicator per channel; a crash between a sent part and the end of
the turn neither repeats the part nor leaves the turn unfinished."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot.agent import INTERRUPTED, Outgoing
from bot.discordbot.bot import Mnemocord
from bot.engine import Engine
from bot.terminal import TerminalChat
from tests.bot_harness import BotProcesses, Trigger, WiredEmulator
from tests.conftest import SPEC
from tests.discord_world import World, next_reply, reply_with
from tests.llm_server import ScriptedLLM, call, calls, fail, hang
from tests.test_terminal import scripted_input

WAIT = 30.0
LOOK = "let me look"
ANSWER = "Found it: the meeting is on Tuesday."
QUESTION = "when is the meeting?"


def look_then_search() -> Any:
    """The first step of the turn: a message to the person, and a search to read."""
    return calls([("send_message", {"message": LOOK}),
                  ("archival_memory_search", {"query": "meeting", "request_heartbeat": True})])


async def settled(bot: Mnemocord) -> None:
    if bot.turns:
        await asyncio.wait(set(bot.turns))


async def test_the_first_message_reaches_discord_before_the_turn_ends(
    world: World, bot: Mnemocord
) -> None:
    seen_first = asyncio.Event()
    requests: list[dict[str, Any]] = []

    async def model(request: dict[str, Any]) -> Any:
        requests.append(request)
        if len(requests) == 1:
            return look_then_search()
        # Held until the test has seen the first message on Discord: with delivery at the
        # end of the turn it never comes, and the test times out.
        await asyncio.wait_for(seen_first.wait(), WAIT)
        return reply_with(ANSWER)

    world.llm.handler = model
    asked = await world.emu.user_sends(world.alice, world.general,
                                       f"{world.mention()} when is the meeting?")
    early = await next_reply(world, world.general)
    assert early.content == LOOK
    await world.llm.wait_for_requests(2)  # the second step is under way, held
    assert not [m for m in world.emu.bot_messages() if m.content == ANSWER]
    assert early.reference is not None and early.reference["message_id"] == str(asked.id)
    seen_first.set()
    answer = await world.emu.wait_for_bot_message(
        world.general, lambda m: m.interaction is None and m.content == ANSWER)
    assert answer.reference is None  # the turn's first message is the reply; the rest follow
    assert early.seq < answer.seq
    await settled(bot)
    assert await bot.engine.undelivered() == []
    # The continuation event that would have finished the turn after a crash is gone.
    assert await bot.engine.pending_agent_ids() == []
    world.llm.handler = None


async def test_the_terminal_shows_each_message_as_its_step_ends(
    engine: Engine, llm: ScriptedLLM
) -> None:
    """The terminal (a sink of the engine's events) shows each committed part as its step
    ends: the first is on screen, and in the database, while the second step is asked for."""
    out = io.StringIO()
    checked: list[bool] = []

    async def model(request: dict[str, Any]) -> Any:
        if "tools" not in request:
            return reply_with("summary")
        if not checked:
            checked.append(False)
            return look_then_search()
        shown = out.getvalue()
        stored = await engine.store.scalar("SELECT COUNT(*) FROM messages WHERE text=?",
                                           (LOOK,))
        checked.append(f"🤖 {LOOK}" in shown and ANSWER not in shown and stored == 1)
        return reply_with(ANSWER)

    llm.handler = model
    chat = TerminalChat(engine, "cli:sam", console=Console(file=out, width=200),
                        read_line=scripted_input([QUESTION]), user_name="Ann")
    await chat.start(SPEC, first=True)
    await chat.run()
    assert checked == [False, True]
    shown = out.getvalue()
    assert shown.index(LOOK) < shown.index(ANSWER)
    llm.handler = None


async def test_one_typing_indicator_per_channel(world: World, bot: Mnemocord) -> None:
    release = asyncio.Event()
    turns = 0

    async def model(request: dict[str, Any]) -> Any:
        nonlocal turns
        turns += 1
        if turns == 1:
            await asyncio.wait_for(release.wait(), WAIT)
            return reply_with("first answer")
        return reply_with("second answer")

    world.llm.handler = model
    mention = world.mention()
    await world.emu.user_sends(world.alice, world.general, f"{mention} one")
    await world.llm.wait_for_requests(1)
    await world.emu.user_sends(world.bob, world.general, f"{mention} two")
    await world.emu.user_sends(world.carol, world.general, f"{mention} three")
    slot = bot.engine.slot(f"channel:{world.general.id}")
    async with asyncio.timeout(WAIT):
        # All three handlers wait (each holds the indicator); engine state, no event to wait
        # on, so yield to the loop until it holds (a yield, not a timed sleep).
        while len(slot.waiters) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0)
    release.set()
    first_reply = await world.emu.wait_for_bot_message(
        world.general, lambda m: m.content == "first answer")
    second = await world.emu.wait_for_bot_message(
        world.general, lambda m: m.content == "second answer")
    await settled(bot)
    bot_typing = [t for t in world.emu.typings
                  if t.channel_id == world.general.id and t.user_id == world.emu.bot_user.id]
    before = [t for t in bot_typing if t.seq < first_reply.seq]
    between = [t for t in bot_typing if first_reply.seq < t.seq < second.seq]
    after = [t for t in bot_typing if t.seq > second.seq]
    assert len(before) == 1, f"{len(before)} typing loops for three waiting messages"
    # Discord hides "typing…" when the bot's message lands; two messages still wait.
    assert len(between) == 1
    assert after == [], "typing shown again after the last answer"
    world.llm.handler = None


@pytest.mark.parametrize("kill_at", ["llm", "stored"])
async def test_a_crash_after_the_first_part_neither_repeats_nor_loses_the_turn(
    tmp_path: Path, kill_at: str
) -> None:
    """kill -9 of the real bot process at the turn's second LLM request ("llm": the first
    part sent and marked delivered), or right after Discord stored the first part ("stored":
    sent, not marked): after the restart the first part shows once and the turn finishes."""
    async with ScriptedLLM() as llm:
        emu = WiredEmulator(bot_name="Mnemocord")
        await emu.start()
        procs = BotProcesses(emu, llm, tmp_path / "sandbox")
        chat_requests: list[dict[str, Any]] = []

        async def model(request: dict[str, Any]) -> Any:
            if QUESTION not in json.dumps(request["messages"]):
                return reply_with("ok")  # the start-up check's requests, a summary
            chat_requests.append(request)
            procs.tick("llm")
            life = procs.life
            if life is not None and life.killed_by is not None:
                return hang()  # the process is gone; nobody reads an answer
            if len(chat_requests) == 1:
                return look_then_search()
            return call("send_message", message=ANSWER)

        llm.handler = model
        try:
            ann = emu.create_user("ann", global_name="Ann")
            dm = emu.dm_channel(ann)
            trigger = Trigger("llm", 2) if kill_at == "llm" else Trigger("stored", 1)
            assert await procs.start(trigger), procs.logs()
            await emu.user_sends(ann, dm, QUESTION)
            life = procs.life
            assert life is not None
            await life.exited
            assert life.killed_by == kill_at
            looks = [m for m in emu.bot_messages() if m.content == LOOK]
            assert len(looks) == 1, procs.logs()[-4000:]  # out before the turn ended
            assert await procs.start(), procs.logs()
            await emu.wait_for(lambda: any(m.content == ANSWER for m in emu.bot_messages()),
                               WAIT, "the rest of the turn after the restart")
            assert await procs.stop() == 0, procs.logs()[-3000:]
            assert [m.content for m in emu.bot_messages()] == [LOOK, ANSWER]
            # The model was told the turn was cut short, and saw its first part once.
            last = chat_requests[-1]["messages"]
            assert any(INTERRUPTED in str(m.get("content")) for m in last)
            sent = [c for m in last for c in m.get("tool_calls") or []
                    if c["function"]["name"] == "send_message"]
            assert len(sent) == 1 and LOOK in sent[0]["function"]["arguments"]
            with closing(sqlite3.connect(procs.data_dir / "mnemocord.db")) as db:
                assert db.execute("SELECT COUNT(*) FROM messages WHERE pending=1"
                                  ).fetchone()[0] == 0
                rows = db.execute("SELECT text, delivered_at FROM outbox ORDER BY rowid"
                                  ).fetchall()
            assert [text for text, _ in rows] == [LOOK, ANSWER]
            assert all(delivered for _, delivered in rows)
        finally:
            await procs.aclose()
            await emu.stop()


async def test_a_failing_llm_after_the_first_part_keeps_it_and_says_so(
    engine: Engine, llm: ScriptedLLM
) -> None:
    handed: list[tuple[list[str], bool]] = []

    async def courier(items: list[Outgoing], more: bool) -> None:
        handed.append(([item.text for item in items], more))

    llm.handler = lambda request: (look_then_search() if not handed
                                   else fail(500, "the model fell over"))
    result = await engine.send("dm:9", QUESTION, sender_name="Ann", external_id="10:1",
                               spec=SPEC, courier=courier)
    assert handed[0] == ([LOOK], True)  # out while the turn went on
    [notice], more = handed[-1]
    assert notice.startswith("Sorry, I couldn't think just now") and not more
    assert len(handed) == 2
    assert result.handed_over == {item.id for item in result.outbox}
    assert await engine.pending_agent_ids() == []  # the continuation went with the turn
    rows = await engine.store.fetchall("SELECT text FROM outbox ORDER BY rowid")
    assert [row[0] for row in rows] == [LOOK, notice]
    # The question and the first part stay in context, in their order.
    said = [m.text for m in await engine.dump("dm:9", 10) if m.text]
    assert said.index(QUESTION) < said.index(LOOK)
    llm.handler = None


async def test_an_error_at_the_last_commit_keeps_the_sent_part_in_its_place(
    engine: Engine, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = engine.store.commit
    failed: list[bool] = []

    async def last_commit_failing(statements: Any) -> None:
        batch = list(statements)
        if not failed and any(sql.startswith("DELETE FROM messages") for sql, _ in batch):
            failed.append(True)  # the turn's end, after its first part was committed
            raise sqlite3.OperationalError("disk I/O error")
        await real_commit(batch)

    monkeypatch.setattr(engine.store, "commit", last_commit_failing)
    llm.push(look_then_search(), reply_with(ANSWER))
    result = await engine.send("dm:9", QUESTION, sender_name="Ann", external_id="10:1",
                               spec=SPEC)
    assert failed and result.notices == ["Something went wrong on my side; please try again."]
    assert await engine.pending_agent_ids() == []
    rows = await engine.store.fetchall("SELECT text FROM outbox ORDER BY rowid")
    assert [row[0] for row in rows] == [LOOK, result.notices[0]]  # the part once, the notice
    agent = await engine.agent("dm:9")
    said = [m.text for m in agent.queue if m.text]
    assert said == [QUESTION, LOOK]  # the question did not move after the reply to it
