"""Archival memory: an unbounded store of passages the agent writes and searches by meaning.

Passage text lives in SQLite (the source of truth, committed with the turn that wrote it);
vectors live in Chroma, one collection per agent. A Chroma write takes 5-25 ms, more as the
collection grows (docs/benchmarks.md), so no turn waits for one: a passage's vector stays in
memory — found by an exact search merged into Chroma's results — from the moment it is written
until Chroma has it. Only committed passages are written to Chroma, in the background, in order
per agent; a failed turn's passages are simply dropped. After a crash, SQLite and Chroma are
reconciled when the agent loads (`reconcile`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from bot.embeddings import Embedder
from bot.memory.chunking import chunk_text
from bot.memory.recall import PAGE_SIZE
from bot.memory.vectors import VectorIndex
from bot.messages import iso, parse_iso, utcnow
from bot.store import Statement, Store
from bot.tokens import TokenCounter

log = logging.getLogger(__name__)

_INLINE_CHARS = 2_000  # cut on the event loop up to this size (well under a millisecond)

INSERT_PASSAGE = "INSERT INTO passages (id, agent_id, text, source, created_at) VALUES (?,?,?,?,?)"
# How many of an agent's passages Chroma holds, as last known for sure (a kv row, value JSON).
# Loading an agent compares it with SQLite instead of asking Chroma: asking loads the agent's
# whole index into memory (2.6 MiB and up per agent, never released; docs/benchmarks.md).
INDEXED_KEY = "archival:indexed:{}"
_ADD_INDEXED = "UPDATE kv SET value = CAST(value AS INTEGER) + ? WHERE key = ?"
_SET_INDEXED = (
    "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
)


@dataclass
class Passage:
    id: str
    text: str
    created_at: datetime
    source: str | None = None
    score: float | None = None


@dataclass
class PassagePage:
    items: list[Passage]
    total: int
    page: int
    page_size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass
class _Unindexed:
    """Passages whose vectors Chroma does not have yet, with those vectors."""

    passages: dict[str, Passage] = field(default_factory=dict)
    vectors: dict[str, list[float]] = field(default_factory=dict)

    def add(self, passage: Passage, vector: list[float]) -> None:
        self.passages[passage.id] = passage
        self.vectors[passage.id] = vector

    def pop(self, passage_id: str) -> None:
        self.passages.pop(passage_id, None)
        self.vectors.pop(passage_id, None)

    def scores(self, query: list[float]) -> list[tuple[str, float]]:
        """Exact cosine similarity of every held vector to the query (Chroma's measure)."""
        if not self.vectors:
            return []
        ids = list(self.vectors)
        matrix = np.asarray([self.vectors[i] for i in ids], dtype=np.float32)
        target = np.asarray(query, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(target)), 1e-12)
        similarity = matrix @ target / np.maximum(norms, 1e-12)
        return [(i, float(score)) for i, score in zip(ids, similarity, strict=True)]


class ArchivalMemory:
    def __init__(
        self, store: Store, index: VectorIndex, embedder: Embedder, counter: TokenCounter
    ) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.counter = counter
        self._uncommitted: dict[str, _Unindexed] = {}  # written by the running turn
        self._unindexed: dict[str, _Unindexed] = {}  # committed, on their way to Chroma
        self._writes: dict[str, asyncio.Task[None]] = {}  # the last Chroma write per agent
        # Committed passages per agent: COUNT(*) costs 6-8 ms at 100k passages, every search.
        self._stored: dict[str, int] = {}
        self._changes: dict[str, int] = {}  # so a count racing a commit is not cached stale

    async def insert(
        self, agent_id: str, text: str, source: str | None = None
    ) -> tuple[list[str], list[Statement]]:
        """Embed now (searchable at once); return the SQLite statements for the caller's
        transaction. Chroma gets the vectors after that transaction commits."""
        splitter = await self.embedder.splitter()
        if len(text) <= _INLINE_CHARS:  # a tool's passage: less work than a thread hop
            chunks = chunk_text(text, splitter)
        else:  # megabytes take seconds to cut: on a thread, so every conversation keeps going
            chunks = await asyncio.to_thread(chunk_text, text, splitter)
        if not chunks:
            raise ValueError("Nothing to store: the content is empty.")
        vectors = await self.embedder.embed(chunks)
        ids = [uuid.uuid4().hex for _ in chunks]
        now = utcnow()
        pending = self._uncommitted.setdefault(agent_id, _Unindexed())
        for passage_id, chunk, vector in zip(ids, chunks, vectors, strict=True):
            pending.add(Passage(passage_id, chunk, now, source), vector)
        statements = [
            (INSERT_PASSAGE, (pid, agent_id, chunk, source, iso(now)))
            for pid, chunk in zip(ids, chunks, strict=True)
        ]
        return ids, statements

    def mark_committed(self, agent_id: str) -> None:
        """The turn's passages are in SQLite: hand their vectors to Chroma in the background."""
        pending = self._uncommitted.pop(agent_id, None)
        if not pending or not pending.passages:
            return
        self._changes[agent_id] = self._changes.get(agent_id, 0) + 1
        if agent_id in self._stored:
            self._stored[agent_id] += len(pending.passages)
        held = self._unindexed.setdefault(agent_id, _Unindexed())
        for passage_id, passage in pending.passages.items():
            held.add(passage, pending.vectors[passage_id])
        previous = self._writes.get(agent_id)
        self._writes[agent_id] = asyncio.create_task(
            self._write(agent_id, pending, previous), name=f"archival-index:{agent_id}"
        )

    async def _write(self, agent_id: str, batch: _Unindexed,
                     previous: asyncio.Task[None] | None) -> None:
        if previous is not None:  # one agent's writes land in the order they were made
            await asyncio.gather(previous, return_exceptions=True)
        ids = list(batch.passages)
        try:
            await self.index.add(
                agent_id, ids, [batch.vectors[i] for i in ids],
                [batch.passages[i].text for i in ids],
                [{"created_at": iso(batch.passages[i].created_at)} for i in ids],
            )
            held = self._unindexed.get(agent_id)
            if held is not None:
                for passage_id in ids:
                    held.pop(passage_id)
                if not held.passages:
                    self._unindexed.pop(agent_id, None)
            # New ids, so Chroma now holds that many more (no record yet: verify() makes one).
            await self.store.commit([(_ADD_INDEXED, (len(ids), INDEXED_KEY.format(agent_id)))])
        except Exception:
            # Still searchable from memory; reconcile re-indexes them when the agent next loads.
            log.exception("could not index %d archival passages of %s", len(ids), agent_id)
        finally:
            if self._writes.get(agent_id) is asyncio.current_task():
                self._writes.pop(agent_id, None)

    async def flush(self, agent_id: str | None = None) -> None:
        """Wait until Chroma has every committed passage (of one agent, or of all)."""
        tasks = list(self._writes.values()) if agent_id is None else [
            t for t in (self._writes.get(agent_id),) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def forget(self, agent_id: str) -> None:
        """Drop what is remembered about the agent's stored passages (they changed in SQLite)."""
        self._stored.pop(agent_id, None)
        self._changes[agent_id] = self._changes.get(agent_id, 0) + 1

    async def discard_uncommitted(self, agent_id: str) -> None:
        self._uncommitted.pop(agent_id, None)  # never reached Chroma

    async def count(self, agent_id: str) -> int:
        stored = self._stored.get(agent_id)
        if stored is None:
            changes = self._changes.get(agent_id, 0)
            stored = int(await self.store.scalar(
                "SELECT COUNT(*) FROM passages WHERE agent_id=?", (agent_id,)
            ))
            if self._changes.get(agent_id, 0) == changes:
                self._stored[agent_id] = stored
        pending = self._uncommitted.get(agent_id)
        return stored + (len(pending.passages) if pending else 0)

    async def search(
        self, agent_id: str, query: str, page: int = 0, page_size: int = PAGE_SIZE
    ) -> PassagePage:
        if not query.strip():
            raise ValueError("The query is empty; describe what you are looking for.")
        total = await self.count(agent_id)
        if total == 0 or page * page_size >= total:
            return PassagePage([], total, page, page_size)
        [vector] = await self.embedder.embed([query])
        wanted = (page + 1) * page_size
        # Scored before asking Chroma: a write finishing meanwhile must not lose a passage.
        extra = [s for pending in self._pending(agent_id) for s in pending.scores(vector)]
        hits = await self.index.query(agent_id, vector, wanted)
        if extra:
            merged = dict(hits)
            merged.update(extra)  # an id just written to Chroma may come back from both
            hits = sorted(merged.items(), key=lambda hit: -hit[1])[:wanted]
        hits = hits[page * page_size:]
        found = await self._load(agent_id, [hit_id for hit_id, _ in hits])
        items = []
        for hit_id, score in hits:
            if hit_id in found:
                passage = found[hit_id]
                passage.score = score
                items.append(passage)
        return PassagePage(items, total, page, page_size)

    def _pending(self, agent_id: str) -> list[_Unindexed]:
        """The agent's passages Chroma does not have yet: committed ones, then this turn's."""
        found = (self._unindexed.get(agent_id), self._uncommitted.get(agent_id))
        return [pending for pending in found if pending and pending.passages]

    async def _load(self, agent_id: str, ids: list[str]) -> dict[str, Passage]:
        found: dict[str, Passage] = {}
        for pending in self._pending(agent_id):
            found.update({i: pending.passages[i] for i in ids if i in pending.passages})
        missing = [i for i in ids if i not in found]
        if missing:
            marks = ",".join("?" * len(missing))
            # "+agent_id": look the ids up by primary key; left to itself SQLite walks the
            # agent's index instead (40-60 ms at 100k passages, docs/benchmarks.md).
            rows = await self.store.fetchall(
                f"SELECT * FROM passages WHERE +agent_id=? AND id IN ({marks})",
                (agent_id, *missing),
            )
            for row in rows:
                found[row["id"]] = Passage(
                    row["id"], row["text"], parse_iso(row["created_at"]), row["source"]
                )
        return found

    async def all_passages(self, agent_id: str) -> list[Passage]:
        rows = await self.store.fetchall(
            "SELECT * FROM passages WHERE agent_id=? ORDER BY created_at, id", (agent_id,)
        )
        return [
            Passage(r["id"], r["text"], parse_iso(r["created_at"]), r["source"]) for r in rows
        ]

    async def delete(self, agent_id: str, ids: list[str]) -> None:
        """Remove passages' vectors (their rows are deleted by the caller's transaction)."""
        await self.flush(agent_id)
        for pending in self._pending(agent_id):
            for passage_id in ids:
                pending.pop(passage_id)
        self.forget(agent_id)
        await self._unrecord(agent_id)  # the next load counts for itself
        await self.index.delete(agent_id, ids)

    async def drop_agent(self, agent_id: str) -> Statement:
        await self.flush(agent_id)
        self._uncommitted.pop(agent_id, None)
        self._unindexed.pop(agent_id, None)
        self.forget(agent_id)
        await self._unrecord(agent_id)
        await self.index.drop_agent(agent_id)
        return ("DELETE FROM passages WHERE agent_id=?", (agent_id,))

    async def _unrecord(self, agent_id: str) -> None:
        await self.store.commit([("DELETE FROM kv WHERE key=?", (INDEXED_KEY.format(agent_id),))])

    async def verify(self, agent_id: str, stored: int) -> tuple[int, int] | None:
        """After a crash SQLite and Chroma can disagree (a committed passage whose vector never
        reached Chroma, or a vector whose passage was deleted); SQLite is the truth. Chroma is
        only asked (and its index of the agent loaded) when the recorded count differs; returns
        what reconcile() changed, or None when nothing was wrong."""
        await self.flush(agent_id)  # committed passages still on their way
        key = INDEXED_KEY.format(agent_id)
        recorded = await self.store.scalar("SELECT value FROM kv WHERE key=?", (key,))
        if recorded is not None and int(recorded) == stored:
            return None
        changed = None
        if await self.index.count(agent_id) != stored:
            changed = await self.reconcile(agent_id)
        else:
            await self.store.commit([(_SET_INDEXED, (key, str(stored)))])
        return changed

    async def reconcile(self, agent_id: str) -> tuple[int, int]:
        """Make Chroma agree with SQLite after a crash: re-index missing, drop orphans."""
        await self.flush(agent_id)
        stored = {p.id: p for p in await self.all_passages(agent_id)}
        indexed = set(await self.index.ids(agent_id))
        orphans = [i for i in indexed if i not in stored]
        missing = [stored[i] for i in stored if i not in indexed]
        if orphans:
            await self.index.delete(agent_id, orphans)
        if missing:
            vectors = await self.embedder.embed([p.text for p in missing])
            await self.index.add(
                agent_id, [p.id for p in missing], vectors, [p.text for p in missing],
                [{"created_at": iso(p.created_at)} for p in missing],
            )
        await self.store.commit([(_SET_INDEXED, (INDEXED_KEY.format(agent_id), str(len(stored))))])
        return len(missing), len(orphans)
