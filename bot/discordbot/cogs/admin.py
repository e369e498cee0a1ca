"""Admin and privacy commands: /reset, /export, /forget-me, /channel, /sync."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import personas
from bot.discordbot.bot import send_ephemeral
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


def pack_export(data: object, name: str, limit: int) -> tuple[bytes, str] | None:
    """The export as a file that fits Discord's upload limit: plain JSON, else gzip (JSON
    compresses several-fold), else None. Runs in a thread: a big agent takes a while."""
    payload = json.dumps(data, ensure_ascii=False, indent=2).encode()
    if len(payload) <= limit:
        return payload, name
    packed = gzip.compress(payload, compresslevel=9)
    return (packed, name + ".gz") if len(packed) <= limit else None


class Confirm(discord.ui.View):
    """A Yes/Cancel prompt that only the person who asked can answer. On timeout it disables
    its buttons (an edit of the prompt); a click it no longer handles gets late_click()."""

    def __init__(self, user_id: int, action: Callable[[], Awaitable[str]]) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.user_id = user_id
        self.action = action
        self.message: discord.WebhookMessage | None = None
        self.handled: set[int] = set()  # interaction ids this view took (see AdminCog)

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        self.handled.add(interaction.id)
        if interaction.user.id != self.user_id:
            await interaction.response.send_message("This prompt isn't yours.", ephemeral=True)
            return False
        return True

    async def on_timeout(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        if self.message is None:
            return
        try:
            await self.message.edit(content=EXPIRED, view=self)
        except discord.HTTPException as error:  # token gone, Discord hiccup: clicks get late_click
            log.warning("could not disable a timed-out prompt: %s", error)

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


EXPIRED = "This prompt timed out; nothing was erased. Run the command again to start over."
CONFIRM_IDS = ("confirm", "cancel")
KEPT_PROMPTS = 500  # prompts remembered for telling a late click from a live one


class AdminCog(commands.Cog):
    def __init__(self, bot: Mnemocord) -> None:
        self.bot = bot
        self.prompts: dict[int, Confirm] = {}  # prompt message id -> its view, newest last

    async def ask(self, interaction: Interaction, question: str, view: Confirm) -> None:
        """Show a confirmation prompt as the (deferred) command's answer."""
        view.message = await interaction.followup.send(question, view=view, ephemeral=True,
                                                       wait=True)
        self.prompts[view.message.id] = view
        while len(self.prompts) > KEPT_PROMPTS:
            del self.prompts[next(iter(self.prompts))]

    @commands.Cog.listener()
    async def on_interaction(self, interaction: Interaction) -> None:
        """A click on a prompt whose view is gone (timed out, already answered, or from before
        a restart) reaches no view: answer it, or Discord shows "This interaction failed".
        discord.py hands a click to a live view before this listener runs (the view's task is
        scheduled first), so `handled` already holds it then."""
        if interaction.type is not discord.InteractionType.component or not isinstance(
                interaction.data, dict) or interaction.data.get("custom_id") not in CONFIRM_IDS:
            return
        view = self.prompts.get(interaction.message.id) if interaction.message else None
        if view is not None and (interaction.id in view.handled or not view.is_finished()):
            return
        await send_ephemeral(interaction, EXPIRED)

    @app_commands.command(name="reset", description="Erase this conversation's agent and all"
                                                    " its memory.")
    async def reset(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # before any DB work
        route = await require_memory_access(interaction)
        engine = self.bot.engine

        async def erase() -> str:
            if await engine.exists(route.agent_id):
                await engine.reset(route.agent_id)
            return "Done: the agent and all its memory are erased. It starts afresh next time."

        await self.ask(interaction, "Erase this agent's core memory, every stored message and"
                       " all archival memory? This cannot be undone.",
                       Confirm(interaction.user.id, erase))

    @app_commands.command(name="export", description="Download the agent's memory as JSON.")
    async def export(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        route = await require_memory_access(interaction)
        engine = self.bot.engine
        if not await engine.exists(route.agent_id):
            await interaction.followup.send("There is no memory here yet.", ephemeral=True)
            return
        data = await engine.export(route.agent_id)
        name = route.agent_id.replace(":", "-") + ".json"
        limit = interaction.filesize_limit  # the interaction's attachment_size_limit
        packed = await asyncio.to_thread(pack_export, data, name, limit)
        if packed is None:
            await interaction.followup.send(
                f"The memory of `{route.agent_id}` is over this server's upload limit"
                f" ({limit / 1_000_000:.1f} MB) even compressed, so I can't send it here. The bot's"
                " host can copy it from the data folder; nothing was changed.",
                ephemeral=True)
            return
        payload, name = packed
        note = " (gzip-compressed to fit the upload limit)" if name.endswith(".gz") else ""
        await interaction.followup.send(
            f"Memory of `{route.agent_id}`{note}:", file=discord.File(io.BytesIO(payload), name),
            ephemeral=True)

    @app_commands.command(name="forget-me", description="Erase what the bot stores about you,"
                                                        " everywhere.")
    async def forget_me(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = interaction.user
        engine = self.bot.engine

        async def erase() -> str:
            names = [n for n in (user.name, user.display_name, user.global_name) if n]
            # Their own private agents go whole; every other agent is searched (bot/forget.py).
            own = [agent_id for agent_id in await engine.agents_with_sender(str(user.id))
                   if agent_id == f"dm:{user.id}" or agent_id.endswith(f":member:{user.id}")]
            report = await engine.forget_person(str(user.id), names, reset=own)
            return report.describe()

        await self.ask(interaction, "Erase your private conversations with me and everything"
                       " shared channels remember about you? This cannot be undone.",
                       Confirm(user.id, erase))

    @app_commands.command(name="channel", description="How the bot serves this channel"
                                                      " (Manage Server).")
    @app_commands.default_permissions(manage_guild=True)  # hidden from others; still checked
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
        await interaction.response.defer(ephemeral=True, thinking=True)  # before any DB work
        await require_admin(interaction)
        channel = interaction.channel
        if channel is None:
            return
        if persona is not None:
            try:
                personas.read(self.bot.settings.personas_dir, persona)
            except ValueError as error:
                await interaction.followup.send(str(error), ephemeral=True)
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
        await interaction.followup.send(
            f"<#{target}>: mode **{config.mode}**, answering **{config.listen}**, persona"
            f" **{config.persona or self.bot.settings.default_persona}**.{note}", ephemeral=True)

    @channel.autocomplete("persona")
    async def _persona_names(self, interaction: Interaction, current: str
                             ) -> list[app_commands.Choice[str]]:
        return persona_choices(self.bot, current)

    @app_commands.command(name="sync", description="Re-register slash commands (bot owner).")
    @app_commands.default_permissions()  # servers show it to administrators only; DMs to all
    async def sync(self, interaction: Interaction) -> None:
        # is_owner may ask Discord who owns the application: acknowledge first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        await require_owner(interaction)
        if await self.bot.sync_commands_if_changed(force=True):
            await interaction.followup.send("Slash commands synced.", ephemeral=True)
        else:
            await interaction.followup.send("Discord refused the sync; the bot's log says why."
                                            " The commands registered before stay.",
                                            ephemeral=True)

    @app_commands.command(name="whoami", description="Which agent answers you here.")
    async def whoami(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # before any DB work
        route = await route_of(interaction)
        kind = "your private agent" if route.private else "this channel's shared agent"
        await interaction.followup.send(f"Here you talk to {kind} (`{route.agent_id}`).",
                                        ephemeral=True)
