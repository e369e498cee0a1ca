"""Running the scripted conversation against an engine and timing each turn."""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import SPEC, Dist, HTTPEmbedder, TimedEmbedder, settings_for
from bench.llm_proc import LLMProcess
from bench.words import kinds, reply_seq, user_text
from bot.engine import Engine


@dataclass
class Turn:
    kind: str
    seq: int
    wall: float  # engine.send, start to finish
    llm: float  # waiting on the LLM server (TurnResult.llm_seconds)
    embed: float  # waiting on the embeddings endpoint
    calls: int
    replies: list[str] = field(default_factory=list)
    cpu: float = 0.0  # CPU time of the bot process during the turn (every thread)
    server: float | None = None  # the LLM server's own time for the turn's requests, if known

    @property
    def strict(self) -> float | None:
        """The turn minus only the server's own time: the bot's HTTP client (openai SDK,
        aiohttp) and the loopback exchange count as the bot's."""
        return None if self.server is None else self.wall - self.server

    @property
    def overhead(self) -> float:
        """What the bot adds: the turn minus the time spent waiting on the LLM."""
        return self.wall - self.llm

    @property
    def own(self) -> float:
        """The turn minus every provider wait (LLM and embeddings)."""
        return self.wall - self.llm - self.embed


@dataclass
class Bench:
    engine: Engine
    embedder: TimedEmbedder
    data_dir: Path


@asynccontextmanager
async def engine_on(base_url: str, data_dir: Path | None = None,
                    **overrides: Any) -> AsyncIterator[Bench]:
    """An engine on a fresh (or given) data directory, its embedder timed."""
    with tempfile.TemporaryDirectory(prefix="mnemocord-bench-") as scratch:
        folder = data_dir or Path(scratch)
        settings = settings_for(base_url, folder, **overrides)
        embedder = TimedEmbedder(HTTPEmbedder(base_url, settings.embedding_model))
        try:
            async with Engine(settings, embedder=embedder) as engine:
                # The engine opens Chroma in the background at start; measurements start once
                # that (1-2 s of importing, competing for the GIL) is done.
                await engine.vectors.warm()
                yield Bench(engine, embedder, folder)
        finally:
            await embedder.aclose()


async def _server_seconds(server: LLMProcess | None) -> float | None:
    if server is None:
        return None
    stats = await server.stats()
    return float(stats["handled_seconds"] + stats["busy_seconds"])


async def turn(bench: Bench, agent_id: str, kind: str, seq: int, rng: random.Random,
               server: LLMProcess | None = None) -> Turn:
    """One turn; with `server` (a benchmark sending one request at a time) the LLM server's
    own time for it is recorded too."""
    text = user_text(kind, seq, rng)
    server_before = await _server_seconds(server)
    embed_before = bench.embedder.seconds
    cpu = time.process_time()
    started = time.perf_counter()
    result = await bench.engine.send(agent_id, text, sender_name="Alice", sender_id="1001",
                                     spec=SPEC)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    server_after = await _server_seconds(server)
    served = None if server_after is None or server_before is None else (
        server_after - server_before)
    return Turn(kind, seq, wall, result.llm_seconds, bench.embedder.seconds - embed_before,
                result.llm_calls, result.replies, cpu, served)


async def conversation(bench: Bench, agent_id: str, turns: int, *, seed: int = 7,
                       only: str | None = None, first_seq: int = 0,
                       server: LLMProcess | None = None) -> list[Turn]:
    """`turns` turns of the scripted mix (or only one kind), one after another."""
    rng = random.Random(seed)
    plan = [only] * turns if only else kinds(turns, seed)
    return [await turn(bench, agent_id, kind, first_seq + i, rng, server)
            for i, kind in enumerate(plan)]


def in_order(turns: list[Turn]) -> bool:
    """Every reply answers the turn it was sent for, in the order sent."""
    answered = [reply_seq(t.replies[-1]) if t.replies else None for t in turns]
    return answered == [t.seq for t in turns]


def overhead_line(label: str, turns: list[Turn]) -> str:
    return f"{label}: overhead {Dist.of([t.overhead for t in turns])}"
