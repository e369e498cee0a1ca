"""Replies where Discord refuses a reply: no Read Message History (403, code 160002), and
re-delivery of a committed reply once Discord's nonce window has passed."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bot.discordbot.bot import Mnemocord
from bot.engine import AgentSpec, Engine
from tests.discord_emulator import run_client
from tests.discord_emulator.permissions import READ_MESSAGE_HISTORY
from tests.discord_world import World, next_reply, reply_with

SEND = "/channels/{channel_id}/messages"


async def settled(bot: Mnemocord) -> None:
    """Every message handler the bot started has finished (replies delivered and marked)."""
    if bot.turns:
        await asyncio.wait(set(bot.turns))


async def test_without_read_message_history_the_answer_still_arrives(
    world: World, bot: Mnemocord
) -> None:
    world.emu.deny_bot(world.general, READ_MESSAGE_HISTORY)
    world.llm.push(reply_with("Here is your answer."))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} a question")
    reply = await next_reply(world, world.general)
    # Not a reply (Discord refused that), but a plain message that names and pings Alice only.
    assert reply.reference is None
    assert "Here is your answer." in reply.content
    assert world.alice.mention in reply.content
    assert reply.pings.users == {world.alice.id} and not reply.pings.everyone
    refused = [r for r in world.emu.requests if r.method == "POST" and r.status == 403]
    assert len(refused) == 1  # the reply attempt; the fallback went through
    await settled(bot)
    assert await bot.engine.undelivered() == []


async def test_a_global_rate_limit_during_typing_does_not_freeze_the_bot(
    world: World, bot: Mnemocord
) -> None:
    # The typing trigger meets a global 429; the turn ends while discord.py sleeps it off.
    world.emu.fail_next("POST", "/channels/{channel_id}/typing", status=429, retry_after=2.0,
                        is_global=True)

    async def answer_once_limited(request: dict[str, Any]) -> Any:
        await world.emu.wait_for(lambda: any(r.status == 429 for r in world.emu.requests))
        return reply_with("answered despite the limit")

    world.llm.handler = answer_once_limited
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} hello")
    reply = await next_reply(world, world.general)
    assert reply.content == "answered despite the limit"
    world.llm.handler = None
    world.llm.push(reply_with("and again"))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} still there?")
    assert (await next_reply(world, world.general)).content == "and again"


@pytest.mark.parametrize(("outage", "shown"), [(0.0, 1), (None, 2)], ids=["within", "after"])
async def test_a_reply_resent_after_a_crash_shows_once_only_within_the_nonce_window(
    world: World, outage: float | None, shown: int
) -> None:
    """The last run sent a committed reply, then died before marking it delivered. The next
    start sends it again with the same nonce: Discord drops the repeat only inside its nonce
    window; after a longer outage the person sees it twice (as README.md says)."""
    emu = world.emu
    dm = emu.dm_channel(world.alice)
    asked = await emu.user_sends_dm(world.alice, "question")
    async with Engine(world.settings) as engine:
        world.llm.push(reply_with("the answer"))
        await engine.send(f"dm:{world.alice.id}", "question", sender_name="Alice",
                          external_id=f"{dm.id}:{asked.id}", spec=AgentSpec(human="basic"))
        [(_, item)] = await engine.undelivered()
    # What the crashed run got onto Discord: the reply's first (only) chunk with its nonce.
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{emu.api_base}/channels/{dm.id}/messages",
                  headers={"Authorization": f"Bot {emu.token}"},
                  json={"content": "the answer", "nonce": f"{item.id[:20]}0",
                        "enforce_nonce": True}) as sent,
    ):
        assert sent.status == 200
    emu.advance_clock(outage if outage is not None else emu.nonce_window + 1)
    async with (
        Engine(world.settings) as engine,
        run_client(emu, Mnemocord(engine, world.settings)),
    ):
        # The re-send has been answered (a new message, or the earlier one returned).
        await emu.wait_for(lambda: [r.status for r in emu.requests
                                    if r.template == SEND].count(200) == 2)
    assert [m.content for m in emu.bot_messages(dm)] == ["the answer"] * shown
