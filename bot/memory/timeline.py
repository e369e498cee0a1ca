"""An in-memory copy of each searched agent's messages, in order, for ranking recall search.

Neighbour smoothing needs "the turns around this one", the speaker prior and date cues need who
and when, and dense scoring needs every message vector: one array per agent answers all of them
in microseconds. SQLite stays the source of truth. A cached timeline catches up cheaply on each
search (only rows newer than it has, plus vectors newer than it has); the per-agent counters in
`recall_state`, kept by triggers, tell it when a deletion, an edit or an out-of-order commit means
it must reload.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np

from bot.messages import parse_iso
from bot.store import Store

MAX_CACHED_ROWS = 200_000  # across agents; 384-dim vectors make that about 300 MB at most


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    if size <= len(array):
        return array
    bigger = np.zeros((max(size, 2 * len(array), 64), *array.shape[1:]), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


@dataclass(frozen=True)
class Snapshot:
    ids: np.ndarray
    days: np.ndarray
    years: np.ndarray
    months: np.ndarray
    speakers: np.ndarray
    vectors: np.ndarray | None
    has_vector: np.ndarray
    names: list[str | None]


@dataclass
class Timeline:
    """Every searchable message of one agent, oldest first, as parallel arrays."""

    tz: ZoneInfo
    model: str | None  # vectors from another model are ignored
    size: int = 0
    epoch: int = -1  # the store's commit count when this timeline last caught up
    changes: int = -1
    seq: int = 0  # last message_vectors.seq applied
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    days: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    years: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    months: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    speakers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    vectors: np.ndarray | None = None
    has_vector: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    names: list[str | None] = field(default_factory=list)
    _name_index: dict[str | None, int] = field(default_factory=dict)

    @property
    def top_id(self) -> int:
        return int(self.ids[self.size - 1]) if self.size else 0

    def snapshot(self) -> Snapshot:
        """Views of the rows there are now; later appends (or a regrown array) leave them be."""
        n = self.size
        return Snapshot(self.ids[:n], self.days[:n], self.years[:n], self.months[:n],
                        self.speakers[:n], None if self.vectors is None else self.vectors[:n],
                        self.has_vector[:n], list(self.names))

    def add_rows(self, rows: list[tuple[int, str, str | None]]) -> None:
        end = self.size + len(rows)
        for name in ("ids", "days", "years", "months", "speakers", "has_vector"):
            setattr(self, name, _grow(getattr(self, name), end))
        if self.vectors is not None:
            self.vectors = _grow(self.vectors, end)
        for offset, (message_id, created_at, sender) in enumerate(rows, start=self.size):
            local = parse_iso(created_at).astimezone(self.tz)
            self.ids[offset] = message_id
            self.days[offset] = local.toordinal()
            self.years[offset] = local.year
            self.months[offset] = local.month
            speaker = self._name_index.get(sender)
            if speaker is None:
                speaker = self._name_index[sender] = len(self.names)
                self.names.append(sender)
            self.speakers[offset] = speaker
            self.has_vector[offset] = False
            if self.vectors is not None:
                self.vectors[offset] = 0.0
        self.size = end

    def add_vectors(self, rows: list[tuple[int, int, str, bytes]]) -> None:
        for seq, message_id, model, blob in rows:
            self.seq = max(self.seq, seq)
            if model != self.model:
                continue
            vector = np.frombuffer(blob, dtype="<f4")
            if self.vectors is None:
                self.vectors = np.zeros((len(self.ids), len(vector)), dtype=np.float32)
            elif self.vectors.shape[1] != len(vector):
                continue
            at = int(np.searchsorted(self.ids[: self.size], message_id))
            if at < self.size and self.ids[at] == message_id:
                self.vectors[at] = vector
                self.has_vector[at] = True


class TimelineCache:
    """Timelines of recently searched agents, least recently used dropped first."""

    def __init__(self, store: Store, tz: ZoneInfo, max_rows: int = MAX_CACHED_ROWS) -> None:
        self.store = store
        self.tz = tz
        self.max_rows = max_rows
        self._timelines: OrderedDict[str, Timeline] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        # Every write goes through Store.commit (one process owns the database), so a timeline
        # that caught up after the last commit is current without asking SQLite.
        self._epoch = 0
        store.after_commit.append(self._committed)

    def _committed(self) -> None:
        self._epoch += 1

    async def get(self, agent_id: str, model: str | None) -> Timeline:
        async with self._locks.setdefault(agent_id, asyncio.Lock()):
            timeline = self._timelines.get(agent_id)
            epoch = self._epoch
            if timeline is not None and timeline.epoch == epoch and timeline.model == model:
                self._timelines.move_to_end(agent_id)
                return timeline
            row = await self.store.fetchone(
                "SELECT changes, texts FROM recall_state WHERE agent_id=?", (agent_id,)
            )
            changes, texts = (int(row[0]), int(row[1])) if row else (0, 0)
            if timeline is None or timeline.changes != changes or timeline.model != model:
                timeline = Timeline(self.tz, model, changes=changes)
            await self._catch_up(agent_id, timeline)
            if timeline.size < texts:  # a message committed out of id order: start over
                timeline = Timeline(self.tz, model, changes=changes)
                await self._catch_up(agent_id, timeline)
            timeline.epoch = epoch  # commits since then (even during the reads) catch up next
            self._timelines[agent_id] = timeline
            self._timelines.move_to_end(agent_id)
            self._evict()
            return timeline

    async def _catch_up(self, agent_id: str, timeline: Timeline) -> None:
        rows = await self.store.fetchall(
            "SELECT id, created_at, sender_name FROM messages"
            " WHERE agent_id=? AND id>? AND text IS NOT NULL ORDER BY id",
            (agent_id, timeline.top_id),
        )
        if rows:
            timeline.add_rows([(r[0], r[1], r[2]) for r in rows])
        if timeline.model is None:
            return
        vectors = await self.store.fetchall(
            "SELECT seq, message_id, model, vector FROM message_vectors"
            " WHERE agent_id=? AND seq>? ORDER BY seq",
            (agent_id, timeline.seq),
        )
        if vectors:
            timeline.add_vectors([(r[0], r[1], r[2], r[3]) for r in vectors])

    def _evict(self) -> None:
        total = sum(t.size for t in self._timelines.values())
        while total > self.max_rows and len(self._timelines) > 1:
            _, dropped = self._timelines.popitem(last=False)
            total -= dropped.size
