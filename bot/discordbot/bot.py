"""The Discord bot: one `AutoShardedBot` subclass that owns all wiring."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.discordbot.permissions import Refused
from bot.engine import Engine
from bot.tasks import observe

log = logging.getLogger(__name__)

COMMAND_HASH_KEY = "discord:command_hash"  # + ":<application id>": one hash per application
UNKNOWN_INTERACTION = 10062  # Discord's error code for an interaction that expired

# Never ping @everyone, @here or roles; user pings are allowed per message where intended.
DEFAULT_MENTIONS = discord.AllowedMentions(everyone=False, roles=False, users=False,
                                           replied_user=True)


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True  # privileged: enable it in the developer portal
    return wanted


class Tree(app_commands.CommandTree["Mnemocord"]):
    async def on_error(
        self, interaction: discord.Interaction[Mnemocord], error: app_commands.AppCommandError
    ) -> None:
        name = getattr(interaction.command, "name", "?")
        original = getattr(error, "original", error)
        if isinstance(original, discord.NotFound) and original.code == UNKNOWN_INTERACTION:
            # Discord dropped the interaction (its 3-second deadline passed before we could
            # acknowledge it): nothing can be sent to it any more, so say so once and stop.
            log.warning("/%s: the interaction expired before I could answer it", name)
            return
        if isinstance(error, Refused | app_commands.CheckFailure):
            text = str(error) or "You can't use this command here."
        else:
            log.error("command /%s failed", name, exc_info=original)
            text = "Something went wrong running that command; nothing was changed."
        await send_ephemeral(interaction, text)


async def send_ephemeral(interaction: discord.Interaction[Any], text: str, **extra: Any) -> None:
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, **extra)
        else:
            await interaction.response.send_message(text, ephemeral=True, **extra)
    except discord.HTTPException as error:  # expired interaction, Discord hiccup
        log.warning("could not answer an interaction: %s", error)


class Mnemocord(commands.AutoShardedBot):
    def __init__(self, engine: Engine, settings: Settings, **options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,  # no text commands; slash commands only
            help_command=None,
            intents=intents(),
            allowed_mentions=DEFAULT_MENTIONS,
            tree_cls=Tree,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            shard_count=settings.discord_shards,
            **options,
        )
        self.engine = engine
        self.settings = settings
        self.turns: set[asyncio.Task[Any]] = set()  # in-flight turns, finished on shutdown

    @property
    def bot_name(self) -> str:
        return self.user.display_name if self.user else "Mnemocord"

    async def setup_hook(self) -> None:
        from bot.discordbot.cogs.admin import AdminCog
        from bot.discordbot.cogs.chat import ChatCog
        from bot.discordbot.cogs.memory import MemoryCog

        for cog in (ChatCog(self), MemoryCog(self), AdminCog(self)):
            await self.add_cog(cog)
        await self.sync_commands_if_changed()

    def command_hash(self) -> str:
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    async def sync_commands_if_changed(self, *, force: bool = False) -> bool:
        """Sync slash commands when their definitions changed, when this application (a new
        token may be another app) never synced them, when Discord lost some (deleted outside
        the bot), or when forced. A refused sync is one log line; the bot keeps running."""
        key = f"{COMMAND_HASH_KEY}:{self.application_id}"
        digest = self.command_hash()
        if not force and await self.engine.get_setting(key) == digest:
            names = await self._registered_names()
            if names is None or names == {c.name for c in self.tree.get_commands()}:
                log.info("slash commands unchanged; not syncing")
                return False
            log.info("slash commands differ on Discord (changed outside the bot); syncing")
        try:
            synced = await self.tree.sync()
        except discord.HTTPException as error:
            # 400 (a definition Discord refuses), 30034 (200 command creates a day), 5xx: the
            # old commands stay registered; next start (or /sync) tries again.
            log.error("could not sync slash commands: %s %s (code %s): %s", error.status,
                      error.response.reason, error.code, error.text or "no details")
            return False
        await self.engine.set_setting(key, digest)
        log.info("synced %d slash commands", len(synced))
        return True

    async def _registered_names(self) -> set[str] | None:
        try:
            return {c.name for c in await self.tree.fetch_commands()}
        except discord.HTTPException as error:
            log.warning("could not list the registered slash commands: %s", error)
            return None

    async def on_message(self, message: discord.Message) -> None:
        """No text commands: conversation is handled by the chat cog's listener."""

    def track(self, task: asyncio.Task[Any], what: str = "a conversation turn") -> None:
        """Keep the task until it ends (close() waits for it) and log its failure."""
        self.turns.add(task)
        task.add_done_callback(self.turns.discard)
        observe(task, what, log)

    async def close(self) -> None:
        """Let in-flight turns finish (bounded); unfinished ones stay pending for next start."""
        if self.turns:
            log.info("waiting for %d in-flight turns", len(self.turns))
            _, unfinished = await asyncio.wait(set(self.turns), timeout=30)
            for task in unfinished:
                task.cancel()
        await super().close()
