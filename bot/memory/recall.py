"""Recall memory: every message ever exchanged, searchable by date and by a hybrid search.

The search (measured in docs/memory-eval.md) fuses BM25 keywords with message vectors when an
embedder is set, lets each message borrow score from the turns around it, and favours the person
and the dates a query names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

import numpy as np

from bot.embeddings import Embedder, EmbeddingError
from bot.memory.ranking import (
    DATE_BOOST,
    DENSE_WEIGHT,
    SPEAKER_PRIOR,
    date_cues,
    date_mask,
    fts_match,
    named_participant,
    query_terms,
    smooth,
    spread,
)
from bot.memory.timeline import Snapshot, TimelineCache
from bot.messages import Message, iso
from bot.store import CONTEXT_ORDER, Statement, Store, agent_tag

log = logging.getLogger(__name__)

PAGE_SIZE = 5
KEYWORD_POOL = 1000  # keyword hits scored with everything else; more follow in BM25 order
DENSE_CANDIDATES = 50  # the closest messages by meaning join the results even without keywords
INLINE_ROWS = 20_000  # timelines larger than this are scored on a worker thread
QUERY_CACHE = 256
_BM25 = "bm25(messages_fts, 1.0, 0.5, 0.0)"  # text, sender_name, agent_tag
_NOT_LISTED = "rowid NOT IN (SELECT value FROM json_each(?))"
EMBED_RETRY_SECONDS = 300  # after the embedding model failed, search by keywords this long


@dataclass
class SearchPage:
    items: list[Message]
    total: int
    page: int
    page_size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    def header(self) -> str:
        if not self.total:
            return "No results found."
        first = self.page * self.page_size + 1
        last = first + len(self.items) - 1
        if not self.items:
            return (
                f"No results on page {self.page}: there are {self.total} results in"
                f" {self.pages} pages (pages are numbered from 0)."
            )
        return (
            f"Showing results {first}-{last} of {self.total} (page {self.page} of pages"
            f" 0-{self.pages - 1})."
        )


def _rank(rows: Snapshot, hits: list[tuple[int, float]], query_vector: np.ndarray | None,
          query: str) -> np.ndarray:
    """Ids of the result set, best first: keyword matches, the turns around them, the closest
    messages by meaning and messages from dates the query names, by fused score."""
    ids = rows.ids
    size = len(ids)
    lexical = np.zeros(size)
    matched = np.zeros(size, dtype=bool)
    if hits and size:
        hit_ids = np.fromiter((h[0] for h in hits), dtype=np.int64, count=len(hits))
        at = np.minimum(np.searchsorted(ids, hit_ids), size - 1)
        found = ids[at] == hit_ids
        lexical[at[found]] = [h[1] for h, ok in zip(hits, found, strict=True) if ok]
        matched[at[found]] = True
        lexical /= max(lexical.max(), 1e-9)  # the best keyword hit scores 1
    member = spread(matched)
    fused = lexical
    if query_vector is not None and rows.vectors is not None:
        has = rows.has_vector
        dense = np.where(has, np.clip(rows.vectors @ query_vector, 0.0, None), 0.0)
        fused = fused + DENSE_WEIGHT * dense
        closest = np.argsort(-dense)[:DENSE_CANDIDATES]
        member[closest[has[closest]]] = True
    fused = smooth(fused)
    cues = date_cues(query)
    if cues:
        on_date = date_mask(cues, rows.days, rows.years, rows.months)
        fused += DATE_BOOST * on_date
        member |= on_date
    speaker = named_participant(query, rows.names)
    if speaker is not None:
        fused[rows.speakers == speaker] *= SPEAKER_PRIOR
    chosen = np.flatnonzero(member)
    return ids[chosen[np.lexsort((-ids[chosen], -fused[chosen]))]]


class RecallMemory:
    def __init__(self, store: Store, tz: ZoneInfo, embedder: Embedder | None = None) -> None:
        self.store = store
        self.tz = tz
        self.embedder = embedder  # None: keyword search only (no message vectors are kept)
        self.timelines = TimelineCache(store, tz)
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._embed_failed_at: float | None = None

    async def count(self, agent_id: str) -> int:
        return int(await self.store.scalar(
            "SELECT COUNT(*) FROM messages WHERE agent_id=?", (agent_id,)
        ))

    async def search(
        self, agent_id: str, query: str, page: int = 0, page_size: int = PAGE_SIZE,
        exclude: Collection[int] = (),
    ) -> SearchPage:
        """Hybrid search: BM25 keywords (+ message vectors when an embedder is set), fused with
        the turns around each hit, the person and the dates the query names. `exclude` drops
        messages (the agent passes those already in its context: it can see them)."""
        terms = query_terms(query)
        if not terms:
            raise ValueError("The query has no searchable words; use a few keywords.")
        expression = fts_match(agent_tag(agent_id), terms)
        model = self.embedder.model_id if self.embedder else None
        # The query embedding runs on the embedder's thread while SQLite answers the rest.
        (hits, matches), vector, timeline = await asyncio.gather(
            self._keyword_hits(expression), self._query_vector(query),
            self.timelines.get(agent_id, model),
        )
        if hits and max(h[0] for h in hits) > timeline.top_id:  # committed meanwhile
            timeline = await self.timelines.get(agent_id, model)
        rows = timeline.snapshot()
        if len(rows.ids) > INLINE_ROWS:
            ranked = await asyncio.to_thread(_rank, rows, hits, vector, query)
        else:
            ranked = _rank(rows, hits, vector, query)
        skip = set(exclude)
        ordered = [int(i) for i in ranked if int(i) not in skip]
        listed = json.dumps(ordered + sorted(skip))
        rest = 0  # keyword matches beyond the scored pool, in BM25 order after everything else
        if matches > len(hits):
            rest = int(await self.store.scalar(
                f"SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ? AND {_NOT_LISTED}",
                (expression, listed),
            ))
        first = page * page_size
        wanted = ordered[first:first + page_size]
        if len(wanted) < page_size and rest:
            tail = await self.store.fetchall(
                f"SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? AND {_NOT_LISTED}"
                f" ORDER BY {_BM25}, rowid DESC LIMIT ? OFFSET ?",
                (expression, listed, page_size - len(wanted),
                 max(0, first - len(ordered))),
            )
            wanted += [int(r[0]) for r in tail]
        found = {m.id: m for m in await self.by_id(agent_id, wanted)}
        items = [found[i] for i in wanted if i in found]
        return SearchPage(items, len(ordered) + rest, page, page_size)

    async def _keyword_hits(self, expression: str) -> tuple[list[tuple[int, float]], int]:
        """Keyword matches with BM25 scores (higher is better): all of them when there are at most
        KEYWORD_POOL (no sort needed in SQLite), else the best KEYWORD_POOL; and how many match."""
        rows = await self.store.fetchall(
            f"SELECT rowid, -{_BM25} FROM messages_fts WHERE messages_fts MATCH ? LIMIT ?",
            (expression, KEYWORD_POOL + 1),
        )
        if len(rows) <= KEYWORD_POOL:
            return [(int(r[0]), float(r[1])) for r in rows], len(rows)
        rows = await self.store.fetchall(
            f"SELECT rowid, -{_BM25} FROM messages_fts WHERE messages_fts MATCH ?"
            f" ORDER BY {_BM25}, rowid DESC LIMIT ?",
            (expression, KEYWORD_POOL),
        )
        total = await self.store.scalar(
            "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ?", (expression,)
        )
        return [(int(r[0]), float(r[1])) for r in rows], int(total)

    async def _query_vector(self, query: str) -> np.ndarray | None:
        if self.embedder is None:
            return None
        key = f"{self.embedder.model_id}\n{query}"
        vector = self._query_vectors.get(key)
        if vector is None:
            failed_at = self._embed_failed_at
            if failed_at is not None and monotonic() - failed_at < EMBED_RETRY_SECONDS:
                return None  # the model is unavailable: don't pay for (or log) it every search
            try:
                [raw] = await self.embedder.embed([query])
            except EmbeddingError as error:  # keywords still work without the model
                log.warning("recall search by keywords only for %d s: %s",
                            EMBED_RETRY_SECONDS, error)
                self._embed_failed_at = monotonic()
                return None
            self._embed_failed_at = None
            vector = np.asarray(raw, dtype=np.float32)
            self._query_vectors[key] = vector
            if len(self._query_vectors) > QUERY_CACHE:  # paging repeats the same query
                self._query_vectors.popitem(last=False)
        self._query_vectors.move_to_end(key)
        return vector

    def _day_bounds(self, start: date, end: date) -> tuple[str, str]:
        begin = datetime.combine(start, time.min, self.tz)
        finish = datetime.combine(end + timedelta(days=1), time.min, self.tz)
        return iso(begin), iso(finish)

    async def search_date(
        self, agent_id: str, start: date, end: date, page: int = 0, page_size: int = PAGE_SIZE
    ) -> SearchPage:
        if end < start:
            raise ValueError(f"end_date {end} is before start_date {start}.")
        begin, finish = self._day_bounds(start, end)
        where = "agent_id=? AND created_at >= ? AND created_at < ? AND text IS NOT NULL"
        params = (agent_id, begin, finish)
        total = int(await self.store.scalar(f"SELECT COUNT(*) FROM messages WHERE {where}", params))
        rows = await self.store.fetchall(
            f"SELECT * FROM messages WHERE {where} ORDER BY created_at, id LIMIT ? OFFSET ?",
            (*params, page_size, page * page_size),
        )
        return SearchPage([Message.from_row(r) for r in rows], total, page, page_size)

    async def in_context(self, agent_id: str) -> list[Message]:
        rows = await self.store.fetchall(
            f"SELECT * FROM messages WHERE agent_id=? AND in_context=1 ORDER BY {CONTEXT_ORDER}",
            (agent_id,),
        )
        return [Message.from_row(r) for r in rows]

    async def pending(self, agent_id: str) -> list[Message]:
        rows = await self.store.fetchall(
            "SELECT * FROM messages WHERE agent_id=? AND pending=1 ORDER BY id", (agent_id,)
        )
        return [Message.from_row(r) for r in rows]

    async def recent(self, agent_id: str, limit: int) -> list[Message]:
        rows = await self.store.fetchall(
            "SELECT * FROM messages WHERE agent_id=?"
            " ORDER BY COALESCE(position, id) DESC, id DESC LIMIT ?", (agent_id, limit)
        )
        return [Message.from_row(r) for r in reversed(rows)]

    async def by_id(self, agent_id: str, message_ids: list[int]) -> list[Message]:
        if not message_ids:
            return []
        marks = ",".join("?" * len(message_ids))
        rows = await self.store.fetchall(
            f"SELECT * FROM messages WHERE agent_id=? AND id IN ({marks}) ORDER BY id",
            (agent_id, *message_ids),
        )
        return [Message.from_row(r) for r in rows]

    async def by_external_id(self, external_id: str) -> list[tuple[str, int]]:
        """(agent, message id) of each person's message stored under an external id."""
        rows = await self.store.fetchall(
            "SELECT agent_id, id FROM messages WHERE external_id=? AND kind='user_message'",
            (external_id,),
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    async def edit_statements(self, agent_id: str, message_id: int, text: str
                              ) -> list[Statement]:
        """The new text of a person's message, in its searchable text and its packed content
        (the store's triggers re-index keywords and queue a new vector)."""
        row = await self.store.fetchone(
            "SELECT content, text FROM messages WHERE agent_id=? AND id=?", (agent_id, message_id))
        if row is None or row[1] == text:
            return []
        try:
            packed = json.loads(row[0] or "")
        except ValueError:
            packed = None
        if isinstance(packed, dict) and "text" in packed:
            packed["text"] = text
            content = json.dumps(packed, ensure_ascii=False, separators=(",", ":"))
        elif isinstance(packed, dict) and "message" in packed:  # the framing before issue 11
            packed["message"] = text
            content = json.dumps(packed, ensure_ascii=False)
        else:
            content = text
        return [("UPDATE messages SET text=?, content=? WHERE agent_id=? AND id=?",
                 (text, content, agent_id, message_id))]

    def render_item(self, message: Message, max_chars: int) -> str:
        when = message.created_at.astimezone(self.tz).strftime("%Y-%m-%d %I:%M %p")
        speaker = message.sender_name or ("you" if message.role == "assistant" else "user")
        said = message.text or ""
        if len(said) > max_chars:
            said = said[:max_chars] + f" […{len(said) - max_chars} more characters]"
        return f"[{when}] {speaker}: {said}"
