"""Running the real bot as a separate process against the in-test emulator and scripted LLM, and
killing it (SIGKILL) at chosen moments: a chat request, an embedding request, a REST request, a
stored reply, or a random delay after a user message.

The emulator and the LLM live in the test's event loop; each bot process talks to them over
127.0.0.1. Bot processes are forked by a fork server that imported everything once (see
tests/bot_process.py, which also points discord.py at the emulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import REPO
from tests.discord_emulator import DiscordEmulator, Message
from tests.discord_emulator.faults import FaultInjector
from tests.llm_server import ScriptedLLM

T = TypeVar("T")
START_TIMEOUT = 90.0  # a cold start imports discord.py, openai and chromadb (seconds on 2 cores)


class Tripwire(FaultInjector):
    """Sees every REST request before the emulator handles it."""

    def __init__(self, on_request: Callable[[str, str | None, str], None]) -> None:
        super().__init__()
        self.on_request = on_request

    def take(self, method: str, template: str | None, path: str) -> Any:
        self.on_request(method, template, path)
        return super().take(method, template, path)


class WiredEmulator(DiscordEmulator):
    """The emulator with two taps: every REST request, and every message once stored."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.request_taps: list[Callable[[str, str | None, str], None]] = []
        self.stored_taps: list[Callable[[Message], None]] = []
        self.faults = Tripwire(self._on_request)

    def _on_request(self, method: str, template: str | None, path: str) -> None:
        for tap in self.request_taps:
            tap(method, template, path)

    def store_message(self, msg: Message) -> Message:
        stored = super().store_message(msg)
        for tap in self.stored_taps:
            tap(stored)
        return stored


@dataclass
class Trigger:
    """Kill the bot at the n-th event of a kind within one life; "timer" kills a random delay
    after the n-th user message (a point inside whatever the bot is doing then)."""

    kind: str  # llm | embed | post | stored | typing | startup | timer
    n: int
    delay: float = 0.0


KINDS = ("llm", "embed", "post", "stored", "typing", "startup", "timer")


class Triggers:
    """Kill points: every kind in turn (shuffled each round), at a random n and delay."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._queue: list[str] = []

    def next(self, *, running: bool = False) -> Trigger:
        """The next kill point; for a bot already running, not one during its startup."""
        if not self._queue:
            self._queue = self.rng.sample(KINDS, len(KINDS))
        kinds = [k for k in self._queue if not (running and k == "startup")]
        self._queue.remove(kinds[0])
        return random_trigger(self.rng, kinds[0])


def random_trigger(rng: random.Random, kind: str) -> Trigger:
    top = {"llm": 6, "embed": 2, "post": 4, "stored": 4, "typing": 4, "startup": 3, "timer": 4}
    return Trigger(kind, rng.randint(1, top[kind]), rng.uniform(0.0, 0.25))


class ForkServer:
    """tests/bot_process.py --fork-server: forks bot processes on request, reports their exit."""

    def __init__(self) -> None:
        self._server: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._forked: asyncio.Queue[int] = asyncio.Queue()
        self.exits: dict[int, asyncio.Future[int]] = {}

    async def start(self) -> None:
        self._server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bot_process", "--fork-server",
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._server is not None and self._server.stdout is not None
        async for line in self._server.stdout:
            message = json.loads(line)
            if "pid" in message:
                self.exits.setdefault(message["pid"], asyncio.Future())
                self._forked.put_nowait(message["pid"])
            else:
                future = self.exits.setdefault(message["exit"], asyncio.Future())
                if not future.done():
                    future.set_result(message["code"])

    async def fork(self, cwd: Path, env: dict[str, str], log: Path) -> int:
        assert self._server is not None and self._server.stdin is not None
        order = {"cwd": str(cwd), "env": env, "log": str(log)}
        self._server.stdin.write((json.dumps(order) + "\n").encode())
        await self._server.stdin.drain()
        return await asyncio.wait_for(self._forked.get(), START_TIMEOUT)

    async def aclose(self) -> None:
        if self._server is not None and self._server.stdin is not None:
            self._server.stdin.close()
            await self._server.wait()
        if self._reader is not None:
            await self._reader


@dataclass
class Life:
    number: int
    pid: int
    exited: asyncio.Future[int]
    log: Path
    trigger: Trigger | None
    identifies_before: int
    counts: Counter[str] = field(default_factory=Counter)
    killed_by: str | None = None


async def first(done: Awaitable[T], died: asyncio.Future[int]) -> T | None:
    """The result of `done`, or None if the process died first."""
    waiter = asyncio.ensure_future(done)
    finished, _ = await asyncio.wait({waiter, died}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in finished:
        return waiter.result()
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await waiter
    return None


class BotProcesses:
    """One bot process after another on the same data directory."""

    def __init__(self, emu: WiredEmulator, llm: ScriptedLLM, sandbox: Path,
                 env: dict[str, str] | None = None) -> None:
        self.emu = emu
        self.llm = llm
        self.sandbox = sandbox
        self.extra_env = env or {}
        self.lives: list[Life] = []
        self.forks = ForkServer()
        self.kills: Counter[str] = Counter()
        self._timers: list[asyncio.TimerHandle] = []
        emu.request_taps.append(self._on_request)
        emu.stored_taps.append(self._on_stored)
        llm.on_embedding = lambda body: self.tick("embed")

    @property
    def data_dir(self) -> Path:
        return self.sandbox / "data"

    @property
    def life(self) -> Life | None:
        return self.lives[-1] if self.lives else None

    @property
    def running(self) -> bool:
        life = self.life
        return life is not None and life.killed_by is None and not life.exited.done()

    def environment(self) -> dict[str, str]:
        home = self.sandbox / "home"
        home.mkdir(parents=True, exist_ok=True)
        (self.sandbox / "tmp").mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(self.sandbox / "tmp"),
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "MNEMOCORD_TEST_DISCORD_API": self.emu.api_base,
            "MNEMOCORD_TEST_DISCORD_GATEWAY": self.emu.gateway.url,
            "DISCORD_TOKEN": self.emu.token,
            "LLM_BASE_URL": self.llm.base_url,
            "LLM_API_KEY": "sk-test-secret-key-123",
            "LLM_MODEL": "gpt-4o-mini",
            "LLM_RETRY_BACKOFF": "0",
            "EMBEDDING_PROVIDER": "openai",
            "EMBEDDING_MODEL": "scripted-embedding",
            "DATA_DIR": str(self.data_dir),
            "LOG_LEVEL": "INFO",
        }
        env.update(self.extra_env)
        return env

    async def start(self, trigger: Trigger | None = None) -> bool:
        """Start a new life; True once it identified on the gateway, False if it died first."""
        logs = self.sandbox / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"life-{len(self.lives):03d}.log"
        identified = len(self.emu.gateway.identifies)
        if not self.lives:
            await self.forks.start()
        pid = await self.forks.fork(self.sandbox, self.environment(), log)
        life = Life(len(self.lives), pid, self.forks.exits[pid], log, trigger, identified)
        self.lives.append(life)
        ready = await first(self.emu.wait_for(
            lambda: len(self.emu.gateway.identifies) > identified, START_TIMEOUT,
            "the bot process to identify"), life.exited)
        return ready is not None and self.running

    # --- kill switches ----------------------------------------------------------------------

    def tick(self, kind: str) -> None:
        """Count an event of this life; kill when its trigger says so."""
        life = self.life
        if life is None or not self.running:
            return
        life.counts[kind] += 1
        trigger = life.trigger
        if trigger is None or trigger.kind != kind or life.counts[kind] != trigger.n:
            return
        if kind == "timer":
            handle = asyncio.get_running_loop().call_later(
                trigger.delay, self._kill_life, life, "timer")
            self._timers.append(handle)
        else:
            self._kill_life(life, kind)

    def _kill_life(self, life: Life, reason: str) -> None:
        if life.killed_by is not None or life.exited.done():
            return
        life.killed_by = reason
        self.kills[reason] += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(life.pid, signal.SIGKILL)

    def _on_request(self, method: str, template: str | None, path: str) -> None:
        life = self.life
        if life is not None and len(self.emu.gateway.identifies) <= life.identifies_before:
            self.tick("startup")  # login, command sync... before this life's IDENTIFY
        if method == "POST" and template == "/channels/{channel_id}/messages":
            self.tick("post")
        elif method == "POST" and template == "/channels/{channel_id}/typing":
            self.tick("typing")

    def _on_stored(self, message: Message) -> None:
        if message.author.id == self.emu.bot_user.id and message.interaction is None:
            self.tick("stored")
        elif message.author.id != self.emu.bot_user.id:
            self.tick("timer")

    def arm(self, trigger: Trigger) -> None:
        """Replace the current life's kill point, counting its events from now."""
        life = self.life
        assert life is not None
        life.trigger = trigger
        life.counts.clear()

    def disarm(self) -> None:
        """No more kills: the current life's trigger and any pending timer are dropped."""
        for handle in self._timers:
            handle.cancel()
        if self.life is not None:
            self.life.trigger = None

    async def kill_wait(self) -> None:
        """Wait until the current life has exited (after a kill)."""
        life = self.life
        if life is not None:
            await life.exited

    async def stop(self) -> int:
        """SIGTERM: the bot finishes replies in progress and exits; returns its exit code."""
        life = self.life
        assert life is not None
        if not life.exited.done():
            os.kill(life.pid, signal.SIGTERM)
        return await life.exited

    async def aclose(self) -> None:
        for handle in self._timers:
            handle.cancel()
        for life in self.lives:
            if not life.exited.done():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(life.pid, signal.SIGKILL)
                await life.exited
        await self.forks.aclose()

    def logs(self) -> str:
        return "\n".join(life.log.read_text(errors="replace") for life in self.lives)
