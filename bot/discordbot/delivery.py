"""Getting the agent's words onto Discord: typing while it thinks, split replies, safe mentions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import discord

from bot.discordbot.rendering import MENTION_ROOM, split_message

log = logging.getLogger(__name__)

TYPING_EVERY = 8.0  # Discord shows "typing…" for about 10 seconds per trigger
# Discord refuses a reply (a message_reference) without Read Message History: 403 with this
# JSON code (discord-api-docs, topics/opcodes-and-status-codes "JSON Error Codes").
CANNOT_REPLY_WITHOUT_HISTORY = 160002


# Typing loops that were told to stop but still have a request in flight (see keep_typing).
_winding_down: set[asyncio.Task[None]] = set()


class _TypingLoop:
    """Triggers "typing…" every TYPING_EVERY seconds until stopped, at once when poked.

    Stopped, never cancelled: a trigger that met a global 429 is sleeping inside discord.py
    with the client's global rate-limit lock taken, and a cancel there skips the release, so
    every later request of the bot would wait forever (Rapptz/discord.py discord/http.py,
    HTTPClient.request: _global_over.clear() ... sleep ... set())."""

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self.channel = channel
        self.holders: set[int] = set()  # the messages waiting for an answer here
        self._stop = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop:
            try:
                await self.channel.typing()
            except discord.HTTPException as error:
                log.debug("typing indicator failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TYPING_EVERY)
            self._wake.clear()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if not self._task.done():
            _winding_down.add(self._task)  # ends by itself once its last trigger returns
            self._task.add_done_callback(_wound_down)


@contextlib.asynccontextmanager
async def keep_typing(channel: discord.abc.Messageable) -> AsyncIterator[None]:
    """Show the typing indicator until the block ends; a failing trigger never ends the turn."""
    loop = _TypingLoop(channel)
    try:
        yield
    finally:
        loop.stop()


class ChannelTyping:
    """One typing loop per channel, however many messages wait for an answer there: the
    first waiter starts it, the last one to leave stops it. Discord hides a bot's "typing…"
    when its message arrives, so a reply sent while others still wait triggers it again."""

    def __init__(self) -> None:
        self._loops: dict[int, _TypingLoop] = {}

    @contextlib.asynccontextmanager
    async def hold(self, channel: discord.abc.Messageable, waiter: int) -> AsyncIterator[None]:
        """Typing while the message `waiter` (its engine id) waits for an answer."""
        key = getattr(channel, "id", 0)
        loop = self._loops.get(key)
        if loop is None:
            loop = self._loops[key] = _TypingLoop(channel)
        loop.holders.add(waiter)
        try:
            yield
        finally:
            loop.holders.discard(waiter)
            if not loop.holders:
                self._loops.pop(key, None)
                loop.stop()

    def replied(self, channel_id: int, *, more: bool = False,
                answered: Iterable[int] = ()) -> None:
        """A reply went out in the channel: show typing again if the bot is still busy there
        (the turn goes on, or messages it did not answer still wait)."""
        loop = self._loops.get(channel_id)
        if loop is not None and (more or loop.holders - set(answered)):
            loop.poke()


def _wound_down(task: asyncio.Task[None]) -> None:
    _winding_down.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("typing indicator failed: %s", task.exception())


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
            try:
                await channel.send(chunk, **kwargs)
            except discord.Forbidden as error:
                if error.code != CANNOT_REPLY_WITHOUT_HISTORY or "reference" not in kwargs:
                    raise
                await _send_unthreaded(channel, chunk, kwargs, ping)
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


async def _send_unthreaded(
    channel: discord.abc.Messageable, chunk: str, kwargs: dict[str, Any], ping: list[int]
) -> None:
    """The reply Discord refused, as a plain message that names the people it answers (the
    same allowed_mentions: only them). Split again if the mentions push it past the limit."""
    log.info("no Read Message History in channel %s: answering without a reply link",
             getattr(channel, "id", "?"))
    plain = {k: v for k, v in kwargs.items() if k != "reference"}
    prefix = " ".join(f"<@{user_id}>" for user_id in ping)
    for part, piece in enumerate(split_message(f"{prefix} {chunk}" if prefix else chunk)):
        if part:
            plain.pop("nonce", None)  # the nonce belongs to the first piece only
        await channel.send(piece, **plain)
