"""Slash commands that run a turn (/heartbeat, /memorywarning, /retry) never lose the answer:
when the interaction token has run out (Discord: "Interaction tokens are valid for 15
minutes", then the webhook answers 401 / 50027 Invalid Webhook Token; discord-api-docs
developers/interactions/receiving-and-responding.mdx) the answer is posted in the channel from
the outbox, once, and a restart neither loses nor repeats it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.discordbot.bot import Mnemocord
from bot.engine import Engine
from tests.discord_emulator import run_client
from tests.discord_world import World, next_reply, reply_with
from tests.test_discord_delivery import caught_up, settled

TOKEN_TTL = 15 * 60


@pytest.mark.parametrize("command", ["heartbeat", "memorywarning", "retry"])
async def test_an_answer_after_the_token_ran_out_is_posted_in_the_channel_once(
    world: World, command: str
) -> None:
    dm = world.emu.dm_channel(world.alice)
    release = asyncio.Event()

    async def slow(request: dict[str, Any]) -> Any:
        await release.wait()
        return reply_with("a late answer")

    async with (
        Engine(world.settings) as engine,
        run_client(world.emu, Mnemocord(engine, world.settings)) as client,
    ):
        world.llm.push(reply_with("first try"))
        await world.emu.user_sends_dm(world.alice, "a question")
        assert (await next_reply(world, dm)).content == "first try"
        world.llm.handler = slow
        asked = world.llm.chat_calls
        inter = await world.emu.invoke_slash(world.alice, dm, command)
        await world.emu.wait_for(lambda: inter.acknowledged)
        await world.llm.wait_for_requests(asked + 1)
        world.emu.advance_clock(TOKEN_TTL)  # the LLM answers after the token ran out
        release.set()
        await inter.wait_error(50027)
        assert (await next_reply(world, dm)).content == "a late answer"
        await settled(client)
        assert await engine.undelivered() == []
        world.llm.handler = None
    async with (
        Engine(world.settings) as engine,
        run_client(world.emu, Mnemocord(engine, world.settings)) as client,
    ):
        await caught_up(client)
    said = [m.content for m in world.emu.bot_messages(dm) if m.interaction is None]
    assert said == ["first try", "a late answer"]


async def test_a_crash_between_the_commit_and_the_followup_delivers_the_answer_once(
    world: World,
) -> None:
    """The command's turn committed its answer, then the process died before the followup:
    the next start posts it in the channel (from the outbox), and the one after does not."""
    dm = world.emu.dm_channel(world.alice)
    agent_id = f"dm:{world.alice.id}"
    async with (
        Engine(world.settings) as engine,
        run_client(world.emu, Mnemocord(engine, world.settings)) as client,
    ):
        world.llm.push(reply_with("hello"))
        await world.emu.user_sends_dm(world.alice, "hi")
        assert (await next_reply(world, dm)).content == "hello"
        await settled(client)
    world.llm.push(reply_with("committed, never shown"))
    async with Engine(world.settings) as engine:  # what /heartbeat runs before its followup
        await engine.heartbeat(agent_id, external_id=f"{dm.id}:")
        assert [item.text for _, item in await engine.undelivered()] == ["committed, never shown"]
    for _ in range(2):
        async with (
            Engine(world.settings) as engine,
            run_client(world.emu, Mnemocord(engine, world.settings)) as client,
        ):
            await caught_up(client)
            assert await engine.undelivered() == []
    assert [m.content for m in world.emu.bot_messages(dm)] == ["hello", "committed, never shown"]


async def test_a_member_s_heartbeat_is_deferred_privately_and_answered_in_the_channel(
    world: World, bot: Mnemocord
) -> None:
    """Bob may use his own agent in a per-member channel, but only the database knows that: the
    command defers privately (a refusal would stay private), and the agent's answer, meant
    for the channel, is posted there as a normal bot message."""
    done = await (await world.emu.invoke_slash(
        world.carol, world.general, "channel", {"mode": "per-member", "listen": "all"})
    ).wait_done()
    assert "per-member" in done.content
    world.llm.push(reply_with("hi Bob"), reply_with("Bob, a thought for the channel"))
    await world.emu.user_sends(world.bob, world.general, "hello")
    assert (await next_reply(world, world.general)).content == "hi Bob"
    inter = await world.emu.invoke_slash(world.bob, world.general, "heartbeat")
    posted = await next_reply(world, world.general)
    assert posted.content == "Bob, a thought for the channel"
    note = await inter.wait_done()
    assert inter.deferred and note.ephemeral and "answered in the channel" in note.content
    await settled(bot)
    assert await bot.engine.undelivered() == []
