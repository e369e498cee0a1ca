"""Getting the agent's words onto Discord: typing while it thinks, split replies, safe mentions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord

from bot.discordbot.rendering import MENTION_ROOM, split_message

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


def is_temporary(error: BaseException) -> bool:
    """Worth sending again later: rate limited past discord.py's own retries (429), Discord's
    servers failing (5xx) or the connection dropping. Any other 4xx is Discord refusing this
    request, and it would refuse it the same way every time."""
    if isinstance(error, discord.HTTPException):
        return error.status == 429 or error.status >= 500
    return isinstance(error, discord.RateLimited | aiohttp.ClientError | OSError | TimeoutError)


async def deliver(
    channel: discord.abc.Messageable,
    text: str,
    *,
    reply_to: discord.Message | discord.PartialMessage | None,
    ping: list[int],
    nonce: str | None = None,
) -> bool:
    """Send text, split at Discord's limit, the first chunk as a reply. Returns False only for
    a temporary failure worth retrying later; errors are logged, never raised (the turn is
    already committed). With a nonce, Discord drops a repeat of a chunk it already has."""
    mentions = mentions_for(ping)
    # A reply keeps room for a mention of the person, for when it has to go out without the
    # reference (the mention then says whom it answers).
    reserve = MENTION_ROOM if reply_to is not None else 0
    for index, chunk in enumerate(split_message(text, reserve=reserve)):
        if not chunk.strip():
            continue  # Discord refuses a blank message (a run of spaces longer than a chunk)
        kwargs: dict[str, Any] = {"allowed_mentions": mentions}
        if reply_to is not None and index == 0:
            kwargs["reference"] = reply_to.to_reference(fail_if_not_exists=False)
        if nonce is not None:
            kwargs["nonce"] = f"{nonce[:20]}{index}"  # Discord allows 25 characters
        try:
            await channel.send(chunk, **kwargs)
        except (discord.Forbidden, discord.NotFound) as error:
            log.warning("cannot send in channel %s: %s", getattr(channel, "id", "?"), error)
            return True  # permanent: retrying would fail the same way
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as error:
            if is_temporary(error):
                log.warning("could not send a reply: %s", error)
                return False
            # Settled, not retried: a refused reply sent again before every later reply (and
            # at every start) would fail forever and hold the channel's replies up.
            log.warning("Discord refused a reply in channel %s, not retrying it: %s",
                        getattr(channel, "id", "?"), error)
            return True
    return True
