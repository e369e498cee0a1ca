"""Archival memory: an unbounded store of passages the agent writes and searches by meaning.

Passage text lives in SQLite (the source of truth, committed with the turn that wrote it);
vectors live in Chroma, one collection per agent. A passage is added to Chroma as soon as it is
written so the same turn can find it; if the turn then fails, the vector is removed again.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from bot.embeddings import Embedder
from bot.memory.recall import PAGE_SIZE
from bot.memory.vectors import VectorIndex
from bot.messages import iso, parse_iso, utcnow
from bot.store import Statement, Store
from bot.tokens import TokenCounter

CHUNK_TOKENS = 300
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")

INSERT_PASSAGE = "INSERT INTO passages (id, agent_id, text, source, created_at) VALUES (?,?,?,?,?)"


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
class _Uncommitted:
    passages: dict[str, Passage] = field(default_factory=dict)


def chunk_text(text: str, counter: TokenCounter, max_tokens: int = CHUNK_TOKENS) -> list[str]:
    """Split at sentence/paragraph ends into pieces of at most max_tokens."""
    chunks: list[str] = []
    current: list[str] = []
    current_tokens = 0
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        tokens = counter.count(sentence)
        while tokens > max_tokens:  # a single huge "sentence": cut it by tokens
            head = counter.clip(sentence, max_tokens)
            if current:
                chunks.append(" ".join(current))
                current, current_tokens = [], 0
            chunks.append(head)
            sentence = sentence[len(head):].strip()
            tokens = counter.count(sentence)
        if not sentence:
            continue
        if current and current_tokens + tokens > max_tokens:
            chunks.append(" ".join(current))
            current, current_tokens = [], 0
        current.append(sentence)
        current_tokens += tokens
    if current:
        chunks.append(" ".join(current))
    return chunks


class ArchivalMemory:
    def __init__(
        self, store: Store, index: VectorIndex, embedder: Embedder, counter: TokenCounter
    ) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.counter = counter
        self._uncommitted: dict[str, _Uncommitted] = {}

    async def insert(
        self, agent_id: str, text: str, source: str | None = None
    ) -> tuple[list[str], list[Statement]]:
        """Embed and index now; return the SQLite statements for the caller's transaction."""
        chunks = chunk_text(text, self.counter)
        if not chunks:
            raise ValueError("Nothing to store: the content is empty.")
        vectors = await self.embedder.embed(chunks)
        ids = [uuid.uuid4().hex for _ in chunks]
        now = utcnow()
        await self.index.add(
            agent_id, ids, vectors, chunks, [{"created_at": iso(now)} for _ in chunks]
        )
        pending = self._uncommitted.setdefault(agent_id, _Uncommitted())
        for passage_id, chunk in zip(ids, chunks, strict=True):
            pending.passages[passage_id] = Passage(passage_id, chunk, now, source)
        statements = [
            (INSERT_PASSAGE, (pid, agent_id, chunk, source, iso(now)))
            for pid, chunk in zip(ids, chunks, strict=True)
        ]
        return ids, statements

    def mark_committed(self, agent_id: str) -> None:
        self._uncommitted.pop(agent_id, None)

    async def discard_uncommitted(self, agent_id: str) -> None:
        pending = self._uncommitted.pop(agent_id, None)
        if pending and pending.passages:
            await self.index.delete(agent_id, list(pending.passages))

    async def count(self, agent_id: str) -> int:
        stored = int(await self.store.scalar(
            "SELECT COUNT(*) FROM passages WHERE agent_id=?", (agent_id,)
        ))
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
        hits = await self.index.query(agent_id, vector, (page + 1) * page_size)
        hits = hits[page * page_size:]
        found = await self._load(agent_id, [hit_id for hit_id, _ in hits])
        items = []
        for hit_id, score in hits:
            if hit_id in found:
                passage = found[hit_id]
                passage.score = score
                items.append(passage)
        return PassagePage(items, total, page, page_size)

    async def _load(self, agent_id: str, ids: list[str]) -> dict[str, Passage]:
        found: dict[str, Passage] = {}
        pending = self._uncommitted.get(agent_id)
        if pending:
            found.update({i: pending.passages[i] for i in ids if i in pending.passages})
        missing = [i for i in ids if i not in found]
        if missing:
            marks = ",".join("?" * len(missing))
            rows = await self.store.fetchall(
                f"SELECT * FROM passages WHERE agent_id=? AND id IN ({marks})",
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

    async def drop_agent(self, agent_id: str) -> Statement:
        self._uncommitted.pop(agent_id, None)
        await self.index.drop_agent(agent_id)
        return ("DELETE FROM passages WHERE agent_id=?", (agent_id,))

    async def reconcile(self, agent_id: str) -> tuple[int, int]:
        """Make Chroma agree with SQLite after a crash: re-index missing, drop orphans."""
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
        return len(missing), len(orphans)
