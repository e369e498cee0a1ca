"""Threads and agents (issue 10, defect 7): a public thread follows its parent channel's agent, a
private thread (channel type 12, discord/discord-api-docs docs/resources/Channel.md "Channel
Types": PRIVATE_THREAD, "only viewable by those invited and those with the MANAGE_THREADS
permission") gets its own, so what is said there never comes back to the parent's members."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.discordbot.bot import Mnemocord
from tests.discord_world import World, next_reply, reply_with


async def slash(world: World, user: Any, channel: Any, name: str,
                options: dict[str, Any] | None = None) -> Any:
    return await (await world.emu.invoke_slash(user, channel, name, options or {})).wait_done()


@pytest.mark.parametrize("parent_mode", ["shared", "per-member"])
async def test_a_private_thread_has_its_own_agent_and_its_words_stay_there(
    world: World, bot: Mnemocord, parent_mode: str
) -> None:
    await slash(world, world.carol, world.general, "channel", {"mode": parent_mode})
    thread = world.emu.create_thread(world.general, "secret plans", owner=world.alice,
                                     private=True)
    world.llm.handler = lambda request: reply_with("noted")
    await world.emu.user_sends(world.alice, thread,
                               f"{world.mention()} the password is kumquat-swordfish")
    await next_reply(world, thread)
    asked = len(world.llm.requests)
    for person in (world.alice, world.bob):  # Bob cannot see the thread; Alice can
        await world.emu.user_sends(person, world.general,
                                   f"{world.mention()} what was said in the thread?")
        await next_reply(world, world.general)
    assert len(world.llm.requests) == asked + 2
    for request in world.llm.requests[asked:]:
        assert "kumquat" not in json.dumps(request)  # not in the parent's agent, not in its tools

    agents = {a["id"] for a in await bot.engine.list_agents()}
    assert f"channel:{thread.id}" in agents
    for agent_id in agents - {f"channel:{thread.id}"}:
        assert agent_id.startswith(f"channel:{world.general.id}")
        stored = [m.text for m in await bot.engine.dump(agent_id, 50)]
        assert stored and "kumquat" not in json.dumps(stored)
    shown = await slash(world, world.alice, thread, "whoami")
    assert f"channel:{thread.id}" in shown.content and str(world.general.id) not in shown.content


async def test_a_public_thread_still_follows_its_parent(world: World, bot: Mnemocord) -> None:
    thread = world.emu.create_thread(world.general, "open topic", owner=world.alice)
    world.llm.handler = lambda request: reply_with("in thread")
    await world.emu.user_sends(world.alice, thread, f"{world.mention()} hello from a thread")
    await next_reply(world, thread)
    shown = await slash(world, world.alice, thread, "whoami")
    assert f"channel:{world.general.id}`" in shown.content
