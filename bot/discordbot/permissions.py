"""Who may run which command (one place decides; documented in the README).

- In a DM, the user owns their agent and may run everything.
- In a guild, a member owns their private agent in a per-member channel.
- Commands that change or reveal a shared channel agent's memory need Manage Server (checked
  here, not only as a UI default) or a bot owner.
- Channel settings always need Manage Server or a bot owner.

Discord's client also hides /channel (Manage Server) and /sync (administrators) through
default_member_permissions, but a server admin can override that per command, so these checks
stay. Commands acknowledge the interaction before calling them: route_of reads the database
and is_owner may ask Discord for the application's owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discordbot.routing import Route, route_for

if TYPE_CHECKING:
    from bot.discordbot.bot import Mnemocord


class Refused(app_commands.CheckFailure):
    """A refusal with a message for the user (sent ephemerally)."""


async def is_owner(interaction: discord.Interaction[Mnemocord]) -> bool:
    client = interaction.client
    return interaction.user.id in client.settings.discord_owner_ids or await client.is_owner(
        interaction.user
    )


def can_manage_server(interaction: discord.Interaction[Mnemocord]) -> bool:
    permissions = interaction.permissions  # resolved by Discord for this channel
    return bool(permissions.manage_guild or permissions.administrator)


async def route_of(interaction: discord.Interaction[Mnemocord]) -> Route:
    client = interaction.client
    channel = interaction.channel
    if channel is None:
        raise Refused("I can't tell which conversation this is.")
    return await route_for(client.engine, channel, interaction.user, client.bot_name)


async def require_memory_access(interaction: discord.Interaction[Mnemocord]) -> Route:
    """The route whose agent the user may inspect or change, or a Refused explaining why."""
    route = await route_of(interaction)
    if route.private and route.owner_id == interaction.user.id:
        return route
    if can_manage_server(interaction) or await is_owner(interaction):
        return route
    raise Refused(
        "This channel's memory is shared by everyone here, so only members with the Manage"
        " Server permission can inspect or change it. Talk to me in a DM for your own private"
        " memory, or use /forget-me to erase what I store about you."
    )


async def require_admin(interaction: discord.Interaction[Mnemocord]) -> None:
    if interaction.guild is None:
        raise Refused("Channel settings only exist in servers.")
    if not (can_manage_server(interaction) or await is_owner(interaction)):
        raise Refused("Only members with the Manage Server permission can change this.")


async def require_owner(interaction: discord.Interaction[Mnemocord]) -> None:
    if not await is_owner(interaction):
        raise Refused("Only the bot's owner can do that.")
