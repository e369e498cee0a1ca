"""Discord faults: rate limits and server errors on sends, gateway disconnects (resumed or not),
the 3-second interaction deadline, a message deleted before its reply, missing permissions.
Each is handled without losing the turn, logged once, and the bot keeps answering afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import pytest

from bot.discordbot.bot import Mnemocord
from bot.engine import Engine
from tests.discord_emulator import Channel
from tests.discord_world import World, next_reply, reply_with
from tests.llm_server import call

SEND = "/channels/{channel_id}/messages"


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name.startswith("bot.") and r.levelno >= logging.WARNING]


async def settled(bot: Mnemocord) -> None:
    """Every message handler the bot started has finished (replies delivered and marked)."""
    if bot.turns:
        await asyncio.wait(set(bot.turns))


async def still_answers(world: World, channel: Channel) -> None:
    world.llm.push(reply_with("still here"))
    if channel.is_dm:
        await world.emu.user_sends_dm(channel.recipients[0], "are you ok?")
    else:
        await world.emu.user_sends(world.alice, channel, f"{world.mention()} are you ok?")
    assert (await next_reply(world, channel)).content == "still here"


async def test_rate_limits_and_server_errors_on_send_deliver_once(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture
) -> None:
    dm = world.emu.dm_channel(world.alice)
    world.emu.fail_next("POST", SEND, status=429, retry_after=0.01, count=2)
    world.emu.fail_next("POST", SEND, status=502)  # discord.py retries this one itself
    world.llm.push(reply_with("through the storm"))
    await world.emu.user_sends_dm(world.alice, "hello")
    assert (await next_reply(world, dm)).content == "through the storm"
    assert [m.content for m in world.emu.bot_messages(dm)] == ["through the storm"]
    assert ours(caplog) == []


async def test_a_failed_send_is_retried_with_the_next_reply_not_lost(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture
) -> None:
    dm = world.emu.dm_channel(world.alice)
    world.emu.fail_next("POST", SEND, status=503)  # discord.py gives up on a 503 at once
    world.llm.push(reply_with("first answer"))
    asked = await world.emu.user_sends_dm(world.alice, "first question")
    await world.emu.wait_for(lambda: any(r.status == 503 for r in world.emu.requests))
    world.llm.push(reply_with("second answer"))
    await world.emu.user_sends_dm(world.alice, "second question")
    first = await next_reply(world, dm)
    second = await next_reply(world, dm)
    assert (first.content, second.content) == ("first answer", "second answer")
    await settled(bot)
    assert await bot.engine.undelivered() == []
    assert int(first.reference["message_id"]) == asked.id  # still a reply to its question
    assert [r.getMessage() for r in ours(caplog)] == [
        "could not send a reply: 503 Service Unavailable (error code: 0): 503: Service"
        " Unavailable"]


async def test_gateway_drop_without_resume_mid_turn_keeps_the_reply(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def slow(request: dict[str, Any]) -> Any:
        await release.wait()
        return reply_with("answered across a new session")

    world.llm.handler = slow
    dm = world.emu.dm_channel(world.alice)
    await world.emu.user_sends_dm(world.alice, "a question")
    await world.llm.wait_for_requests(1)
    await world.emu.drop_gateway(resume=False)  # the session is gone: IDENTIFY again
    await world.emu.wait_for_identify()
    release.set()
    assert (await next_reply(world, dm)).content == "answered across a new session"
    world.llm.handler = None
    await still_answers(world, dm)
    assert ours(caplog) == []


async def test_slow_commands_beat_the_interaction_deadline(world: World, bot: Mnemocord) -> None:
    world.emu.interaction_deadline = 0.2
    world.llm.push(reply_with("a considered heartbeat").with_delay(0.4))  # slower than that
    dm = world.emu.dm_channel(world.alice)
    interaction = await world.emu.invoke_slash(world.alice, dm, "heartbeat")
    done = await interaction.wait_done()
    assert interaction.deferred and not interaction.errors
    assert done.content == "a considered heartbeat"


async def test_an_interaction_that_expired_is_logged_once_and_changes_nothing(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture
) -> None:
    world.emu.interaction_deadline = 0.0  # already too late when the bot sees it
    dm = world.emu.dm_channel(world.alice)
    interaction = await world.emu.invoke_slash(world.alice, dm, "save", {"name": "late"})
    await interaction.wait_error(10062)
    await world.emu.wait_for(lambda: ours(caplog), what="a log line")
    world.emu.interaction_deadline = 3.0
    shown = await (await world.emu.invoke_slash(world.alice, dm, "memory")).wait_done()
    assert "Memory of" in shown.content
    assert [r.getMessage() for r in ours(caplog)] == [
        "/save: the interaction expired before I could answer it"]
    assert await bot.engine.checkpoints(f"dm:{world.alice.id}") == []
    await still_answers(world, dm)


async def test_a_message_deleted_before_its_reply_gets_a_plain_reply(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def slow(request: dict[str, Any]) -> Any:
        await release.wait()
        return reply_with("you deleted it, but here you go")

    world.llm.handler = slow
    asked = await world.emu.user_sends(world.alice, world.general, f"{world.mention()} hmm?")
    await world.llm.wait_for_requests(1)
    await world.emu.delete_message(world.general, asked)
    release.set()
    reply = await next_reply(world, world.general)
    assert reply.content == "you deleted it, but here you go" and reply.reference is None
    assert ours(caplog) == []


async def test_missing_permissions_are_logged_once_and_the_turn_is_kept(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture
) -> None:
    world.emu.deny_bot(world.general)
    world.llm.push(reply_with("nobody will see this " * 200))  # several chunks
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} hi")
    await world.emu.wait_for(lambda: any(r.status == 403 for r in world.emu.requests))
    await world.emu.wait_for(lambda: ours(caplog), what="a warning")
    agent_id = f"channel:{world.general.id}"
    await settled(bot)  # the reply is refused inside the turn now (progressive delivery)
    stored = [m.text for m in await bot.engine.dump(agent_id, 10)]
    assert any(t and t.endswith("hi") for t in stored)
    assert any(t and t.startswith("nobody will see this") for t in stored)
    assert world.emu.bot_messages(world.general) == []
    world.emu.set_permissions(world.general, world.emu.bot_user, allow=0, deny=0)
    await still_answers(world, world.general)
    warnings = ours(caplog)
    assert len(warnings) == 1 and "cannot send" in warnings[0].getMessage()


async def test_an_unexpected_error_in_a_turn_still_answers_once(
    world: World, bot: Mnemocord, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine: Engine = bot.engine
    real_commit = engine.store.commit
    failures = []

    async def commit_once_failing(statements: Any) -> None:
        batch = list(statements)
        if not failures and any("INSERT INTO outbox" in sql for sql, _ in batch):
            failures.append(batch)  # the turn's commit hits a disk error, once
            raise sqlite3.OperationalError("disk I/O error")
        await real_commit(batch)

    monkeypatch.setattr(engine.store, "commit", commit_once_failing)
    world.llm.push(call("core_memory_append", label="human", content="Likes kites.",
                        request_heartbeat=True), reply_with("lost in the crash"))
    dm = world.emu.dm_channel(world.alice)
    await world.emu.user_sends_dm(world.alice, "I like kites")
    notice = await next_reply(world, dm)
    assert notice.content == "Something went wrong on my side; please try again."
    assert "Likes kites." not in (await engine.memory(f"dm:{world.alice.id}")).blocks[1]["value"]
    await settled(bot)
    assert await engine.pending_agent_ids() == [] and await engine.undelivered() == []
    assert [r.getMessage() for r in ours(caplog)] == [f"turn of dm:{world.alice.id} failed"]
    await still_answers(world, dm)
