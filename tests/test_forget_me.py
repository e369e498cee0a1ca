"""`/forget-me` on the engine: a person is erased by their user id, and only what is theirs or
names them in what was said goes. A nickname that is a common word (or a word of the bot's own
JSON envelopes: "message", "OK", "UTC", "Will") must not wipe other people's memory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.discordbot.bot import Mnemocord
from bot.engine import AgentSpec, Engine
from bot.privacy import Matcher, doomed_message_ids, said_texts
from tests.discord_world import World, next_reply
from tests.llm_server import ScriptedLLM, calls
from tests.test_discord_commands import confirm, slash

SPEC = AgentSpec(name="Sam", persona="sam", human="basic")
SHARED = "channel:1"
BOB, MEMBER = "222222222222222222", "111111111111111111"
GUARD = 60.0  # seconds: only a guard against a hang, never a timing assertion


def remember(line: str, passage: str, reply: str) -> Any:
    """The model writes a core-memory line and an archival passage, then answers."""
    return calls([("core_memory_append", {"label": "human", "content": line}),
                  ("archival_memory_insert", {"content": passage}),
                  ("send_message", {"message": reply})])


async def everything(engine: Engine, agent_id: str) -> str:
    """All an agent stores, as one JSON text (messages, core memory, passages, summary)."""
    return json.dumps(await engine.export(agent_id), ensure_ascii=False)


async def assert_calls_paired(engine: Engine, agent_id: str) -> None:
    """Every stored function call still has its result and every result its call (OpenAI
    rejects a prompt that breaks this: platform.openai.com/docs/api-reference/chat/create,
    messages[].tool_call_id "Tool call that this message is responding to")."""
    rows = await engine.store.fetchall(
        "SELECT role, tool_calls, tool_call_id FROM messages WHERE agent_id=?", (agent_id,))
    called = {c["id"] for r in rows for c in json.loads(r["tool_calls"] or "[]")}
    answered = {r["tool_call_id"] for r in rows if r["role"] == "tool"}
    assert called and called == answered, called ^ answered


@pytest.mark.parametrize("nickname", ["message", "OK", "UTC", "Will", "PM"])
async def test_a_common_word_nickname_erases_only_that_person(
    engine: Engine, llm: ScriptedLLM, nickname: str
) -> None:
    bob_said = "Will you note my message? My locker code is bobcode77, at 5 PM UTC. OK?"
    bob_line = "Bob (222222222222222222) has locker code bobcode77; sent the message at 5 PM UTC."
    bob_passage = "Bob will be at the gym at 5 PM UTC. OK, locker bobcode77. Message kept."
    llm.push(remember(bob_line, bob_passage, "OK Bob, I will remember your message at 5 PM UTC."))
    await engine.send(SHARED, bob_said, sender_name="Bob", sender_id=BOB, spec=SPEC)
    llm.push(remember(f"User {MEMBER} likes memberfood1.", f"User {MEMBER} likes memberfood2.",
                      "noted"))
    await engine.send(SHARED, "I like memberfood1 and memberfood2", sender_name=nickname,
                      sender_id=MEMBER, spec=SPEC)
    await engine.save(SHARED, "snap")

    report = await engine.forget_person(MEMBER, [nickname])

    exported = await engine.export(SHARED)
    text = json.dumps(exported, ensure_ascii=False)
    for kept in (bob_said, bob_line, bob_passage, "OK Bob, I will remember"):
        assert kept in text, f"{nickname!r} erased Bob's {kept!r}"
    assert "memberfood" not in text
    assert report.messages >= 1 and report.passages == 1 and report.lines == 1
    assert nickname in report.names_not_matched  # told plainly: this name alone finds nothing
    await assert_calls_paired(engine, SHARED)
    await engine.load(SHARED, "snap")  # a checkpoint must not bring the erased line back
    assert "memberfood" not in await everything(engine, SHARED)
    assert bob_line in await everything(engine, SHARED)
    llm.push(calls([("send_message", {"message": "still here"})]))
    result = await engine.send(SHARED, "still there?", sender_name="Bob", sender_id=BOB,
                               spec=SPEC)
    assert result.replies == ["still here"]
    assert_prompt_pairs_calls(llm.requests[-1]["messages"])


def assert_prompt_pairs_calls(messages: list[dict[str, Any]]) -> None:
    """Each assistant message with tool_calls is followed at once by exactly its tool results,
    and no tool message stands alone (platform.openai.com/docs/guides/function-calling: the
    results go back as role "tool" messages with the matching tool_call_id)."""
    index = 0
    while index < len(messages):
        message = messages[index]
        assert message["role"] != "tool", f"orphan tool result at {index}"
        wanted = [c["id"] for c in message.get("tool_calls") or []]
        results = [m.get("tool_call_id") for m in messages[index + 1:index + 1 + len(wanted)]]
        assert sorted(results, key=str) == sorted(wanted), (index, wanted, results)
        index += 1 + len(wanted)


async def test_erased_everywhere_it_is_named_and_nowhere_else(
    engine: Engine, llm: ScriptedLLM
) -> None:
    """A distinctive name is found in other agents' memory (where the person never spoke), in
    checkpoints and in the outbox; other people's own messages about them are kept and
    counted."""
    llm.push(remember("Zephyrine likes quince jam.", "Zephyrine's birthday is in May.",
                      "Noted, Zephyrine!"))
    await engine.send(SHARED, "I like quince jam", sender_name="Zephyrine", sender_id=MEMBER,
                      external_id="1:10", spec=SPEC)
    llm.push(remember("Bob likes tea.", "Bob's tea is oolong.", "Noted, Bob."))
    await engine.send(SHARED, "I like tea", sender_name="Bob", sender_id=BOB,
                      external_id="1:11", spec=SPEC)
    await engine.save(SHARED, "before")
    # Bob's private agent, where Zephyrine never spoke, learns about her.
    private = f"dm:{BOB}"
    llm.push(remember("Bob's friend zephyrine is allergic to nuts.",
                      "Zephyrine (Bob's friend) is allergic to nuts.", "I'll remember that."))
    await engine.send(private, "my friend Zephyrine is allergic to nuts", sender_name="Bob",
                      sender_id=BOB, external_id="2:20", spec=SPEC)
    undelivered = [item.id for _, item in await engine.undelivered()]
    await engine.mark_delivered(undelivered[:1])  # one delivered row, the rest undelivered

    report = await engine.forget_person(MEMBER, ["Zephyrine"])

    shared, mine = await everything(engine, SHARED), await everything(engine, private)
    for erased in ("quince", "birthday", "Noted, Zephyrine"):
        assert erased not in shared
    assert "allergic" not in json.dumps((await engine.export(private))["core_memory"])
    assert "allergic" not in json.dumps((await engine.export(private))["archival"])
    for kept in ("Bob likes tea.", "Bob's tea is oolong.", "Noted, Bob."):
        assert kept in shared
    assert "my friend Zephyrine is allergic" in mine  # Bob's own words stay Bob's
    assert report.kept_mentions == 1
    outbox = await engine.store.fetchall("SELECT text FROM outbox")
    assert [r["text"] for r in outbox] == ["Noted, Bob.", "I'll remember that."]
    await engine.load(SHARED, "before")
    assert "quince" not in await everything(engine, SHARED)
    assert "Bob likes tea." in await everything(engine, SHARED)


async def test_no_copy_left_in_the_database_file_or_wal(
    make_settings: Callable[..., Settings], llm: ScriptedLLM, tmp_path: Path
) -> None:
    secret = "qzxsecretword"
    settings = make_settings(recall_embeddings="on")
    async with Engine(settings) as engine:
        llm.push(remember(f"Zephyrine's password is {secret}.", f"Zephyrine said {secret}.",
                          f"Got it, Zephyrine: {secret}."))
        # Long enough to spill into overflow pages, which a delete frees whole (without
        # secure_delete their bytes stay in the file's free list).
        story = " ".join(f"line {i} of my story about {secret}." for i in range(300))
        await engine.send(SHARED, f"my password is {secret}. {story}", sender_name="Zephyrine",
                          sender_id=MEMBER, external_id="1:10", spec=SPEC)
        llm.push(remember("Bob likes tea.", "Bob's tea is oolong.", "Noted, Bob."))
        await engine.send(SHARED, "I like tea", sender_name="Bob", sender_id=BOB, spec=SPEC)
        await engine.save(SHARED, "snap")
        assert engine.recall_indexer is not None
        await engine.recall_indexer.drain()  # message vectors exist before the erase
        passages = {p.id: p.text for p in await engine.archival.all_passages(SHARED)}
        await engine.archival.flush()

        await engine.forget_person(MEMBER, ["Zephyrine"])

        store = engine.store
        # Compiled in by some SQLite builds (Debian's), not by others: set for the connection.
        assert await store.scalar("PRAGMA secure_delete") == 1
        assert not await store.fetchall(
            "SELECT * FROM message_vectors WHERE message_id NOT IN (SELECT id FROM messages)")
        assert not await store.fetchall(
            "SELECT * FROM vector_queue WHERE message_id NOT IN (SELECT id FROM messages)")
        left = set(await engine.vectors.ids(SHARED))
        assert left == {i for i, t in passages.items() if secret not in t}
        found = await engine.recall.search(SHARED, secret)
        assert found.items and not [m for m in found.items if secret in (m.text or "")]
        database = settings.db_path
        files = await asyncio.to_thread(raw_files, database)
        assert {"mnemocord.db", "chroma/chroma.sqlite3"} <= set(files)
        for name, raw in files.items():
            assert secret.encode() not in raw, f"{name} still holds the erased text"
            assert b"Zephyrine" not in raw, f"{name} still holds the erased name"
        assert b"oolong" in b"".join(files.values())  # the check reads real bytes


def raw_files(database: Path) -> dict[str, bytes]:
    """The bytes of every file in the data directory (the SQLite database and its WAL, Chroma's
    own database and segments), as a disk reader would see them."""
    return {str(p.relative_to(database.parent)): p.read_bytes()
            for p in sorted(database.parent.rglob("*")) if p.is_file()}


class QueueWatchingLock(asyncio.Lock):
    """The agent's lock, telling the test how many callers asked for it (so the test can
    order an erase before a handler without sleeping)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals = 0
        self._bump = asyncio.Event()

    async def acquire(self) -> bool:
        self.arrivals += 1  # counted before it queues: no await in between
        self._bump.set()
        return await super().acquire()

    async def arrived(self, count: int) -> None:
        while self.arrivals < count:
            self._bump.clear()
            await self._bump.wait()


async def test_a_handler_waiting_for_an_erased_message_ends(
    engine: Engine, llm: ScriptedLLM
) -> None:
    """/forget-me can delete a message still waiting for its turn; the handler waiting for that
    turn's answer must end (Discord's typing indicator stops, the agent can unload)."""
    lock = engine.slot(SHARED).lock = QueueWatchingLock()
    llm.push(remember("Bob likes tea.", "Bob's tea is oolong.", "Noted, Bob."),
             calls([("send_message", {"message": "hi"})]))
    await engine.send(SHARED, "I like tea", sender_name="Bob", sender_id=BOB, spec=SPEC)
    await engine.send(SHARED, "hello", sender_name="Zephyrine", sender_id=MEMBER, spec=SPEC)
    release = asyncio.Event()
    seen = asyncio.Event()

    async def slow(request: dict[str, Any]) -> Any:
        seen.set()
        await release.wait()  # Bob's next turn holds the agent's lock until released
        return calls([("send_message", {"message": "second answer"})])

    llm.handler = slow
    bob_turn = asyncio.create_task(
        engine.send(SHARED, "another", sender_name="Bob", sender_id=BOB, spec=SPEC))
    await seen.wait()
    asked = lock.arrivals
    erase = asyncio.create_task(engine.forget_person(MEMBER, ["Zephyrine"]))
    await lock.arrived(asked + 1)  # the erase waits for the lock first...
    accepted = await engine.accept(SHARED, "mine, waiting", sender_name="Zephyrine",
                                   sender_id=MEMBER, spec=SPEC)
    handler = asyncio.create_task(engine.answer(accepted))
    await lock.arrived(asked + 2)  # ...then the handler of a message it will erase
    release.set()
    await asyncio.wait_for(asyncio.gather(bob_turn, erase), GUARD)
    result = await asyncio.wait_for(handler, GUARD)
    assert accepted.id not in result.answered_ids
    assert not engine.slot(SHARED).waiters  # nothing keeps the agent loaded
    assert "mine, waiting" not in await everything(engine, SHARED)

    # The same when the erase finished before the handler asked for its answer.
    later = await engine.accept(SHARED, "mine again", sender_name="Zephyrine",
                                sender_id=MEMBER, spec=SPEC)
    await engine.forget_person(MEMBER, ["Zephyrine"])
    result = await asyncio.wait_for(engine.answer(later), GUARD)
    assert later.id not in result.answered_ids and not engine.slot(SHARED).waiters


def test_names_match_whole_in_said_text_and_common_words_never() -> None:
    person = Matcher(MEMBER, ["Al", "Zephyrine", "message", "Sam", "Will Turner"], "Sam")
    assert person.names == ["Will Turner", "Zephyrine"]
    assert set(person.not_matched) == {"Al", "message", "Sam"}
    assert person("zephyrine likes jam") and person("ask Will Turner") and person(f"<@{MEMBER}>")
    for other in ("Al is also here", "the message", "I am Sam", "Zephyrines", "Will you turn",
                  f"id 9{MEMBER}", f"{MEMBER}0"):
        assert not person(other), other
    # Said text only: a tool call's argument values and a result's message, never the wrapper.
    call = {"role": "assistant", "content": None, "text": None, "tool_calls": json.dumps([{
        "id": "c1", "type": "function",
        "function": {"name": "send_message", "arguments": json.dumps({"message": "hi"})}}])}
    result = {"role": "tool", "content": json.dumps({"status": "OK", "message": "done",
                                                     "time": "5 PM UTC"})}
    assert said_texts(call) == ["hi"] and said_texts(result) == ["done"]
    assert said_texts({"role": "tool", "content": "OK: done"}) == ["done"]
    assert said_texts({"role": "tool", "content": "OK"}) == []
    envelope = Matcher(MEMBER, ["status", "send_message", "UTC"])
    assert not envelope.any(said_texts(call)) and not envelope.any(said_texts(result))


def test_a_call_and_its_result_go_together_whatever_lies_between() -> None:
    """Grouped by tool-call id, not position: a message stored between a call and its result
    (issue 10 defect 1) does not split the group."""
    def row(i: int, role: str, sender: str | None = None, **extra: Any) -> dict[str, Any]:
        base = {"id": i, "role": role, "kind": "user_message" if role == "user" else role,
                "sender_id": sender, "content": None, "text": None, "tool_calls": None,
                "tool_call_id": None}
        return {**base, **extra}

    calls_json = json.dumps([{"id": "c1", "type": "function", "function": {
        "name": "archival_memory_insert", "arguments": json.dumps({"content": "Zephyrine"})}}])
    rows = [row(1, "user", BOB, text="hi"),
            row(2, "assistant", tool_calls=calls_json),
            row(3, "user", MEMBER, text="mine"),  # arrived while the call awaited I/O
            row(4, "tool", tool_call_id="c1", content=json.dumps({"message": "stored"})),
            row(5, "assistant", text="Noted, Bob.")]
    doomed, kept = doomed_message_ids(rows, MEMBER, Matcher(MEMBER, ["Zephyrine"]))
    assert doomed == {2, 3, 4} and kept == 0


async def test_forget_me_on_discord_by_a_member_nicknamed_message(
    world: World, bot: Mnemocord
) -> None:
    """Over the emulator: a member whose server nickname is "message" erases only themself."""
    dave = world.emu.create_user("dave", global_name="Dave")
    world.emu.add_member(world.guild, dave, nick="message")
    world.llm.push(remember("Bob keeps the spare key under the mat.",
                            "Bob's spare key is under the mat.", "OK Bob, noted your message."))
    await world.emu.user_sends(world.bob, world.general, f"{world.mention()} my spare key is"
                               " under the mat, remember this message")
    await next_reply(world, world.general)
    world.llm.push(remember(f"User {dave.id} collects beetles.", f"{dave.id} collects beetles.",
                            "Beetles, noted."))
    await world.emu.user_sends(dave, world.general, f"{world.mention()} I collect beetles")
    await next_reply(world, world.general)

    prompt = await slash(world, dave, world.general, "forget-me")
    done = await confirm(world, dave, prompt)
    exported = json.dumps(await bot.engine.export(f"channel:{world.general.id}"))
    for kept in ("under the mat, remember this message", "Bob keeps the spare key under the mat.",
                 "Bob's spare key is under the mat.", "OK Bob, noted your message."):
        assert kept in exported, f"Dave's /forget-me erased Bob's {kept!r}"
    assert "beetles" not in exported.lower()
    assert "`message`" in done.content and "id only" in done.content  # said plainly
