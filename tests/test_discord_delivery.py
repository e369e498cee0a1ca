"""Replies reach Discord once: chunks that fit (issue 10, defect 5), a permanent refusal that is
settled instead of retried forever (defect 5), and answers shown through an interaction that are
not posted again at the next start (defect 4)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.discordbot.bot import Mnemocord
from bot.discordbot.cogs.chat import ChatCog
from bot.discordbot.rendering import MENTION_ROOM
from bot.engine import Engine
from tests.discord_emulator import run_client
from tests.discord_world import World, next_reply, reply_with

SEND = "/channels/{channel_id}/messages"
FENCE = "```"


async def settled(bot: Mnemocord) -> None:
    """Every handler the bot started (messages and turn commands) has finished."""
    while bot.turns:
        await asyncio.wait(set(bot.turns))


async def caught_up(bot: Mnemocord) -> None:
    """The bot delivered what the last run left undelivered (its on_ready pass is over)."""
    cog = bot.get_cog("ChatCog")
    assert isinstance(cog, ChatCog)
    await asyncio.wait_for(cog.caught_up.wait(), 10)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("bot.") and r.levelno >= logging.WARNING]


# A fence line that lands on the 2,000-character boundary: the old split added the closing
# fence on top of a full chunk (2,002 characters) and Discord refused it with 400/50035.
AT_THE_BOUNDARY = "x" * 1984 + f"\n{FENCE}typescript\nconst a = 1;\n{FENCE}\nThe end."


async def test_a_fence_at_the_chunk_boundary_still_arrives_in_chunks_that_fit(
    world: World, bot: Mnemocord
) -> None:
    dm = world.emu.dm_channel(world.alice)
    world.llm.push(reply_with(AT_THE_BOUNDARY))
    await world.emu.user_sends_dm(world.alice, "show me")
    await world.emu.wait_for(lambda: any(r.status == 400 for r in world.emu.requests) or any(
        m.content.endswith("The end.") for m in world.emu.bot_messages(dm)))
    assert [r for r in world.emu.requests if r.status == 400] == []
    parts = world.emu.bot_messages(dm)
    assert all(len(p.content) <= 2000 for p in parts)
    assert len(parts[0].content) + MENTION_ROOM <= 2000  # room to name the person it answers
    assert parts[-1].content.endswith("The end.") and len(parts) == 2
    assert "const a = 1;" in parts[-1].content


async def test_a_permanent_refusal_is_logged_settled_and_never_retried(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture
) -> None:
    dm = world.emu.dm_channel(world.alice)
    world.emu.fail_next("POST", SEND, status=400, code=50035, message="Invalid Form Body")
    world.llm.push(reply_with("refused answer"))
    await world.emu.user_sends_dm(world.alice, "first question")
    await world.emu.wait_for(lambda: any(r.status == 400 for r in world.emu.requests))
    await settled(bot)
    assert await bot.engine.undelivered() == []  # settled: nothing blocks later replies
    [warning] = warnings(caplog)
    assert "50035" in warning and "Invalid Form Body" in warning and "not retrying" in warning

    world.llm.push(reply_with("second answer"))
    await world.emu.user_sends_dm(world.alice, "second question")
    assert (await next_reply(world, dm)).content == "second answer"
    await settled(bot)
    assert [m.content for m in world.emu.bot_messages(dm)] == ["second answer"]
    posts = [r for r in world.emu.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert len(posts) == 2  # the refused reply was sent once, not again before the next one


async def test_a_rate_limit_that_outlasts_the_retries_is_still_temporary(
    world: World, bot: Mnemocord
) -> None:
    """429 is the one 4xx worth trying again: the reply goes out with the next one."""
    dm = world.emu.dm_channel(world.alice)
    # discord.py retries a 429 itself up to 5 times (Rapptz/discord.py discord/http.py,
    # HTTPClient.request: `for tries in range(5)`), then raises HTTPException(429).
    world.emu.fail_next("POST", SEND, status=429, retry_after=0.0, count=5)
    world.llm.push(reply_with("late answer"))
    await world.emu.user_sends_dm(world.alice, "first question")
    await world.emu.wait_for(lambda: sum(r.status == 429 for r in world.emu.requests) == 5)
    await settled(bot)
    assert [item.text for _, item in await bot.engine.undelivered()] == ["late answer"]
    world.llm.push(reply_with("next answer"))
    await world.emu.user_sends_dm(world.alice, "second question")
    assert (await next_reply(world, dm)).content == "late answer"
    assert (await next_reply(world, dm)).content == "next answer"
    await settled(bot)
    assert await bot.engine.undelivered() == []


@pytest.mark.parametrize("command", ["retry", "heartbeat", "memorywarning"])
async def test_an_answer_shown_through_a_command_is_not_posted_again_at_the_next_start(
    world: World, command: str
) -> None:
    dm = world.emu.dm_channel(world.alice)
    async with (
        Engine(world.settings) as engine,
        run_client(world.emu, Mnemocord(engine, world.settings)) as client,
    ):
        world.llm.push(reply_with("first try"))
        await world.emu.user_sends_dm(world.alice, "a question")
        assert (await next_reply(world, dm)).content == "first try"
        world.llm.push(reply_with("shown by the command"))
        shown = await (await world.emu.invoke_slash(world.alice, dm, command)).wait_done()
        assert shown.content == "shown by the command"
        await settled(client)
        assert await engine.undelivered() == []
    async with (
        Engine(world.settings) as engine,
        run_client(world.emu, Mnemocord(engine, world.settings)) as client,
    ):
        await caught_up(client)
    assert [m.content for m in world.emu.bot_messages(dm)] == ["first try",
                                                               "shown by the command"]
