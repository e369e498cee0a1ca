"""DiscordEmulator: server lifecycle, discord.py patching, fault injection and waiting."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import yarl
from aiohttp import web

from .actions import UserActions
from .commands import CommandRoutes
from .faults import API_PREFIX, Fault, FaultInjector, make_middleware
from .gateway import ResumeRecord, Session
from .harness import run_client
from .models import Channel, Message, Typing
from .rest import CoreRoutes
from .rest_interactions import InteractionRoutes

if TYPE_CHECKING:
    import discord

T = TypeVar("T")
ClientT = TypeVar("ClientT", bound="discord.Client")


class DiscordEmulator(UserActions):
    """A loopback Discord (REST + gateway) for driving the real discord.py client in tests.

    Setup methods (create_user/create_guild/..., state.py) are synchronous; user actions
    (actions.py) are async and return the stored records; waits are event-driven."""

    def __init__(
        self,
        bot_name: str = "Mnemocord",
        *,
        owner_name: str = "owner",
        interaction_deadline: float = 3.0,
    ) -> None:
        super().__init__(bot_name, owner_name=owner_name)
        self.interaction_deadline = interaction_deadline
        self.faults = FaultInjector()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._cursors: dict[int | None, int] = {}
        self._resume_mark = 0
        self._identify_mark = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, port: int = 0) -> DiscordEmulator:
        app = web.Application(
            middlewares=[make_middleware(self, self.faults)], client_max_size=64 * 1024 * 1024
        )
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway/", self.gateway.handle)
        CoreRoutes(self).register(app, API_PREFIX)
        CommandRoutes(self).register(app, API_PREFIX)
        InteractionRoutes(self).register(app, API_PREFIX)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        for inter in self.interactions.values():
            inter.cancel_timer()
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @contextlib.contextmanager
    def patched(self) -> Iterator[DiscordEmulator]:
        """Point discord.py's REST base and default gateway at this emulator."""
        import discord.gateway
        import discord.http

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway.url)
        try:
            yield self
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    def run_client(
        self,
        client: ClientT,
        *,
        timeout: float = 10.0,
        guild_ready_timeout: float | None = 0.05,
    ) -> contextlib.AbstractAsyncContextManager[ClientT]:
        """`async with emu.run_client(bot):` patch, login, connect, wait until READY with all
        guilds available; close the client on exit. See harness.run_client."""
        return run_client(self, client, timeout=timeout, guild_ready_timeout=guild_ready_timeout)

    # -- faults & gateway control -------------------------------------------------------

    def fail_next(
        self,
        method: str,
        route: str,
        status: int = 429,
        *,
        retry_after: float = 0.05,
        count: int = 1,
        is_global: bool = False,
        code: int = 0,
        message: str | None = None,
    ) -> Fault:
        """Make the next `count` requests to `route` fail. `route` is a discord.py template
        such as "/channels/{channel_id}/messages" or a concrete path under /api/v10."""
        return self.faults.add(
            Fault(method.upper(), route, status, count, retry_after, is_global, code, message)
        )

    async def drop_gateway(
        self, *, resume: bool = True, via: str = "close", code: int = 4000
    ) -> None:
        """Disconnect the bot; see Gateway.drop. Await wait_for_resume()/wait_for_identify()."""
        self._resume_mark = len(self.gateway.resumes)
        self._identify_mark = len(self.gateway.identifies)
        self.gateway.drop(resume=resume, via=via, code=code)

    async def wait_for_resume(self, timeout: float = 10.0) -> ResumeRecord:  # noqa: ASYNC109
        """The first RESUME completed after the last drop_gateway()."""
        mark = self._resume_mark

        def done() -> ResumeRecord | None:
            return self.gateway.resumes[mark] if len(self.gateway.resumes) > mark else None

        return await self.signal.wait_for(done, timeout, "a gateway RESUME")

    async def wait_for_identify(self, timeout: float = 10.0) -> Session:  # noqa: ASYNC109
        """The first IDENTIFY after the last drop_gateway() (or the very first one)."""
        mark = self._identify_mark

        def done() -> Session | None:
            ids = self.gateway.identifies
            return ids[mark] if len(ids) > mark else None

        return await self.signal.wait_for(done, timeout, "a gateway IDENTIFY")

    # -- waiting ------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 10.0,  # noqa: ASYNC109
        what: str = "condition",
    ) -> T:
        """Re-evaluate `predicate` on every emulator state change until truthy."""
        return await self.signal.wait_for(predicate, timeout, what)

    async def wait_for_bot_message(
        self,
        channel: Channel | int | None = None,
        predicate: Callable[[Message], bool] | None = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        after: Message | int | None = None,
    ) -> Message:
        """Next bot message in `channel` (any channel if None). Successive calls walk forward
        through messages (a per-channel cursor), so each reply is returned once; pass
        `after` to start from a specific message instead. Deferred "thinking" placeholders
        are skipped until they get real content."""
        cid = channel.id if isinstance(channel, Channel) else channel
        start = after.id if isinstance(after, Message) else after
        cursor = start if start is not None else self._cursors.get(cid, 0)

        def find() -> Message | None:
            return next(
                (
                    m
                    for m in self.bot_messages(cid)
                    if m.id > cursor and not m.loading and (predicate is None or predicate(m))
                ),
                None,
            )

        msg = await self.signal.wait_for(find, timeout, f"a bot message in {cid}")
        self._cursors[cid] = msg.id
        return msg

    async def wait_for_typing(self, channel: Channel | int, timeout: float = 10.0) -> Typing:  # noqa: ASYNC109
        cid = channel.id if isinstance(channel, Channel) else channel
        return await self.signal.wait_for(
            lambda: next((t for t in self.typings if t.channel_id == cid), None),
            timeout,
            f"typing in {cid}",
        )
