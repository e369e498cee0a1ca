"""Getting the agent's words onto Discord: typing while it thinks, split replies, safe mentions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord

from bot.agent import TurnResult
from bot.discordbot.rendering import split_message

log = logging.getLogger(__name__)

TYPING_EVERY = 8.0  # Discord shows "typing…" for about 10 seconds per trigger


@contextlib.asynccontextmanager
async def keep_typing(channel: discord.abc.Messageable) -> AsyncIterator[None]:
    """Show the typing indicator until the block ends; a failing trigger never ends the turn."""

    async def loop() -> None:
        while True:
            try:
                await channel.typing()
            except discord.HTTPException as error:
                log.debug("typing indicator failed: %s", error)
            await asyncio.sleep(TYPING_EVERY)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def mentions_for(user_ids: list[int]) -> discord.AllowedMentions:
    """Only the people the agent is answering may be pinged; never everyone, here or roles."""
    return discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(i) for i in user_ids],
        replied_user=True,
    )


def turn_texts(result: TurnResult) -> list[str]:
    return [text for text in (*result.replies, *result.notices) if text.strip()]


async def deliver(
    channel: discord.abc.Messageable,
    texts: list[str],
    *,
    reply_to: discord.Message | discord.PartialMessage | None,
    ping: list[int],
) -> list[discord.Message]:
    """Send texts (split at Discord's limit), the first as a reply. Failures are logged once
    and never raised: the turn is already committed."""
    sent: list[discord.Message] = []
    mentions = mentions_for(ping)
    for text in texts:
        for chunk in split_message(text):
            kwargs: dict[str, Any] = {"allowed_mentions": mentions}
            if reply_to is not None and not sent:
                kwargs["reference"] = reply_to.to_reference(fail_if_not_exists=False)
            try:
                sent.append(await channel.send(chunk, **kwargs))
            except discord.Forbidden:
                log.warning("missing permission to send in channel %s", getattr(channel, "id", "?"))
                return sent
            except discord.HTTPException as error:
                log.warning("could not send a reply chunk: %s", error)
    return sent
