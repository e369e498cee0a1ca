"""SQLite storage: schema, migrations and transactions.

One process owns the database (as it owns the embedded Chroma directory). All writes go through
`Store.commit`, which applies a batch of statements in one transaction, so a turn's memory writes
land together or not at all. Message ids are assigned here, in memory, so a turn can refer to its
own messages before they are committed (and context positions come from the same counter: see
CONTEXT_ORDER). The connection is an aiosqlite one: every call runs on
aiosqlite's connection thread, off the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.migrations import MIGRATIONS

log = logging.getLogger(__name__)

Statement = tuple[str, Sequence[Any]]
T = TypeVar("T")

CONTEXT_ORDER = "COALESCE(position, id), id"


def agent_tag(agent_id: str) -> str:
    """A single opaque FTS token naming the agent, so a search intersects only its own postings."""
    return "ag" + hashlib.sha1(agent_id.encode()).hexdigest()[:16]


PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # WAL + NORMAL survives a process kill; commits stay fast
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA secure_delete=ON",  # erased text (/forget-me, /reset) is zeroed, not left in free pages
)


def _configure(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        conn.execute(pragma)


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _fetchone(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
    return row


def _apply(conn: sqlite3.Connection, batch: list[Statement]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in batch:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT must not leave the transaction open either
            conn.execute("ROLLBACK")
        raise


class Store:
    """SQLite on aiosqlite's connection thread: every call is a single hop off the event loop.

    A whole commit (BEGIN, its statements, COMMIT) runs in one hop, so a turn's writes cost one
    thread round trip instead of one per statement (measured in docs/benchmarks.md), and no other
    call can run inside the transaction. Calls run in submission order; a cancelled caller does
    not stop a call already handed to the thread (a commit lands whole, exactly as if the caller
    had waited).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._next_message_id = 1
        # Called after every successful commit (e.g. to wake the background recall indexer).
        self.after_commit: list[Callable[[], None]] = []

    @property
    def db(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(sqlite3_connection, *args)`` on aiosqlite's thread, in one hop.

        aiosqlite's public API costs a hop per call: a commit of N statements would take N + 2
        hops, and other calls could run between its BEGIN and COMMIT. So this queues the whole
        callable through ``Connection._execute`` with the raw ``Connection._conn``: aiosqlite
        internals (present since 0.17), pinned in pyproject.toml. Once queued, the callable runs
        even if the caller is cancelled. It is wrapped so that aiosqlite's DEBUG log (which
        prints the queued callable) shows no SQL parameters, i.e. no user text.
        """
        db = self.db
        conn = db._conn

        def call() -> T:
            return function(conn, *args)

        result: T = await db._execute(call)
        return result

    async def open(self) -> None:
        if self.path != Path(":memory:"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await self._run(_configure)
            await self._migrate()
        except BaseException:
            await self.close()
            raise
        # Ids and context positions share one counter: whatever is created or joins the
        # context from now on sorts after everything stored.
        top_id = await self.scalar("SELECT MAX(id) FROM messages")
        top_position = await self.scalar(
            "SELECT MAX(position) FROM messages WHERE position IS NOT NULL")
        self._next_message_id = max(top_id or 0, top_position or 0) + 1

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # queued behind every call already submitted; stops the thread
            await conn.close()

    async def _migrate(self) -> None:
        row = await self.fetchone("PRAGMA user_version")
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this Mnemocord "
                f"understands ({len(MIGRATIONS)}); upgrade Mnemocord"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migrating %s to schema version %d", self.path, number)
            await self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    def allocate_message_id(self) -> int:
        message_id = self._next_message_id
        self._next_message_id += 1
        return message_id

    def allocate_position(self) -> int:
        """A context position for a message joining the context now (after every message
        created or placed so far; see CONTEXT_ORDER)."""
        return self.allocate_message_id()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self._run(_fetchall, sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return await self._run(_fetchone, sql, params)

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def commit(self, statements: Iterable[Statement]) -> None:
        """Apply statements atomically: all of them, or (on any error) none."""
        batch = list(statements)
        if not batch:
            return
        await self._run(_apply, batch)
        for listener in self.after_commit:
            listener()
