"""Who talks to which agent, and when the bot answers.

- A DM goes to that user's private agent (`dm:USER`); nobody else can reach it.
- A guild channel goes to the channel's shared agent (`channel:CHANNEL`) or, if an admin chose
  per-member mode, to one private agent per member (`channel:CHANNEL:member:USER`).
- A public thread follows its parent channel's agent and settings unless an admin configured the
  thread itself. A private thread always has its own agent (`channel:THREAD`, shared by the
  thread's members unless the thread itself is set to per-member): members of the parent who
  cannot see the thread must not get its content back from the parent's agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import discord

from bot.engine import AgentSpec, Engine

Mode = Literal["shared", "per-member"]
Listen = Literal["mentions", "all", "observe"]


@dataclass
class ChannelConfig:
    mode: Mode = "shared"
    listen: Listen = "mentions"
    persona: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ChannelConfig:
        data = data or {}
        return cls(
            mode="per-member" if data.get("mode") == "per-member" else "shared",
            listen=data["listen"] if data.get("listen") in ("all", "observe") else "mentions",
            persona=data.get("persona"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "listen": self.listen, "persona": self.persona}


@dataclass
class Route:
    agent_id: str
    owner_id: int | None  # the user who owns a private agent; None for a shared channel agent
    config: ChannelConfig
    spec: AgentSpec

    @property
    def private(self) -> bool:
        return self.owner_id is not None


def _setting_key(channel_id: int) -> str:
    return f"discord:channel:{channel_id}"


async def channel_config(engine: Engine, channel: Any) -> tuple[int, ChannelConfig]:
    """The configured channel (a thread's own settings, else its parent's) and its config."""
    if isinstance(channel, discord.Thread):
        own = await engine.get_setting(_setting_key(channel.id))
        if own is not None:
            return channel.id, ChannelConfig.from_json(own)
        parent_id = channel.parent_id
        parent = ChannelConfig.from_json(await engine.get_setting(_setting_key(parent_id)))
        if channel.is_private():
            # Its own agent whatever the parent's mode (a parent's per-member agent is reached
            # from the parent too); how it listens and its persona still follow the parent.
            return channel.id, ChannelConfig("shared", parent.listen, parent.persona)
        return parent_id, parent
    return channel.id, ChannelConfig.from_json(await engine.get_setting(_setting_key(channel.id)))


async def save_channel_config(engine: Engine, channel_id: int, config: ChannelConfig) -> None:
    await engine.set_setting(_setting_key(channel_id), config.to_json())


async def route_for(engine: Engine, channel: Any, user: discord.abc.User, bot_name: str) -> Route:
    if isinstance(channel, discord.DMChannel) or getattr(channel, "guild", None) is None:
        spec = AgentSpec(name=bot_name, human="basic")
        return Route(f"dm:{user.id}", user.id, ChannelConfig(), spec)
    channel_id, config = await channel_config(engine, channel)
    if config.mode == "per-member":
        spec = AgentSpec(name=bot_name, persona=config.persona, human="basic")
        return Route(f"channel:{channel_id}:member:{user.id}", user.id, config, spec)
    spec = AgentSpec(name=bot_name, persona=config.persona, human="channel",
                     options={"people": True})  # a block per person (bot/memory/people.py)
    return Route(f"channel:{channel_id}", None, config, spec)


def addressed_to_bot(message: discord.Message, bot_user: discord.ClientUser) -> bool:
    """Mentioned by name (not via @everyone/@here/roles) or replied to."""
    if any(user.id == bot_user.id for user in message.mentions):
        return True
    reference = message.reference
    resolved = reference.resolved if reference else None
    return isinstance(resolved, discord.Message) and resolved.author.id == bot_user.id
