"""The measurements behind the performance choices in the code, each next to what it replaced:

- the LLM request: `chat.completions.create` against the low-level `post` the bot uses, and the
  openai SDK's default httpx transport against its aiohttp one (bot/llm.py);
- a Chroma write: how long it stops the event loop when run on a thread of the bot's process
  (the GIL is held through it) and when run in the Chroma process (bot/memory/vectors.py);
- a turn's commit: one hop to the database thread against aiosqlite's public API, one hop per
  statement (bot/store.py);
- counting an agent's passages, and fetching passages by id (bot/memory/archival.py).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import openai

from bench.common import Section
from bench.llm_proc import LLMProcess
from bot.memory.archival import INSERT_PASSAGE
from bot.memory.vectors import VectorIndex
from bot.messages import INSERT_MESSAGE
from bot.store import Store

HEADERS = {"Content-Type": "application/json"}


def _messages(count: int) -> list[dict[str, Any]]:
    event = {"type": "user_message", "message": "#plain 1 how was the trip to the lake? " * 8}
    return [{"role": "system", "content": "You are Sam. " * 400}] + [
        {"role": "user", "content": json.dumps(event)} for _ in range(count - 1)]


async def _cpu_per_call(call: Callable[[], Awaitable[Any]], times: int) -> float:
    """Process CPU per call in ms (client and its threads; the server is another process)."""
    for _ in range(max(5, times // 10)):
        await call()
    started = time.process_time()
    for _ in range(times):
        await call()
    return (time.process_time() - started) / times * 1000


async def _llm_client(section: Section, quick: bool) -> dict[str, float]:
    times = 50 if quick else 500
    figures: dict[str, float] = {}
    async with LLMProcess(0.0) as llm:
        default = openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-bench", max_retries=0)
        on_aiohttp = openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-bench",
                                        max_retries=0, http_client=openai.DefaultAioHttpClient())
        try:
            for count in (10, 200):
                messages = _messages(count)
                body = json.dumps({"model": "m", "messages": messages}).encode()

                async def create(client: openai.AsyncOpenAI = default,
                                 messages: list[dict[str, Any]] = messages) -> Any:
                    return await client.chat.completions.create(model="m", messages=messages)

                async def post(client: openai.AsyncOpenAI, body: bytes = body) -> Any:
                    return await client.post("/chat/completions", cast_to=bytes, content=body,
                                             options={"headers": HEADERS})

                figures[f"create_{count}"] = await _cpu_per_call(create, times)
                figures[f"post_httpx_{count}"] = await _cpu_per_call(
                    lambda: post(default), times)
                figures[f"post_aiohttp_{count}"] = await _cpu_per_call(
                    lambda: post(on_aiohttp), times)
                section.say(f"LLM request with {count} messages, client CPU per call:"
                            f" chat.completions.create {figures[f'create_{count}']:.2f} ms;"
                            f" post on httpx {figures[f'post_httpx_{count}']:.2f} ms;"
                            f" post on aiohttp (the bot) {figures[f'post_aiohttp_{count}']:.2f}"
                            " ms")
        finally:
            await default.close()
            await on_aiohttp.close()
    return figures


async def _loop_stall(write: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall time of one write, longest gap between event-loop iterations meanwhile), in ms."""
    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await write()
    wall = time.perf_counter() - started
    done = True
    await task
    return wall * 1000, max(gaps, default=0.0) * 1000


async def _chroma(section: Section, quick: bool, folder: Path) -> dict[str, float]:
    import chromadb  # only this comparison imports Chroma into the benchmark's process
    from chromadb.config import Settings

    writes = 10 if quick else 60
    rng = np.random.default_rng(1)

    def batch() -> tuple[list[str], list[list[float]]]:
        vector = rng.standard_normal(384).astype(np.float32)
        return [uuid.uuid4().hex], [(vector / np.linalg.norm(vector)).tolist()]

    client = chromadb.PersistentClient(path=str(folder / "threaded"),
                                       settings=Settings(anonymized_telemetry=False))
    threaded: list[tuple[float, float]] = []
    try:
        for index in range(writes):
            collection = client.get_or_create_collection(
                f"agent-{index % 10}", configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None)
            ids, vectors = batch()
            threaded.append(await _loop_stall(lambda c=collection, i=ids, v=vectors: (
                asyncio.to_thread(c.upsert, ids=i, embeddings=v, documents=["a passage"]))))
    finally:
        client.close()
    index = VectorIndex(path=folder / "worker")
    isolated: list[tuple[float, float]] = []
    try:
        await index.warm()
        for number in range(writes):
            ids, vectors = batch()
            isolated.append(await _loop_stall(lambda n=number, i=ids, v=vectors: index.add(
                f"agent-{n % 10}", i, v, ["a passage"])))
    finally:
        await index.aclose()
    figures = {
        "thread_write_ms": float(np.median([w for w, _ in threaded])),
        "thread_stall_ms": float(np.median([s for _, s in threaded])),
        "thread_stall_max_ms": max(s for _, s in threaded),
        "worker_write_ms": float(np.median([w for w, _ in isolated])),
        "worker_stall_ms": float(np.median([s for _, s in isolated])),
        "worker_stall_max_ms": max(s for _, s in isolated),
    }
    section.say(f"Chroma write of one passage ({writes} writes over 10 collections), median:"
                f" on a thread of the bot's process {figures['thread_write_ms']:.1f} ms, the"
                f" event loop stopped {figures['thread_stall_ms']:.1f} ms (max"
                f" {figures['thread_stall_max_ms']:.1f}); in the Chroma process"
                f" {figures['worker_write_ms']:.1f} ms, the loop stopped at most"
                f" {figures['worker_stall_ms']:.2f} ms (max {figures['worker_stall_max_ms']:.2f})")
    return figures


def _turn_rows(first_id: int) -> list[tuple[str, tuple[Any, ...]]]:
    """A plain turn's writes: three messages, the input marked answered, agent state, usage."""
    rows: list[tuple[str, tuple[Any, ...]]] = [
        (INSERT_MESSAGE, (first_id + n, "dm:1", "ag1", "user", "user_message", "{}", "hello there",
                          "Bo", "1", None, None, None, "2026-01-01T00:00:00+00:00", 1, 0, None,
                          None))
        for n in range(3)]
    rows += [("UPDATE messages SET pending=0 WHERE id=?", (first_id,)),
             ("INSERT INTO kv (key, value) VALUES ('state', '1') ON CONFLICT(key)"
              " DO UPDATE SET value=excluded.value", ()),
             ("INSERT INTO usage (agent_id, created_at, purpose, prompt_tokens) VALUES"
              " ('dm:1', '2026', 'chat', 100)", ())]
    return rows


async def _store(section: Section, quick: bool, folder: Path) -> dict[str, float]:
    times = 200 if quick else 2000
    store = Store(folder / "store.db")
    await store.open()
    next_id = 1
    try:
        async def one_hop() -> None:
            nonlocal next_id
            await store.commit(_turn_rows(next_id))
            next_id += 3

        async def hop_per_statement() -> None:  # aiosqlite's public API
            nonlocal next_id
            db = store.db
            await db.execute("BEGIN IMMEDIATE")
            for sql, params in _turn_rows(next_id):
                await db.execute(sql, params)
            await db.execute("COMMIT")
            next_id += 3

        figures = {"commit_one_hop_ms": await _cpu_per_call(one_hop, times),
                   "commit_per_statement_ms": await _cpu_per_call(hop_per_statement, times)}
    finally:
        await store.close()
    section.say(f"a plain turn's commit (6 statements), CPU per commit: one hop"
                f" {figures['commit_one_hop_ms']:.2f} ms; a hop per statement"
                f" {figures['commit_per_statement_ms']:.2f} ms")
    return figures


async def _archival_sql(section: Section, quick: bool, folder: Path) -> dict[str, float]:
    """The two queries bot/memory/archival.py avoids or shapes, on one agent's passages."""
    count = 10_000 if quick else 100_000
    store = Store(folder / "passages.db")
    await store.open()
    try:
        rows = [(INSERT_PASSAGE, (uuid.uuid4().hex, "dm:1", "a passage of some words " * 8,
                                  None, f"2026-01-01T00:00:00.{n:06d}+00:00"))
                for n in range(count)]
        for first in range(0, count, 5000):
            await store.commit(rows[first:first + 5000])
        ids = [row[1][0] for row in rows[::count // 10]][:10]
        marks = ",".join("?" * len(ids))

        async def timed(sql: str, params: tuple[Any, ...]) -> float:
            started = time.perf_counter()
            for _ in range(20):
                await store.fetchall(sql, params)
            return (time.perf_counter() - started) / 20 * 1000

        figures = {
            "passages": count,
            "count_ms": await timed("SELECT COUNT(*) FROM passages WHERE agent_id=?",
                                    ("dm:1",)),
            "by_id_ms": await timed(f"SELECT * FROM passages WHERE agent_id=? AND id IN"
                                    f" ({marks})", ("dm:1", *ids)),
            "by_id_plus_ms": await timed(f"SELECT * FROM passages WHERE +agent_id=? AND id IN"
                                         f" ({marks})", ("dm:1", *ids)),
        }
    finally:
        await store.close()
    section.say(f"one agent with {count:,} passages: COUNT(*) {figures['count_ms']:.1f} ms (so"
                f" the count is kept in memory); 10 passages by id with 'agent_id=?'"
                f" {figures['by_id_ms']:.1f} ms (SQLite walks the agent's index), with"
                f" '+agent_id=?' {figures['by_id_plus_ms']:.2f} ms (primary key lookups)")
    return figures


async def run(quick: bool) -> Section:
    section = Section("Micro-measurements behind the code's choices", (
        "each alternative timed in this process alone; the LLM server in its own process;"
        " CPU is this process's (all threads), loop stalls are the longest gap between two"
        " event-loop iterations during a write"))
    with tempfile.TemporaryDirectory(prefix="mnemocord-micro-") as scratch:
        folder = Path(scratch)
        section.figures = (await _llm_client(section, quick)
                           | await _chroma(section, quick, folder)
                           | await _store(section, quick, folder)
                           | await _archival_sql(section, quick, folder))
    return section
