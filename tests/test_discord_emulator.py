"""Prove the Discord emulator against the real discord.py client (a minimal bot defined here)."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_emulator import DiscordEmulator, wait_client
from tests.discord_emulator.models import Channel, Guild, User

TIMEOUT = 5.0


@dataclass
class World:
    emu: DiscordEmulator
    alice: User
    guild: Guild
    chan: Channel


@pytest.fixture(name="world")
async def world_fixture() -> Any:
    emu = DiscordEmulator(bot_name="Mnemocord")
    await emu.start()
    alice = emu.create_user("alice", global_name="Alice")
    guild = emu.create_guild("Test Guild", owner=emu.owner)
    emu.add_member(guild, alice)
    chan = emu.create_text_channel(guild, "general")
    try:
        yield World(emu, alice, guild, chan)
    finally:
        await emu.stop()


@dataclass
class Seen:
    """What the test bot observed, with an event per arrival so tests never sleep."""

    messages: list[discord.Message] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, item: discord.Message | BaseException) -> None:
        if isinstance(item, BaseException):
            self.errors.append(item)
        else:
            self.messages.append(item)
        self.arrived.set()

    async def wait(self, predicate: Any) -> Any:
        async with asyncio.timeout(TIMEOUT):
            while (
                found := next((x for x in self.messages + self.errors if predicate(x)), None)
            ) is None:
                self.arrived.clear()
                await self.arrived.wait()
        return found


def make_bot(
    seen: Seen, *, message_content: bool = True, gate: asyncio.Event | None = None
) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    bot = commands.Bot(command_prefix="!", intents=intents)

    @bot.event
    async def on_message(message: discord.Message) -> None:
        seen.add(message)
        if message.author.bot:
            return
        if message.content.startswith("echo "):
            async with message.channel.typing():
                await message.reply(f"echo: {message.content[5:]}")
        elif message.content == "upload" and message.attachments:
            data = await message.attachments[0].read()
            await message.channel.send(
                "here", file=discord.File(io.BytesIO(data.upper()), "out.txt")
            )

    @bot.tree.command(description="Show memories")
    async def memory(interaction: discord.Interaction, n: int) -> None:
        await interaction.response.send_message(f"n={n}", ephemeral=True)

    @bot.tree.command(description="Slow command")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("done", file=discord.File(io.BytesIO(b"x"), "r.txt"))
        await interaction.followup.send("more")

    @bot.tree.command(description="Waits for the test")
    async def late(interaction: discord.Interaction) -> None:
        assert gate is not None
        await gate.wait()
        await interaction.response.send_message("too late")

    class Panel(discord.ui.View):
        @discord.ui.button(label="OK", custom_id="ok")
        async def ok(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
            await interaction.response.edit_message(
                content=f"clicked by {interaction.user.name}", view=None
            )

    @bot.tree.command(description="Buttons")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pick", view=Panel())

    class Note(discord.ui.Modal, title="Note"):
        text: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Text", custom_id="text")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            await interaction.response.send_message(f"noted {self.text.value}")

    @bot.tree.command(description="Modal")
    @app_commands.allowed_contexts(guilds=True, dms=True)
    async def note(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Note())

    async def complete(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f, value=f) for f in ("apple", "banana") if current in f]

    @bot.tree.command(description="Fruit")
    @app_commands.autocomplete(fruit=complete)
    async def fruit(interaction: discord.Interaction, fruit: str) -> None:
        await interaction.response.send_message(fruit)

    @bot.tree.error
    async def on_app_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        seen.add(error)

    return bot


async def test_connect_ready_and_guild_available(world: World) -> None:
    bot = make_bot(Seen())
    async with world.emu.run_client(bot):
        assert bot.is_ready() and bot.user is not None
        assert bot.user.id == world.emu.bot_user.id
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and not guild.unavailable
        assert guild.get_channel(world.chan.id) is not None
        assert await bot.is_owner(discord.Object(world.emu.owner.id))  # type: ignore[arg-type]
        assert world.emu.gateway.identifies[0].intents == bot.intents.value


async def test_on_message_reply_after_typing_and_echo(world: World) -> None:
    emu, seen = world.emu, Seen()
    bot = make_bot(seen)
    async with emu.run_client(bot):
        sent = await emu.user_sends(world.alice, world.chan, "echo hello")
        reply = await emu.wait_for_bot_message(world.chan)
        assert reply.content == "echo: hello" and reply.reply_to == sent.id
        assert emu.typing_count(world.chan) >= 1
        assert emu.typings[0].seq < reply.seq
        # Discord echoes the bot's own message back over the gateway.
        echoed = await seen.wait(lambda m: isinstance(m, discord.Message) and m.id == reply.id)
        assert echoed.author.id == emu.bot_user.id
        # Default allowed_mentions on a reply pings the replied-to author, nobody else.
        assert reply.pings.users == {world.alice.id} and not reply.pings.everyone


async def test_allowed_mentions_pings(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        channel = bot.get_channel(world.chan.id)
        assert isinstance(channel, discord.TextChannel)
        text = f"@everyone hi {world.alice.mention}"
        loud = await channel.send(text)
        quiet = await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        users_only = await channel.send(
            text, allowed_mentions=discord.AllowedMentions(everyone=False)
        )
    assert emu.messages[loud.id].pings["everyone"]
    assert not emu.messages[quiet.id].pings.anyone
    assert emu.messages[quiet.id].allowed_mentions == {"parse": []}
    assert emu.messages[users_only.id].pings.users == {world.alice.id}
    assert not emu.messages[users_only.id].pings.everyone


async def test_attachment_roundtrip_multipart(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())):
        await emu.user_sends(world.alice, world.chan, "upload", attachments=[("in.txt", b"abc")])
        reply = await emu.wait_for_bot_message(world.chan)
    assert reply.files == {"out.txt": b"ABC"}
    assert reply.content == "here"


async def test_injected_429_is_retried_once(world: World) -> None:
    emu = world.emu
    fault = emu.fail_next("POST", "/channels/{channel_id}/messages", status=429, retry_after=0.05)
    async with emu.run_client(make_bot(Seen())):
        await emu.user_sends(world.alice, world.chan, "echo once")
        reply = await emu.wait_for_bot_message(world.chan)
        assert reply.content == "echo: once"
        assert fault.remaining == 0
    posts = [r for r in emu.requests if r.template == "/channels/{channel_id}/messages"]
    assert [(r.status, r.injected) for r in posts] == [(429, True), (200, False)]
    assert len(emu.bot_messages(world.chan)) == 1


async def test_injected_500_is_retried(world: World) -> None:
    emu = world.emu
    emu.fail_next("POST", f"/channels/{world.chan.id}/messages", status=500)
    async with emu.run_client(make_bot(Seen())):
        await emu.user_sends(world.alice, world.chan, "echo again")
        reply = await emu.wait_for_bot_message(world.chan)
    assert reply.content == "echo: again"
    assert [r.status for r in emu.requests if r.path.endswith("/messages")] == [500, 200]


async def test_gateway_drop_resumes_and_replays(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())):
        await emu.drop_gateway(resume=True)
        await emu.user_sends(world.alice, world.chan, "echo during gap")
        record = await emu.wait_for_resume()
        assert record.replayed >= 1
        reply = await emu.wait_for_bot_message(world.chan)
        assert reply.content == "echo: during gap"
        assert emu.gateway.close_codes == [4000]
        assert len(emu.gateway.identifies) == 1


async def test_invalid_session_forces_reidentify(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())):
        await emu.drop_gateway(resume=False)
        session = await emu.wait_for_identify()
        assert len(emu.gateway.identifies) == 2 and session.conn is not None
        await emu.user_sends(world.alice, world.chan, "echo after")
        assert (await emu.wait_for_bot_message(world.chan)).content == "echo: after"


async def test_slash_command_sync_and_invoke(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        await bot.tree.sync()
        assert len(emu.command_syncs) == 1
        assert sorted(emu.command_syncs[0].names) == [
            "fruit",
            "late",
            "memory",
            "note",
            "panel",
            "slow",
        ]
        inter = await emu.invoke_slash(world.alice, world.chan, "memory", {"n": 3})
        resp = await inter.wait_done(timeout=TIMEOUT)
    assert resp.response_type == 4 and resp.content == "n=3" and resp.ephemeral
    assert emu.registered_commands()[0].application_id == emu.application_id


async def test_deferred_followup_edits_original(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        await bot.tree.sync()
        inter = await emu.invoke_slash(world.alice, world.chan, "slow")
        resp = await inter.wait_done(timeout=TIMEOUT)
        assert resp.response_type == 5 and resp.message is not None
        assert resp.content == "done" and resp.files == {"r.txt": b"x"}
        assert not resp.message.loading
        more = await emu.wait_for(lambda: inter.followups, TIMEOUT, "second followup")
    assert [m.content for m in more] == ["more"]
    assert more[0].id != resp.message.id


async def test_late_interaction_response_gets_10062(world: World) -> None:
    emu, seen, gate = world.emu, Seen(), asyncio.Event()
    emu.interaction_deadline = 0.2
    async with emu.run_client(make_bot(seen, gate=gate)) as bot:
        await bot.tree.sync()
        inter = await emu.invoke_slash(world.alice, world.chan, "late")
        await inter.wait_expired(timeout=TIMEOUT)
        gate.set()
        error = await inter.wait_error(10062, timeout=TIMEOUT)
        assert error["message"] == "Unknown interaction" and error["status"] == 404
        failure = await seen.wait(lambda x: isinstance(x, app_commands.CommandInvokeError))
    original = failure.original
    assert isinstance(original, discord.NotFound) and original.code == 10062
    assert not inter.done


async def test_button_click_round_trip(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        await bot.tree.sync()
        inter = await emu.invoke_slash(world.alice, world.chan, "panel")
        first = await inter.wait_done(timeout=TIMEOUT)
        assert first.custom_ids == ["ok"] and not first.ephemeral
        click = await emu.click_button(world.alice, inter, "ok")
        done = await click.wait_done(timeout=TIMEOUT)
    assert done.response_type == 7
    assert done.message is first.message
    assert done.content == "clicked by alice" and done.components == []


async def test_dm_modal_submit_and_autocomplete(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        await bot.tree.sync()
        inter = await emu.invoke_slash(world.alice, emu.dm_channel(world.alice), "note")
        shown = await inter.wait_done(timeout=TIMEOUT)
        assert shown.response_type == 9 and shown.modal is not None
        assert inter.payload["context"] == 1 and "user" in inter.payload
        submit = await emu.submit_modal(world.alice, inter, {"text": "buy milk"})
        assert (await submit.wait_done(timeout=TIMEOUT)).content == "noted buy milk"
        ac = await emu.invoke_autocomplete(world.alice, world.chan, "fruit", "fruit", "an")
        assert (await ac.wait_done(timeout=TIMEOUT)).choices == [
            {"name": "banana", "value": "banana"}
        ]


async def test_callback_twice_is_400_40060(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        await bot.tree.sync()
        inter = await emu.invoke_slash(world.alice, world.chan, "memory", {"n": 1})
        await inter.wait_done(timeout=TIMEOUT)
        url = f"{emu.api_base}/interactions/{inter.id}/{inter.token}/callback"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, json={"type": 4, "data": {"content": "again"}}) as resp,
        ):
            assert resp.status == 400 and resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["code"] == 40060


async def test_rest_rules_enforced(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        channel = bot.get_channel(world.chan.id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.status == 400 and too_long.value.code == 50035
        gone = await emu.user_sends(world.alice, world.chan, "soon deleted")
        await emu.delete_message(world.chan, gone)
        ref = discord.MessageReference(message_id=gone.id, channel_id=world.chan.id)
        with pytest.raises(discord.HTTPException) as bad_ref:
            await channel.send("reply", reference=ref)
        assert bad_ref.value.code == 50035
        ref_ok = discord.MessageReference(
            message_id=gone.id, channel_id=world.chan.id, fail_if_not_exists=False
        )
        plain = await channel.send("reply", reference=ref_ok)
        assert plain.reference is None
        emu.deny_bot(world.chan)
        with pytest.raises(discord.Forbidden) as forbidden:
            await channel.send("nope")
        assert forbidden.value.code == 50013


async def test_without_message_content_intent(world: World) -> None:
    emu, seen = world.emu, Seen()
    async with emu.run_client(make_bot(seen, message_content=False)):
        plain = await emu.user_sends(world.alice, world.chan, "secret")
        mention = await emu.user_sends(world.alice, world.chan, f"{emu.bot_user.mention} hi")
        dm = await emu.user_sends_dm(world.alice, "dm text")
        got = {
            m.id: m
            for m in [
                await seen.wait(lambda m, i=i: m.id == i) for i in (plain.id, mention.id, dm.id)
            ]
        }
    assert got[plain.id].content == ""
    assert got[mention.id].content == f"{emu.bot_user.mention} hi"
    assert got[dm.id].content == "dm text"


async def test_auto_sharded_bot_connects(world: World) -> None:
    intents = discord.Intents.default()
    bot = commands.AutoShardedBot(command_prefix="!", intents=intents)
    async with world.emu.run_client(bot):
        assert bot.shard_count == 1
        await wait_client(bot, lambda: bot.get_guild(world.guild.id) is not None)
        assert world.emu.gateway.identifies[0].shard == (0, 1)
