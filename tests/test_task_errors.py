"""Every background task's failure is logged when it happens, never left for asyncio to report
as "Task exception was never retrieved" (at garbage collection, saying nothing useful)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

from bot.config import Settings
from bot.discordbot import run
from bot.engine import AgentSpec, Engine
from bot.store import Store
from tests.discord_emulator import run_client
from tests.discord_world import World

GUARD = 30.0  # seconds; only reached when the failure was never logged (the defect)


class Records(logging.Handler):
    """Log records of `bot.*` at ERROR or above, with an event per wanted text."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.changed.set()

    async def wait_for(self, text: str) -> None:
        async def seen() -> None:
            while not any(text in self.format(r) for r in self.records):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(seen(), GUARD)


@contextlib.contextmanager
def watched() -> Iterator[tuple[Records, list[dict[str, Any]]]]:
    """Collect error logs and whatever reaches the loop's exception handler."""
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: problems.append(context))
    records = Records()
    records.setFormatter(logging.Formatter("%(message)s %(exc_text)s"))
    logger = logging.getLogger("bot")
    logger.addHandler(records)
    try:
        yield records, problems
        gc.collect()  # an unobserved failed task is reported when collected
    finally:
        logger.removeHandler(records)
        loop.set_exception_handler(previous)


def never_retrieved(problems: list[dict[str, Any]]) -> list[str]:
    return [str(p.get("message")) for p in problems if "never retrieved" in str(p.get("message"))]


async def test_a_failing_close_after_a_signal_is_logged(
    world: World, make_settings: Callable[..., Settings], monkeypatch: Any,
) -> None:
    ready = asyncio.Event()

    class CloseFails(run.Mnemocord):
        def __init__(self, *args: Any, **options: Any) -> None:
            super().__init__(*args, guild_ready_timeout=0.05, **options)

        async def on_ready(self) -> None:
            ready.set()

        async def close(self) -> None:
            await super().close()
            raise RuntimeError("closing broke")

    monkeypatch.setattr(run, "Mnemocord", CloseFails)
    settings = make_settings(discord_token=world.emu.token)
    with world.emu.patched(), watched() as (records, problems):
        served = asyncio.create_task(run.serve(settings, check=False))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({served, waiting}, return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), served.result()
        signal.raise_signal(signal.SIGTERM)  # the handler serve installed closes the bot
        await served
        await records.wait_for("closing broke")
    assert not never_retrieved(problems)


async def test_a_failing_resume_at_startup_is_logged(world: World) -> None:
    class ResumeFails(Engine):
        async def resume(self, agent_id: str, on_event: Any = None, **options: Any) -> Any:
            raise RuntimeError(f"resuming {agent_id} broke")

    async with ResumeFails(world.settings) as engine:
        await engine.accept(f"dm:{world.alice.id}", "left unanswered by a crash",
                            sender_name="Alice", spec=AgentSpec(human="basic"))
        with watched() as (records, problems):
            async with run_client(world.emu, run.Mnemocord(engine, world.settings)):
                await records.wait_for(f"resuming dm:{world.alice.id} broke")
    assert not never_retrieved(problems)


async def test_a_failing_first_commit_of_the_recall_indexer_is_logged(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(recall_embeddings="on")
    store = Store(settings.db_path)
    await store.open()
    # A real SQLite failure for the indexer's first statement (it reads message_vectors).
    await store.commit([("DROP TABLE message_vectors", ())])
    await store.close()
    with watched() as (records, problems):
        engine = await Engine(settings).open()
        try:
            await records.wait_for("no such table: message_vectors")
        finally:
            await engine.aclose()  # and closing does not raise it again
    assert not never_retrieved(problems)
