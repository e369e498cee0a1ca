"""Recall memory: every message ever exchanged, searchable by text (FTS5 + BM25) and by date."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.messages import Message, iso
from bot.store import Store, agent_tag

PAGE_SIZE = 5
_WORD = re.compile(r"\w+", re.UNICODE)


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


def fts_query(agent_id: str, text: str) -> str | None:
    """A safe FTS5 expression: any of the query's words, within this agent's messages only."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    if not words:
        return None
    terms = " OR ".join('"' + w.replace('"', '""') + '"' for w in words[:64])
    return f'agent_tag:"{agent_tag(agent_id)}" AND ({terms})'


class RecallMemory:
    def __init__(self, store: Store, tz: ZoneInfo) -> None:
        self.store = store
        self.tz = tz

    async def count(self, agent_id: str) -> int:
        return int(await self.store.scalar(
            "SELECT COUNT(*) FROM messages WHERE agent_id=?", (agent_id,)
        ))

    async def search(
        self, agent_id: str, query: str, page: int = 0, page_size: int = PAGE_SIZE
    ) -> SearchPage:
        expression = fts_query(agent_id, query)
        if expression is None:
            raise ValueError("The query has no searchable words; use a few keywords.")
        total = int(await self.store.scalar(
            "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ?", (expression,)
        ))
        rows = await self.store.fetchall(
            "SELECT m.* FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
            " WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts, 1.0, 0.5, 0.0), m.id DESC"
            " LIMIT ? OFFSET ?",
            (expression, page_size, page * page_size),
        )
        return SearchPage([Message.from_row(r) for r in rows], total, page, page_size)

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
            "SELECT * FROM messages WHERE agent_id=? AND in_context=1 ORDER BY id", (agent_id,)
        )
        return [Message.from_row(r) for r in rows]

    async def pending(self, agent_id: str) -> list[Message]:
        rows = await self.store.fetchall(
            "SELECT * FROM messages WHERE agent_id=? AND pending=1 ORDER BY id", (agent_id,)
        )
        return [Message.from_row(r) for r in rows]

    async def recent(self, agent_id: str, limit: int) -> list[Message]:
        rows = await self.store.fetchall(
            "SELECT * FROM messages WHERE agent_id=? ORDER BY id DESC LIMIT ?", (agent_id, limit)
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

    def render_item(self, message: Message, max_chars: int) -> str:
        when = message.created_at.astimezone(self.tz).strftime("%Y-%m-%d %I:%M %p")
        speaker = message.sender_name or ("you" if message.role == "assistant" else "user")
        said = message.text or ""
        if len(said) > max_chars:
            said = said[:max_chars] + f" […{len(said) - max_chars} more characters]"
        return f"[{when}] {speaker}: {said}"
