"""Fixtures for Discord tests: the emulator with a guild of users, and the bot running on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from bot.config import Settings
from bot.discordbot.bot import Mnemocord
from bot.engine import Engine
from tests.discord_emulator import DiscordEmulator, run_client
from tests.discord_emulator.models import Channel, Guild, User
from tests.llm_server import ScriptedLLM, call

MANAGE_GUILD = discord.Permissions(manage_guild=True).value


@dataclass
class World:
    emu: DiscordEmulator
    llm: ScriptedLLM
    settings: Settings
    guild: Guild
    general: Channel
    alice: User
    bob: User
    carol: User  # has Manage Server
    outsider: User  # member of another guild only

    def mention(self) -> str:
        return f"<@{self.emu.bot_user.id}>"


@pytest.fixture
async def world(make_settings: Callable[..., Settings], llm: ScriptedLLM
                ) -> AsyncIterator[World]:
    emu = DiscordEmulator(bot_name="Mnemocord")
    await emu.start()
    guild = emu.create_guild("Test Guild", owner=emu.owner)
    admins = emu.create_role(guild, "Admins", permissions=MANAGE_GUILD)
    users = [emu.create_user(n, global_name=n.capitalize()) for n in ("alice", "bob", "carol")]
    for user in users:
        emu.add_member(guild, user, roles=[admins] if user.username == "carol" else [])
    outsider = emu.create_user("olga", global_name="Olga")
    emu.add_member(emu.create_guild("Other Guild", owner=outsider), outsider)
    general = emu.create_text_channel(guild, "general")
    try:
        yield World(emu, llm, make_settings(discord_token="unused"), guild, general, *users,
                    outsider)
    finally:
        await emu.stop()


@pytest.fixture
async def bot(world: World) -> AsyncIterator[Mnemocord]:
    async with (
        Engine(world.settings) as engine,
        run_client(world.emu, Mnemocord(engine, world.settings)) as client,
    ):
        yield client


async def next_reply(world: World, channel: Channel) -> Any:
    """The bot's next conversational message in a channel (not a slash-command response)."""
    return await world.emu.wait_for_bot_message(
        channel, lambda m: not m.ephemeral and m.interaction is None)


def reply_with(text: str) -> Any:
    return call("send_message", message=text)
