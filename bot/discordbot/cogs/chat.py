"""Conversation: Discord messages in, the agent's replies out."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.agent import Outgoing
from bot.discordbot.delivery import ChannelTyping, deliver
from bot.discordbot.rendering import message_text
from bot.discordbot.routing import Route, addressed_to_bot, route_for

if TYPE_CHECKING:
    from bot.discordbot.bot import Mnemocord

log = logging.getLogger(__name__)

CONVERSATION_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class ChatCog(commands.Cog):
    def __init__(self, bot: Mnemocord) -> None:
        self.bot = bot
        self._resumed = False
        # Replies whose send failed on a Discord error (429 after retries, 5xx), per channel:
        # they go out before the channel's next reply (and, after a restart, at startup).
        self._failed: dict[int, list[Outgoing]] = {}
        self.caught_up = asyncio.Event()  # set once the replies left from the last run went out
        self.typing = ChannelTyping()
        # The messages whose handlers wait for their turn, by the agent's address of them: the
        # courier replies to them (with the author pinged) whichever handler runs the turn.
        self._asking: dict[str, discord.Message] = {}
        self._linked: set[str] = set()  # of those, the ones that got their reply link

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return  # bots (ourselves included) and webhooks never get answers
        if message.type not in CONVERSATION_TYPES:
            return
        route = await route_for(self.bot.engine, message.channel, message.author,
                                self.bot.bot_name)
        listen = route.config.listen
        if message.guild is not None and listen != "all" and not addressed_to_bot(message, me):
            if listen == "observe" and not route.private:
                task = asyncio.current_task()
                if task is not None:  # close() lets the write finish
                    self.bot.track(task, "storing an observed message")
                await self.observe(message, route)
            return
        text = await message_text(message, me.id)
        if not text:
            return  # e.g. only a mention, or content hidden without the Message Content intent
        task = asyncio.current_task()
        if task is not None:
            self.bot.track(task)
        await self.answer(message, route, text)

    async def observe(self, message: discord.Message, route: Route) -> None:
        """Observe mode: the message joins the agent's memory; no turn, no LLM call."""
        me = self.bot.user
        text = await message_text(message, me.id) if me else ""
        if text:
            author = message.author
            await self.bot.engine.observe(
                route.agent_id, text, sender_name=author.display_name, sender_id=str(author.id),
                external_id=f"{message.channel.id}:{message.id}", spec=route.spec)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Someone edited a message: what the agent stored of it (recall, context) follows."""
        message, me = payload.message, self.bot.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return
        external_id = f"{payload.channel_id}:{payload.message_id}"
        if not await self.bot.engine.recall.by_external_id(external_id):
            return  # most edits (link previews, pins) are of messages no agent stored
        text = await message_text(message, me.id)
        if not text:
            return  # content hidden (no Message Content intent) is not an edit to empty
        await self.bot.engine.edit_external(external_id, text)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """Someone deleted a message: the agent forgets it (recall and context)."""
        await self.bot.engine.delete_external(f"{payload.channel_id}:{payload.message_id}")

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent
                                         ) -> None:
        for message_id in payload.message_ids:
            await self.bot.engine.delete_external(f"{payload.channel_id}:{message_id}")

    async def answer(self, message: discord.Message, route: Route, text: str) -> None:
        engine = self.bot.engine
        author = message.author
        address = f"{message.channel.id}:{message.id}"
        accepted = await engine.accept(
            route.agent_id, text, sender_name=author.display_name, sender_id=str(author.id),
            external_id=address, spec=route.spec,
        )
        self._asking[address] = message
        try:
            async with self.typing.hold(message.channel, accepted.id):
                result = await engine.answer(accepted, courier=self.courier)
                if result.outbox:  # messages this turn did not answer are next
                    self.typing.replied(message.channel.id, answered=result.answered_ids)
        finally:
            self._asking.pop(address, None)
            self._linked.discard(address)
        if not result.answered_ids or result.answered_ids[-1] != accepted.id:
            # Answered together with later messages (the last one's handler replies), or
            # erased by /forget-me before its turn came (nothing to reply).
            return
        left = [item for item in result.outbox if item.id not in result.handed_over]
        if left:  # a turn run without our courier (a slash command's), or a courier failure
            for item in self._failed.pop(message.channel.id, []):
                await self.deliver_outbox([item])
            await self.deliver_outbox(left, channel=message.channel, reply_to=message,
                                      ping=[author.id])

    async def courier(self, items: list[Outgoing], more: bool) -> None:
        """Deliver a step's committed replies as soon as it ends (bot.agent.Courier): the
        turn's first reply is a reply to the message it answers, the rest plain messages."""
        for item in items:
            asking = self._asking.get(item.target)
            if asking is None:  # e.g. finishing a turn after a restart: located, a reply
                await self.deliver_outbox([item])
                continue
            channel = asking.channel
            for failed in self._failed.pop(channel.id, []):
                await self.deliver_outbox([failed])  # located again: a reply to its own message
            first = item.target not in self._linked
            self._linked.add(item.target)
            await self.deliver_outbox([item], channel=channel,
                                      reply_to=asking if first else None, ping=[asking.author.id])
            if more:
                self.typing.replied(channel.id, more=True)

    async def deliver_outbox(
        self,
        items: list[Outgoing],
        *,
        channel: discord.abc.Messageable | None = None,
        reply_to: discord.Message | discord.PartialMessage | None = None,
        ping: list[int] | None = None,
    ) -> None:
        """Deliver committed replies and mark them delivered; the first replies to the
        message it answers."""
        for index, item in enumerate(items):
            target_channel, target_message = channel, reply_to
            if target_channel is None:
                target_channel, target_message = await self._locate(item.target)
                if target_channel is None:
                    await self.bot.engine.mark_delivered([item.id])  # the channel is gone
                    continue
            done = await deliver(target_channel, item.text,
                                 reply_to=target_message if index == 0 else None,
                                 ping=ping or [], nonce=item.id)
            if done:
                await self.bot.engine.mark_delivered([item.id])
            else:
                channel_id = getattr(target_channel, "id", 0)
                self._failed.setdefault(channel_id, []).append(item)

    async def _locate(self, target: str) -> tuple[Any, Any]:
        channel_id, _, message_id = target.partition(":")
        try:
            channel = self.bot.get_channel(int(channel_id)) or await self.bot.fetch_channel(
                int(channel_id))
        except (discord.HTTPException, ValueError) as error:
            log.warning("cannot find channel %s to deliver a reply: %s", channel_id, error)
            return None, None
        if not isinstance(channel, discord.abc.Messageable):
            return None, None
        partial = getattr(channel, "get_partial_message", None)
        return channel, partial(int(message_id)) if partial and message_id.isdigit() else None

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """After a crash or restart: deliver committed replies, then answer what was accepted
        but never answered."""
        if self._resumed:
            return
        self._resumed = True
        engine = self.bot.engine
        for _, item in await engine.undelivered():
            await self.deliver_outbox([item])
        self.caught_up.set()
        for agent_id in await engine.pending_agent_ids():
            self.bot.track(asyncio.create_task(self.resume(agent_id)),
                           f"answering what {agent_id} was sent before the restart")

    async def resume(self, agent_id: str) -> None:
        result = await self.bot.engine.resume(agent_id, courier=self.courier)
        await self.deliver_outbox([item for item in result.outbox
                                   if item.id not in result.handed_over])
