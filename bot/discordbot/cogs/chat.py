"""Conversation: Discord messages in, the agent's replies out."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.discordbot.delivery import deliver, keep_typing, turn_texts
from bot.discordbot.rendering import describe_attachments, resolve_mentions
from bot.discordbot.routing import Route, addressed_to_bot, route_for

if TYPE_CHECKING:
    from bot.discordbot.bot import Mnemocord

log = logging.getLogger(__name__)

CONVERSATION_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class ChatCog(commands.Cog):
    def __init__(self, bot: Mnemocord) -> None:
        self.bot = bot
        self._resumed = False

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return  # bots (ourselves included) and webhooks never get answers
        if message.type not in CONVERSATION_TYPES:
            return
        route = await route_for(self.bot.engine, message.channel, message.author,
                                self.bot.bot_name)
        if message.guild is not None and route.config.listen != "all" and not addressed_to_bot(
            message, me
        ):
            return
        text = "\n".join(part for part in (resolve_mentions(message, me.id),
                                           describe_attachments(message)) if part)
        if not text:
            return  # e.g. only a mention, or content hidden without the Message Content intent
        task = asyncio.current_task()
        if task is not None:
            self.bot.track(task)
        await self.answer(message, route, text)

    async def answer(self, message: discord.Message, route: Route, text: str) -> None:
        engine = self.bot.engine
        author = message.author
        accepted = await engine.accept(
            route.agent_id, text, sender_name=author.display_name, sender_id=str(author.id),
            external_id=f"{message.channel.id}:{message.id}", spec=route.spec,
        )
        async with keep_typing(message.channel):
            result = await engine.answer(accepted)
        if result.answered_ids and result.answered_ids[-1] != accepted.id:
            return  # answered together with later messages: the last one's handler replies
        await deliver(message.channel, turn_texts(result), reply_to=message, ping=[author.id])

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self._resumed:
            return
        self._resumed = True
        for agent_id in await self.bot.engine.pending_agent_ids():
            self.bot.track(asyncio.create_task(self.resume(agent_id)))

    async def resume(self, agent_id: str) -> None:
        """Answer messages accepted before a crash or shutdown, where they were asked."""
        engine = self.bot.engine
        pending = await engine.recall.pending(agent_id)
        origin = next((m.external_id for m in reversed(pending) if m.external_id), None)
        result = await engine.resume(agent_id)
        if origin is None or not turn_texts(result):
            return
        channel_id, _, message_id = origin.partition(":")
        try:
            channel = self.bot.get_channel(int(channel_id)) or await self.bot.fetch_channel(
                int(channel_id))
        except discord.HTTPException as error:
            log.warning("cannot deliver resumed answer for %s: %s", agent_id, error)
            return
        if not isinstance(channel, discord.abc.Messageable):
            return
        reply_to = channel.get_partial_message(int(message_id)) if hasattr(
            channel, "get_partial_message") else None
        senders = [int(m.sender_id) for m in pending if m.sender_id and m.sender_id.isdigit()]
        await deliver(channel, turn_texts(result), reply_to=reply_to, ping=senders[-1:])
