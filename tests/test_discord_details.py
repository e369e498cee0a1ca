"""The Discord details a real server hits (issue 12): deduplicated sends, command sync per
application and its failures, acknowledging before any work, /export past the upload limit,
confirmation prompts that time out, commands hidden by default_member_permissions."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from typing import Any

import pytest

from bot.discordbot.bot import Mnemocord
from bot.discordbot.cogs import admin, memory
from bot.discordbot.delivery import deliver
from bot.engine import Engine
from tests.discord_emulator import run_client
from tests.discord_emulator.interactions import APPLICATION_COMMAND
from tests.discord_emulator.models import Channel, User
from tests.discord_world import World, next_reply, reply_with

SYNC_ROUTE = "/applications/{application_id}/commands"
BOT_LOG = "bot.discordbot.bot"


async def slash(world: World, user: User, channel: Channel, name: str,
                options: dict[str, Any] | None = None) -> Any:
    return await (await world.emu.invoke_slash(user, channel, name, options or {})).wait_done()


async def test_a_repeated_outbox_send_is_deduplicated_by_discord(world: World,
                                                                 bot: Mnemocord) -> None:
    # discord.py >= 2.5 sends enforce_nonce with a nonce; without it Discord keeps both.
    channel = bot.get_channel(world.general.id)
    assert channel is not None
    for _ in range(2):  # the same outbox item, sent again after a crash
        assert await deliver(channel, "only once", reply_to=None, ping=[], nonce="outbox-item-1")
    assert [m.content for m in world.emu.bot_messages(world.general)] == ["only once"]


async def test_the_command_hash_is_kept_per_application(world: World) -> None:
    emu = world.emu
    async with Engine(world.settings) as engine:
        async with run_client(emu, Mnemocord(engine, world.settings)):
            pass
        async with run_client(emu, Mnemocord(engine, world.settings)):
            pass
        assert len(emu.command_syncs) == 1  # unchanged: not synced again
        emu.commands.clear()  # someone deleted the commands outside the bot
        async with run_client(emu, Mnemocord(engine, world.settings)):
            pass
        assert len(emu.command_syncs) == 2 and emu.registered_commands(None)
        emu.application_id += 1  # a new token of another application, same data folder
        async with run_client(emu, Mnemocord(engine, world.settings)):
            pass
        assert len(emu.command_syncs) == 3


@pytest.mark.parametrize(("status", "code", "message"), [
    (400, 50035, "Invalid Form Body"),
    (400, 30034, "Max number of daily application command creates has been reached (200)"),
    (503, 0, "upstream connect error"),  # discord.py retries 500/502/504/524 itself, then this
])
async def test_a_refused_sync_is_one_line_and_the_bot_runs(
        world: World, caplog: pytest.LogCaptureFixture, status: int, code: int,
        message: str) -> None:
    emu = world.emu
    emu.fail_next("PUT", SYNC_ROUTE, status, code=code, message=message)
    caplog.set_level(logging.INFO, logger=BOT_LOG)
    async with Engine(world.settings) as engine:
        async with run_client(emu, Mnemocord(engine, world.settings)):
            world.llm.push(reply_with("still here"))
            await emu.user_sends(world.alice, world.general, f"{world.mention()} hi")
            assert (await next_reply(world, world.general)).content == "still here"
        failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(failed) == 1 and failed[0].exc_info is None
        line = failed[0].getMessage()
        assert f"{status} " in line and str(code) in line and "\n" not in line
        assert not emu.command_syncs  # Discord refused it: nothing registered
        async with run_client(emu, Mnemocord(engine, world.settings)):
            pass
        assert len(emu.command_syncs) == 1  # the next start tries again


async def test_every_command_acknowledges_before_any_database_work(world: World,
                                                                   bot: Mnemocord) -> None:
    emu = world.emu
    store = bot.engine.store
    real = store._run
    early: list[str | None] = []

    async def watched(function: Any, *args: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "CommandTree-invoker":  # a command's own
            early.extend(i.command_name for i in emu.interactions.values()
                         if i.type == APPLICATION_COMMAND and not i.acknowledged)
        return await real(function, *args)

    world.llm.push(reply_with("hello"))
    await emu.user_sends(world.alice, world.general, f"{world.mention()} hi")
    await next_reply(world, world.general)
    store._run = watched  # type: ignore[method-assign]
    owner_dm = emu.dm_channel(emu.owner)
    runs = [(world.carol, world.general, "memory", {}), (world.carol, world.general, "dump", {}),
            (world.alice, world.general, "memory", {}), (world.carol, world.general, "reset", {}),
            (world.alice, world.general, "whoami", {}), (world.alice, world.general, "export", {}),
            (world.carol, world.general, "channel", {"listen": "mentions"}),
            (world.bob, world.general, "forget-me", {}), (emu.owner, owner_dm, "sync", {}),
            (world.carol, world.general, "save", {"name": "cp"})]
    for user, channel, name, options in runs:
        mark = len(emu.requests)
        inter = await emu.invoke_slash(user, channel, name, options)
        await inter.wait_done()
        first = emu.requests[mark]
        assert first.method == "POST" and first.path.endswith(f"/{inter.token}/callback"), (
            f"/{name}: the first request was {first.method} {first.path}")
        assert inter.before_ack == [], f"/{name}"
    assert early == []


async def test_export_past_the_upload_limit_is_compressed_or_refused_clearly(
        world: World, bot: Mnemocord, monkeypatch: pytest.MonkeyPatch) -> None:
    emu, alice = world.emu, world.alice
    on_loop: list[bool] = []

    def packing(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop runs in this thread
            on_loop.append(False)
        return pack(*args)

    pack = admin.pack_export
    monkeypatch.setattr(admin, "pack_export", packing)
    dm = emu.dm_channel(alice)
    world.llm.push(reply_with("Noted. " * 200))
    await emu.user_sends_dm(alice, "remember this " * 200)
    await next_reply(world, dm)
    [(name, plain)] = (await slash(world, alice, dm, "export")).files.items()
    assert name.endswith(".json")
    emu.upload_limit = len(plain) // 2  # the interaction's attachment_size_limit follows
    packed = await slash(world, alice, dm, "export")
    [(name, data)] = packed.files.items()
    assert name == f"dm-{alice.id}.json.gz" and "compressed" in packed.content
    assert len(data) <= emu.upload_limit
    assert json.loads(gzip.decompress(data))["messages"] == json.loads(plain)["messages"]
    emu.upload_limit = 100
    refused = await slash(world, alice, dm, "export")
    assert not refused.files and "upload limit" in refused.content and refused.ephemeral
    assert on_loop == [False, False, False]  # the JSON is built off the event loop


async def test_a_prompt_disables_itself_on_timeout_and_a_late_click_is_answered(
        world: World, bot: Mnemocord, monkeypatch: pytest.MonkeyPatch) -> None:
    emu, alice = world.emu, world.alice
    dm = emu.dm_channel(alice)
    world.llm.push(reply_with("hi"))
    await emu.user_sends_dm(alice, "hello")
    await next_reply(world, dm)
    monkeypatch.setattr(admin, "CONFIRM_SECONDS", 0.05)
    prompt = await slash(world, alice, dm, "reset")
    timed_out = await emu.wait_for(lambda: prompt.message if prompt.message.content
                                   == admin.EXPIRED else None)
    assert all(timed_out.component(c)["disabled"] for c in ("confirm", "cancel"))
    with pytest.raises(ValueError, match="disabled"):  # Discord's client cannot click it
        await emu.click_button(alice, prompt, "confirm")

    # The edit that disables the buttons fails (token gone, Discord hiccup): a click after the
    # timeout reaches no view and still gets an answer, and nothing is erased.
    emu.fail_next("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", 404,
                  code=10015, message="Unknown Webhook")
    prompt = await slash(world, alice, dm, "reset")
    await emu.wait_for(lambda: any(r.injected for r in emu.requests))
    late = await (await emu.click_button(alice, prompt, "confirm")).wait_done()
    assert late.ephemeral and late.content == admin.EXPIRED
    assert await bot.engine.exists(f"dm:{alice.id}")

    # A click on a live prompt is answered by its view alone (the late-click listener stays out).
    monkeypatch.setattr(admin, "CONFIRM_SECONDS", 60.0)
    prompt = await slash(world, alice, dm, "reset")
    click = await emu.click_button(alice, prompt, "cancel")
    await emu.wait_for(lambda: prompt.message.content.startswith("Cancelled") or None)
    await slash(world, alice, dm, "whoami")  # one more round trip: any second answer is in
    assert click.errors == [] and click.response_type == 7  # UPDATE_MESSAGE, once


async def test_channel_and_sync_are_hidden_from_members_who_cannot_use_them(
        world: World, bot: Mnemocord) -> None:
    [sync] = world.emu.command_syncs
    wanted = {c["name"]: c.get("default_member_permissions") for c in sync.payload}
    # Manage Server (0x20); "0": administrators only (Discord takes the bit set as a number)
    assert str(wanted["channel"]) == "32" and str(wanted["sync"]) == "0"
    assert wanted["memory"] is None and wanted["forget-me"] is None  # open to everyone
    with pytest.raises(PermissionError):
        await world.emu.invoke_slash(world.bob, world.general, "channel", {"listen": "all"})
    shown = await slash(world, world.carol, world.general, "channel", {"listen": "mentions"})
    assert "answering **mentions**" in shown.content


async def test_load_suggestions_answer_in_time_when_the_database_is_slow(
        world: World, bot: Mnemocord, monkeypatch: pytest.MonkeyPatch) -> None:
    # An autocomplete cannot be deferred (its answer is the acknowledgement): its reads are
    # bounded, so a slow database gives no suggestions instead of an expired interaction.
    emu, alice = world.emu, world.alice
    dm = emu.dm_channel(alice)
    await slash(world, alice, dm, "save", {"name": "cp1"})
    suggest = await emu.invoke_autocomplete(alice, dm, "load", "name", "cp")
    assert [c["value"] for c in (await suggest.wait_done()).choices or []] == ["cp1"]

    store = bot.engine.store
    real = store._run
    gate = asyncio.Event()

    async def slow(function: Any, *args: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "CommandTree-invoker":
            await gate.wait()  # the database does not answer while the suggestion is due
        return await real(function, *args)

    monkeypatch.setattr(store, "_run", slow)
    monkeypatch.setattr(memory, "AUTOCOMPLETE_SECONDS", 0.05)
    suggest = await emu.invoke_autocomplete(alice, dm, "load", "name", "cp")
    answered = await suggest.wait_done()
    gate.set()
    assert not answered.expired and answered.choices == []
