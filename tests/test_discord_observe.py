"""Channel awareness over the emulator: observe mode (every message remembered, no LLM call
until someone asks), reply chains (the agent sees the message a reply answers), and edits and
deletions (memory never keeps what someone took back)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from bot.discordbot.bot import Mnemocord
from bot.engine import AgentSpec, Engine
from bot.memory.recall_index import embedding_text
from tests.discord_world import World, next_reply, reply_with


async def until(engine: Engine, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a commit that makes `check` true (a message handler's write, not a sleep)."""
    while not await check():
        committed = asyncio.Event()
        engine.store.after_commit.append(committed.set)
        try:
            if await check():
                return
            await asyncio.wait_for(committed.wait(), 10)
        finally:
            engine.store.after_commit.remove(committed.set)


async def stored(engine: Engine, agent_id: str, text: str) -> bool:
    return bool(await engine.store.scalar(
        "SELECT COUNT(*) FROM messages WHERE agent_id=? AND text LIKE ?",
        (agent_id, f"%{text}%")))


async def searchable(engine: Engine, agent_id: str, word: str) -> bool:
    """Found by keyword (the FTS index) or among the search's results."""
    keyword = await engine.store.scalar(
        "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ?", (f'"{word}"',))
    page = await engine.recall.search(agent_id, word)
    return bool(keyword) or any(word in (m.text or "") for m in page.items)


def request_text(request: dict[str, Any]) -> str:
    return json.dumps(request["messages"], ensure_ascii=False)


async def observe_general(world: World) -> None:
    interaction = await world.emu.invoke_slash(world.carol, world.general, "channel",
                                               {"listen": "observe"})
    done = await interaction.wait_done()
    assert "answering **observe**" in done.content


async def test_observe_mode_remembers_the_channel_without_calling_the_llm(
    world: World, bot: Mnemocord
) -> None:
    await observe_general(world)
    agent_id = f"channel:{world.general.id}"
    await world.emu.user_sends(world.bob, world.general, "pineapple belongs on pizza, fight me")
    await world.emu.user_sends(world.alice, world.general, "absolutely not")
    await until(bot.engine, lambda: stored(bot.engine, agent_id, "absolutely not"))
    assert world.llm.requests == []  # LLM calls per observed message: 0

    world.llm.push(reply_with("Bob is brave; I side with Alice."))
    await world.emu.user_sends(world.alice, world.general,
                               f"{world.mention()} what do you think of what Bob just said?")
    reply = await next_reply(world, world.general)
    assert reply.content.endswith("Bob is brave; I side with Alice.")
    [request] = world.llm.requests  # one call: the question's turn
    seen = request_text(request)
    assert "pineapple belongs on pizza, fight me" in seen and "Bob" in seen
    assert seen.index("pineapple") < seen.index("absolutely not") < seen.index("just said")
    page = await bot.engine.recall.search(agent_id, "pineapple pizza")
    assert [m.sender_name for m in page.items][:1] == ["Bob"]


async def test_observed_context_is_bounded(world: World, make_settings: Any) -> None:
    settings = make_settings(discord_token="unused", observe_context_messages=3)
    async with Engine(settings) as engine:
        for n in range(6):
            await engine.observe("channel:1", f"remark number {n}", sender_name="Bob",
                                 sender_id="2", external_id=f"1:{n}",
                                 spec=AgentSpec(human="channel"))
        agent = await engine.agent("channel:1")
        assert [m.text for m in agent.queue] == [f"remark number {n}" for n in (3, 4, 5)]
        assert await engine.recall.count("channel:1") == 6  # the older ones stay in recall
        in_context = await engine.recall.in_context("channel:1")
        assert [m.text for m in in_context] == [m.text for m in agent.queue]
        assert world.llm.requests == []


async def test_mentions_mode_ignores_unaddressed_messages(world: World, bot: Mnemocord) -> None:
    await world.emu.user_sends(world.bob, world.general, "nobody asked the bot this")
    world.llm.push(reply_with("hello"))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} hi")
    await next_reply(world, world.general)
    assert "nobody asked" not in request_text(world.llm.requests[0])
    assert not await stored(bot.engine, f"channel:{world.general.id}", "nobody asked")


async def test_a_mention_in_a_reply_shows_the_referenced_message(
    world: World, bot: Mnemocord
) -> None:
    said = await world.emu.user_sends(world.bob, world.general,
                                      f"the standup moves to Thursday, {world.carol.mention}")
    world.llm.push(reply_with("Yes, Thursday."))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} is that right?",
                               reference=said)
    await next_reply(world, world.general)
    seen = request_text(world.llm.requests[0])
    assert "[replying to Bob: the standup moves to Thursday, @Carol]" in seen
    assert "is that right?" in seen


async def test_edits_and_deletions_reach_recall_and_context(
    world: World, bot: Mnemocord
) -> None:
    engine, agent_id = bot.engine, f"channel:{world.general.id}"
    await observe_general(world)
    world.llm.push(reply_with("Noted."))
    told = await world.emu.user_sends(world.alice, world.general,
                                      f"{world.mention()} my locker code is 4321")
    await next_reply(world, world.general)
    aside = await world.emu.user_sends(world.bob, world.general, "my secret is marmalade")
    await until(engine, lambda: stored(engine, agent_id, "marmalade"))

    await world.emu.user_edits(told, f"{world.mention()} my locker code is 9876")
    await until(engine, lambda: stored(engine, agent_id, "9876"))
    assert not await stored(engine, agent_id, "4321")
    assert not await searchable(engine, agent_id, "4321")
    best = (await engine.recall.search(agent_id, "9876")).items[0]
    assert (best.sender_name, best.text) == ("Alice", "my locker code is 9876")
    # The message vector is the new text's: the old one went with the edit.
    assert engine.recall_indexer is not None and await engine.recall_indexer.drain() == 0
    blob = await engine.store.scalar(
        "SELECT vector FROM message_vectors WHERE message_id=?", (best.id,))
    [expected] = await engine.embedder.embed([embedding_text(best.text, "Alice")])
    assert np.allclose(np.frombuffer(blob, dtype="<f4"), expected, atol=1e-4)

    await world.emu.delete_message(world.general, aside)

    async def forgotten() -> bool:
        return not await stored(engine, agent_id, "marmalade")

    await until(engine, forgotten)
    assert not await searchable(engine, agent_id, "marmalade")
    vectors = await engine.store.scalar(
        "SELECT COUNT(*) FROM message_vectors v JOIN messages m ON m.id = v.message_id"
        " WHERE m.text LIKE '%marmalade%'")
    assert vectors == 0

    world.llm.push(reply_with("9876."))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} my code?")
    await next_reply(world, world.general)
    seen = request_text(world.llm.requests[-1])
    assert "9876" in seen and "4321" not in seen and "marmalade" not in seen


async def test_observe_mode_in_a_per_member_channel_stores_nothing_overheard(
    world: World, bot: Mnemocord
) -> None:
    interaction = await world.emu.invoke_slash(world.carol, world.general, "channel",
                                               {"mode": "per-member", "listen": "observe"})
    assert "Observe mode needs mode **shared**" in (await interaction.wait_done()).content
    await world.emu.user_sends(world.bob, world.general, "bob's aside to nobody")
    world.llm.push(reply_with("hi Alice"))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} hello")
    await next_reply(world, world.general)
    seen = await bot.engine.store.scalar(
        "SELECT COUNT(*) FROM messages WHERE text LIKE '%aside to nobody%'")
    assert seen == 0
    assert "aside to nobody" not in request_text(world.llm.requests[0])


async def test_retry_in_observe_mode_answers_the_question_again_and_keeps_the_channel(
    world: World, make_settings: Any
) -> None:
    spec = AgentSpec(human="channel")
    async with Engine(make_settings(discord_token="unused")) as engine:
        world.llm.push(reply_with("Tuesday, I guess"))
        await engine.send("channel:1", "which day is the standup?", sender_name="Alice",
                          sender_id="1", external_id="1:1", spec=spec)
        await engine.observe("channel:1", "lunch anyone?", sender_name="Bob", sender_id="2",
                             external_id="1:2", spec=spec)
        world.llm.push(reply_with("Thursday"))
        result = await engine.retry("channel:1")
        assert result.replies == ["Thursday"]
        seen = request_text(world.llm.requests[-1])
        assert "which day is the standup?" in seen and "Tuesday, I guess" not in seen
        contents = [str(m.get("content")) for m in world.llm.requests[-1]["messages"]]
        assert any('"overheard":true' in c and "lunch anyone?" in c for c in contents)
        texts = [m.text for m in (await engine.agent("channel:1")).queue]
        assert texts.index("lunch anyone?") < texts.index("which day is the standup?")
        assert await engine.recall.count("channel:1") >= 3


async def test_a_busy_observed_channel_costs_no_llm_call_and_a_bounded_context(
    world: World, bot: Mnemocord
) -> None:
    await observe_general(world)
    agent_id, sent = f"channel:{world.general.id}", 40
    for n in range(sent):
        await world.emu.user_sends((world.alice, world.bob)[n % 2], world.general,
                                   f"chatter line {n}")
    await until(bot.engine, lambda: stored(bot.engine, agent_id, f"chatter line {sent - 1}"))
    assert len(world.llm.requests) / sent == 0  # LLM calls per observed message
    assert await bot.engine.recall.count(agent_id) == sent
    queue = (await bot.engine.agent(agent_id)).queue
    cap = world.settings.observe_context_messages
    assert [m.text for m in queue] == [f"chatter line {n}" for n in range(sent - cap, sent)]


async def test_a_bulk_delete_removes_every_stored_message(world: World, bot: Mnemocord) -> None:
    await observe_general(world)
    engine, agent_id = bot.engine, f"channel:{world.general.id}"
    spam = [await world.emu.user_sends(world.bob, world.general, f"buy cheap stuff {n}")
            for n in range(3)]
    kept = await world.emu.user_sends(world.alice, world.general, "an ordinary remark")
    await until(engine, lambda: stored(engine, agent_id, "ordinary remark"))
    await world.emu.bulk_delete(world.general, spam)

    async def cleaned() -> bool:
        return not await stored(engine, agent_id, "cheap stuff")

    await until(engine, cleaned)
    assert [m.text for m in (await engine.agent(agent_id)).queue] == [kept.content]
    assert not await searchable(engine, agent_id, "cheap")
