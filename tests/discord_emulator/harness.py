"""Run a real discord.py client against the emulator for the duration of a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import discord

    from .emulator import DiscordEmulator

ClientT = TypeVar("ClientT", bound="discord.Client")


async def _no_identify_wait(shard_id: int | None, *, initial: bool = False) -> None:
    # discord.py sleeps 5 s before every non-initial IDENTIFY to respect Discord's
    # identify rate limit; pointless against the emulator.
    return None


async def wait_client(
    client: discord.Client,
    predicate: Callable[[], Any],
    timeout: float = 10.0,  # noqa: ASYNC109
) -> None:
    """Wait until `predicate()` holds in the client's *cache* (guilds, channels, members).
    Re-checked after each gateway event: discord.py fires 'socket_event_type' just before
    parsing, and the waiter only resumes after the (synchronous) parser has run. Not for
    side effects of event handlers, which run later as tasks: use an asyncio.Event there."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await client.wait_for("socket_event_type")


@contextlib.asynccontextmanager
async def run_client(
    emu: DiscordEmulator,
    client: ClientT,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
    guild_ready_timeout: float | None = 0.05,
) -> AsyncIterator[ClientT]:
    """Patch discord.py to the emulator, login, connect in a task, and yield once the
    client is READY and every guild the bot is in is available. Closes it on exit.

    guild_ready_timeout (if not None) replaces discord.py's 2 s wait after the last
    GUILD_CREATE before on_ready."""
    with emu.patched():
        client.before_identify_hook = _no_identify_wait  # type: ignore[method-assign]
        if guild_ready_timeout is not None:
            client._connection.guild_ready_timeout = guild_ready_timeout
        await client.login(emu.token)
        task = asyncio.create_task(client.connect(reconnect=True), name="discord-client")
        try:
            ready = asyncio.ensure_future(client.wait_until_ready())
            finished, _ = await asyncio.wait(
                {ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in finished:
                ready.cancel()
                task.result()  # re-raise LoginFailure, PrivilegedIntentsRequired, ...
                raise RuntimeError("client.connect() returned before READY")
            if ready not in finished:
                ready.cancel()
                raise TimeoutError(f"client not READY within {timeout}s")
            bot_guilds = [g.id for g in emu.guilds.values() if emu.bot_user.id in g.members]

            def guilds_available() -> bool:
                return all(
                    (g := client.get_guild(gid)) is not None and not g.unavailable
                    for gid in bot_guilds
                )

            await wait_client(client, guilds_available, timeout)
            yield client
        finally:
            await client.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout)
