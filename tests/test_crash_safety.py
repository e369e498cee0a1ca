"""Crash safety: the real bot process is killed with SIGKILL at random points of a long scripted
conversation (during LLM calls, embeddings, sends, right after a reply landed, at random delays,
during startup) and restarted each time. Afterwards every accepted message must be answered
exactly once visibly, every turn's memory writes must be there exactly once, and SQLite and
Chroma must agree.

"Accepted" means stored by Engine.accept (a user_message row in the database). A message the
bot received but had not stored when it was killed is lost: Discord does not replay missed
events to a new gateway session. Such messages must get no reply at all; they are counted.

Quick size by default; MNEMOCORD_FULL=1 runs >= 200 turns with >= 50 kills.
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord

from bot.discordbot.rendering import split_message
from bot.memory.vectors import VectorIndex
from tests.bot_harness import BotProcesses, Triggers, WiredEmulator, first
from tests.discord_emulator import Channel, Message, User
from tests.llm_server import ScriptedLLM, call, calls, say
from tests.sizes import pick, report
from tests.turns import turn_inputs

TURNS = pick(30, 200)
KILLS = pick(7, 50)
TOKEN = re.compile(r"\bm\d{5}\b")
WAIT = 90.0


@dataclass
class Talk:
    user: User
    channel: Channel
    mention: str = ""


def scripted_model(request: dict[str, Any]) -> Any:
    """The "model": remembers what it is asked to (core + archival memory, then a heartbeat),
    and acknowledges every message of the turn by its token; "story" asks for a long reply."""
    if "tools" not in request:
        return say("Summary: we chatted; details are in recall memory.")
    said, called = turn_inputs(request["messages"])
    tokens = [t for text in said for t in TOKEN.findall(text)]
    keep = [t for text in said if "remember" in text for t in TOKEN.findall(text)]
    if keep and not called:
        writes = [("core_memory_append", {"label": "human", "content": f"fact {t}",
                                          "request_heartbeat": True}) for t in keep]
        writes += [("archival_memory_insert", {"content": f"note {t}: worth keeping",
                                               "request_heartbeat": True}) for t in keep]
        return calls(writes)
    text = "ack " + " ".join(tokens)
    if any("story" in s for s in said):
        text += "\n" + "\n".join(f"line {i}: " + "once upon a time " * 7 for i in range(30))
    return call("send_message", message=text)


async def test_kill_9_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(5150)
    async with ScriptedLLM() as llm:
        emu = WiredEmulator(bot_name="Mnemocord")
        await emu.start()
        procs = BotProcesses(emu, llm, tmp_path / "sandbox", env={
            "CORE_MEMORY_LIMIT": "20000", "LLM_CONTEXT_WINDOW": "8000",
            "KEEP_LAST_MESSAGES": "10",
        })
        try:
            figures = await _run(emu, llm, procs, rng)
        finally:
            await procs.aclose()
            await emu.stop()
    report("crash_safety", figures)


async def _run(emu: WiredEmulator, llm: ScriptedLLM, procs: BotProcesses,
               rng: random.Random) -> dict[str, Any]:
    guild = emu.create_guild("Crash Guild")
    admin = emu.create_role(guild, "Admins", permissions=discord.Permissions(
        manage_guild=True).value)
    people = {name: emu.create_user(name, global_name=name.title())
              for name in ("ann", "ben", "cat", "dan", "eve", "fay", "gus", "carol")}
    for name, user in people.items():
        emu.add_member(guild, user, roles=[admin] if name == "carol" else [])
    lounge = emu.create_text_channel(guild, "lounge")
    desks = emu.create_text_channel(guild, "desks")
    mention = f"<@{emu.bot_user.id}> "
    talks = [Talk(people[n], emu.dm_channel(people[n])) for n in ("ann", "ben", "cat")]
    talks += [Talk(people[n], lounge, mention) for n in ("dan", "eve")]
    talks += [Talk(people[n], desks) for n in ("fay", "gus")]

    checked_before_llm = 0

    def model(request: dict[str, Any]) -> Any:
        nonlocal checked_before_llm
        procs.tick("llm")
        if "tools" in request:  # the model never sees a message that is not on disk yet
            said, _ = turn_inputs(request["messages"])
            tokens = [t for text in said for t in TOKEN.findall(text)]
            with closing(sqlite3.connect(procs.data_dir / "mnemocord.db")) as db:
                for token in tokens:
                    stored = db.execute("SELECT COUNT(*) FROM messages WHERE text LIKE ?",
                                        (f"{token} %",)).fetchone()[0]
                    assert stored == 1, f"{token} reached the model before it was stored"
            checked_before_llm += len(tokens)
        return scripted_model(request)

    llm.handler = model
    visible: set[str] = set()
    emu.stored_taps.append(lambda m: visible.update(TOKEN.findall(m.content))
                           if m.author.id == emu.bot_user.id else None)

    assert await procs.start(), procs.logs()
    setup = await emu.invoke_slash(people["carol"], desks, "channel",
                                   {"mode": "per-member", "listen": "all"})
    assert "per-member" in (await setup.wait_done(WAIT)).content

    sent: dict[str, Talk] = {}
    count = 0

    async def say_in(talk: Talk, words: str) -> str:
        nonlocal count
        count += 1
        token = f"m{count:05d}"
        await emu.user_sends(talk.user, talk.channel, f"{talk.mention}{token} {words}")
        sent[token] = talk
        return token

    triggers = Triggers(rng)
    rounds = 0  # in the current life
    while count < TURNS or sum(procs.kills.values()) < KILLS:
        if not procs.running:
            await procs.kill_wait()
            trigger = triggers.next() if sum(procs.kills.values()) < KILLS else None
            rounds = 0
            if not await procs.start(trigger):
                continue
        elif rounds % 6 == 0 and sum(procs.kills.values()) < KILLS:
            procs.arm(triggers.next(running=True))  # a kill point that can still come
        rounds += 1
        life = procs.life
        assert life is not None
        batch = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            words = rng.choice(("hi there", "please remember this", "tell me a story",
                                "how are you", "remember that too"))
            batch.append(await say_in(rng.choice(talks), words))
        await first(emu.wait_for(lambda b=batch: all(t in visible for t in b), WAIT,
                                 f"replies to {batch}"), life.exited)

    # Quiesce: one clean life answers a last message in every conversation and shuts down
    # gracefully; repeat if it left anything for a next start.
    procs.disarm()
    restarts = 0
    while restarts < 3:
        if not procs.running:
            await procs.kill_wait()
            assert await procs.start(), procs.logs()[-3000:]
        finals = [await say_in(talk, "final") for talk in talks]
        await emu.wait_for(lambda f=finals: all(t in visible for t in f), WAIT, "final replies")
        assert await procs.stop() == 0, procs.logs()[-3000:]
        if _quiet(procs.data_dir):
            break
        restarts += 1
    assert restarts < 3, "replies were still pending after three clean restarts"
    figures = await _check(emu, procs, sent, restarts)
    return {**figures, "inputs_seen_on_disk_before_the_llm": checked_before_llm}


def _quiet(data_dir: Path) -> bool:
    with closing(sqlite3.connect(data_dir / "mnemocord.db")) as db:
        pending = db.execute("SELECT COUNT(*) FROM messages WHERE pending=1").fetchone()[0]
        waiting = db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"
                             ).fetchone()[0]
    return pending == 0 and waiting == 0


async def _check(emu: WiredEmulator, procs: BotProcesses, sent: dict[str, Talk],
                 extra_restarts: int) -> dict[str, Any]:
    db = sqlite3.connect(procs.data_dir / "mnemocord.db")
    db.row_factory = sqlite3.Row
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    accepted: dict[str, sqlite3.Row] = {}
    for row in db.execute("SELECT * FROM messages WHERE kind='user_message'"):
        [token] = TOKEN.findall(row["text"])
        assert token not in accepted, f"{token} was stored twice"
        assert not row["pending"], f"{token} is still pending"
        accepted[token] = row
    lost = sorted(set(sent) - set(accepted))

    # Every reply the bot committed was delivered, exactly once per chunk, and nothing else was.
    outbox = list(db.execute("SELECT * FROM outbox ORDER BY created_at, rowid"))
    shown: dict[str, list[Message]] = defaultdict(list)
    for message in emu.bot_messages():
        if message.interaction is None:
            assert isinstance(message.nonce, str), f"reply without a nonce: {message.content!r}"
            shown[message.nonce].append(message)
    expected_nonces = set()
    answered_by: dict[str, list[str]] = defaultdict(list)
    for row in outbox:
        assert row["delivered_at"], f"outbox {row['id']} never delivered"
        for index, chunk in enumerate(split_message(row["text"])):
            nonce = f"{row['id'][:20]}{index}"
            expected_nonces.add(nonce)
            copies = shown.get(nonce, [])
            assert len(copies) == 1, f"chunk {nonce} shown {len(copies)} times"
            assert copies[0].content == chunk
        for token in TOKEN.findall(row["text"].partition("\n")[0]):
            answered_by[token].append(row["id"])
    assert set(shown) == expected_nonces, "a reply was shown that no committed turn produced"
    for token in accepted:
        assert len(answered_by[token]) == 1, f"{token} answered {len(answered_by[token])} times"
    for token in lost:
        assert token not in answered_by, f"{token} was never accepted but got a reply"

    # Memory: each thing the agent was asked to remember is there exactly once, in its own agent.
    remembered = [t for t, row in accepted.items() if "remember" in row["text"]]
    blocks = {r["agent_id"]: r["value"] for r in db.execute(
        "SELECT agent_id, value FROM core_blocks WHERE label='human'")}
    passages: dict[str, dict[str, str]] = defaultdict(dict)
    for row in db.execute("SELECT id, agent_id, text FROM passages"):
        passages[row["agent_id"]][row["id"]] = row["text"]
    for token in remembered:
        agent_id = accepted[token]["agent_id"]
        assert blocks[agent_id].count(f"fact {token}") == 1, (token, blocks[agent_id])
        notes = [t for t in passages[agent_id].values() if t.startswith(f"note {token}:")]
        assert len(notes) == 1, (token, notes)
    every_note = [t for texts in passages.values() for t in texts.values()]
    assert len(every_note) == len(remembered)

    # SQLite and Chroma agree for every agent (the last life loaded, and so reconciled, each).
    vectors = VectorIndex(path=procs.data_dir / "chroma")
    try:
        agents = [r[0] for r in db.execute("SELECT id FROM agents")]
        for agent_id in agents:
            indexed = set(await vectors.ids(agent_id))
            assert indexed == set(passages[agent_id]), f"{agent_id}: Chroma and SQLite differ"
    finally:
        await vectors.aclose()
    db.close()

    posts = [r for r in emu.requests if r.method == "POST" and r.status == 200
             and r.template == "/channels/{channel_id}/messages"]
    logs = procs.logs()
    return {
        "turns_sent": len(sent),
        "accepted": len(accepted),
        "lost_unaccepted": len(lost),
        "kills": sum(procs.kills.values()),
        "kills_by_point": dict(procs.kills),
        "bot_starts": len(procs.lives),
        "extra_clean_restarts": extra_restarts,
        "replies": len(outbox),
        "batched_replies": sum(1 for r in outbox
                               if len(TOKEN.findall(r["text"].partition("\n")[0])) > 1),
        "reply_chunks": len(expected_nonces),
        "resends_deduplicated": len(posts) - len(expected_nonces),
        "memory_writes_checked": len(remembered),
        "archival_repairs_logged": logs.count("archival index of"),
        "agents": len(agents),
    }
