"""Admin and privacy commands: /reset, /export, /forget-me, /channel, /sync."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import personas
from bot.discordbot.cogs.memory import persona_choices
from bot.discordbot.permissions import (
    require_admin,
    require_memory_access,
    require_owner,
    route_of,
)
from bot.discordbot.routing import ChannelConfig, channel_config, save_channel_config

if TYPE_CHECKING:
    from bot.discordbot.bot import Mnemocord

log = logging.getLogger(__name__)

Interaction = discord.Interaction["Mnemocord"]
CONFIRM_SECONDS = 60.0


class Confirm(discord.ui.View):
    """A Yes/Cancel prompt that only the person who asked can answer."""

    def __init__(self, user_id: int, action: Callable[[], Awaitable[str]]) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.user_id = user_id
        self.action = action

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        if interaction.user.id != self.user_id:
            await interaction.response.send_message("This prompt isn't yours.", ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Yes, erase it", style=discord.ButtonStyle.danger,
                       custom_id="confirm")
    async def confirm(self, interaction: Interaction, button: discord.ui.Button[Confirm]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Working on it…", view=None)
        outcome = await self.action()
        await interaction.edit_original_response(content=outcome)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id="cancel")
    async def cancel(self, interaction: Interaction, button: discord.ui.Button[Confirm]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Cancelled; nothing was erased.",
                                                view=None)


class AdminCog(commands.Cog):
    def __init__(self, bot: Mnemocord) -> None:
        self.bot = bot

    @app_commands.command(name="reset", description="Erase this conversation's agent and all"
                                                    " its memory.")
    async def reset(self, interaction: Interaction) -> None:
        route = await require_memory_access(interaction)
        engine = self.bot.engine

        async def erase() -> str:
            if await engine.exists(route.agent_id):
                await engine.reset(route.agent_id)
            return "Done: the agent and all its memory are erased. It starts afresh next time."

        await interaction.response.send_message(
            "Erase this agent's core memory, every stored message and all archival memory? This"
            " cannot be undone.", view=Confirm(interaction.user.id, erase), ephemeral=True)

    @app_commands.command(name="export", description="Download the agent's memory as JSON.")
    async def export(self, interaction: Interaction) -> None:
        route = await require_memory_access(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        engine = self.bot.engine
        if not await engine.exists(route.agent_id):
            await interaction.followup.send("There is no memory here yet.", ephemeral=True)
            return
        data = await engine.export(route.agent_id)
        payload = json.dumps(data, ensure_ascii=False, indent=2).encode()
        name = route.agent_id.replace(":", "-") + ".json"
        await interaction.followup.send(
            f"Memory of `{route.agent_id}`:", file=discord.File(io.BytesIO(payload), name),
            ephemeral=True)

    @app_commands.command(name="forget-me", description="Erase what the bot stores about you,"
                                                        " everywhere.")
    async def forget_me(self, interaction: Interaction) -> None:
        user = interaction.user
        engine = self.bot.engine

        async def erase() -> str:
            names = [n for n in (user.name, user.display_name, user.global_name) if n]
            # Their own private agents go whole; every other agent is searched (bot/forget.py).
            own = [agent_id for agent_id in await engine.agents_with_sender(str(user.id))
                   if agent_id == f"dm:{user.id}" or agent_id.endswith(f":member:{user.id}")]
            report = await engine.forget_person(str(user.id), names, reset=own)
            return report.describe()

        await interaction.response.send_message(
            "Erase your private conversations with me and everything shared channels remember"
            " about you? This cannot be undone.", view=Confirm(user.id, erase), ephemeral=True)

    @app_commands.command(name="channel", description="How the bot serves this channel"
                                                      " (Manage Server).")
    @app_commands.describe(
        mode="shared: one agent for the channel; per-member: a private agent for each member",
        listen="mentions: answer when mentioned or replied to; all: answer every message;"
               " observe: remember every message, answer when mentioned or replied to",
        persona="Persona for new agents in this channel",
        scope="this channel/thread only, or (in a thread) its own settings apart from the parent",
    )
    async def channel(
        self, interaction: Interaction,
        mode: Literal["shared", "per-member"] | None = None,
        listen: Literal["mentions", "all", "observe"] | None = None,
        persona: str | None = None,
        scope: Literal["follow-parent", "this-thread"] = "follow-parent",
    ) -> None:
        await require_admin(interaction)
        channel = interaction.channel
        if channel is None:
            return
        if persona is not None:
            try:
                personas.read(self.bot.settings.personas_dir, persona)
            except ValueError as error:
                await interaction.response.send_message(str(error), ephemeral=True)
                return
        if isinstance(channel, discord.Thread) and scope == "this-thread":
            target, config = channel.id, (await channel_config(self.bot.engine, channel))[1]
        else:
            target, config = await channel_config(self.bot.engine, channel)
        config = ChannelConfig(mode or config.mode, listen or config.listen,
                               persona if persona is not None else config.persona)
        await save_channel_config(self.bot.engine, target, config)
        note = (" Observe mode needs mode **shared**: per-member agents only hear their own"
                " person." if config.listen == "observe" and config.mode == "per-member" else "")
        await interaction.response.send_message(
            f"<#{target}>: mode **{config.mode}**, answering **{config.listen}**, persona"
            f" **{config.persona or self.bot.settings.default_persona}**.{note}", ephemeral=True)

    @channel.autocomplete("persona")
    async def _persona_names(self, interaction: Interaction, current: str
                             ) -> list[app_commands.Choice[str]]:
        return persona_choices(self.bot, current)

    @app_commands.command(name="sync", description="Re-register slash commands (bot owner).")
    async def sync(self, interaction: Interaction) -> None:
        await require_owner(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.sync_commands_if_changed(force=True)
        await interaction.followup.send("Slash commands synced.", ephemeral=True)

    @app_commands.command(name="whoami", description="Which agent answers you here.")
    async def whoami(self, interaction: Interaction) -> None:
        route = await route_of(interaction)
        kind = "your private agent" if route.private else "this channel's shared agent"
        await interaction.response.send_message(f"Here you talk to {kind} (`{route.agent_id}`).",
                                                ephemeral=True)
