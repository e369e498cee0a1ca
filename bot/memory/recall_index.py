"""Background embedding of recall messages, so dense search costs a turn nothing.

Triggers put every stored message with text into `vector_queue` (whoever stored it: accept, a
turn's commit, an import, an edit). This worker wakes after each commit, embeds queued messages
in small batches on the embedder's own thread and stores their vectors. Until a message's vector
exists, search still finds it by keywords.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from bot.embeddings import Embedder, EmbeddingError
from bot.store import Statement, Store
from bot.tasks import observe

log = logging.getLogger(__name__)

BATCH = 16  # small, so a search's query embedding never waits long behind a batch
MAX_BACKOFF = 60.0

_STORE_VECTOR = (
    "INSERT OR REPLACE INTO message_vectors (message_id, agent_id, model, vector)"
    " SELECT id, agent_id, ?, ? FROM messages WHERE id=? AND text=? AND sender_name IS ?"
)
# Keep the queue entry if the message changed while it was being embedded (the trigger removed
# the stale vector, so none exists for this model): the next batch embeds the new text.
_DEQUEUE = (
    "DELETE FROM vector_queue WHERE message_id=? AND (EXISTS (SELECT 1 FROM message_vectors"
    " WHERE message_id=? AND model=?) OR NOT EXISTS (SELECT 1 FROM messages WHERE id=?"
    " AND text IS NOT NULL))"
)


# Set while dense recall is off: a trigger (migration 4) then keeps vector_queue empty.
DENSE_OFF_KEY = "recall:dense_off"
_PROBE = "ok"  # an input every endpoint embeds: tells "this input" from "this endpoint"


def embedding_text(text: str, sender_name: str | None) -> str:
    return f"{sender_name}: {text}" if sender_name else text


async def pause_dense_recall(store: Store) -> None:
    """Dense recall is off, so nothing would ever empty the queue: keep nothing in it. The
    indexer queues the messages stored meanwhile when dense recall is turned on again."""
    await store.commit([
        ("INSERT OR IGNORE INTO kv (key, value) VALUES (?, '1')", (DENSE_OFF_KEY,)),
        ("DELETE FROM vector_queue", ()),
    ])


class RecallIndexer:
    def __init__(self, store: Store, embedder: Embedder, batch: int = BATCH) -> None:
        self.store = store
        self.embedder = embedder
        self.batch = batch
        self.failures = 0
        self.skipped = 0  # messages the embedder refused: searched by keywords only
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self.store.after_commit.append(self.wake)
            self._task = observe(asyncio.create_task(self._run(), name="recall-indexer"),
                                 "the recall indexer", log)
            self.wake()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> int:
        """Wait until the queue is empty or embedding is failing; returns what is still queued."""
        if self._task is None:
            raise RuntimeError("the recall indexer is not running")
        self.wake()
        idle = asyncio.create_task(self._idle.wait())
        done, _ = await asyncio.wait({idle, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if idle not in done:
            idle.cancel()
        return int(await self.store.scalar("SELECT COUNT(*) FROM vector_queue"))

    async def aclose(self) -> None:
        if self.wake in self.store.after_commit:
            self.store.after_commit.remove(self.wake)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # Vectors of a previous embedding model are useless to this one: embed those again.
        try:
            resume: list[Statement] = []
            if await self.store.scalar("SELECT 1 FROM kv WHERE key=?", (DENSE_OFF_KEY,)):
                # Dense recall was off: messages stored meanwhile were never queued.
                resume = [
                    ("DELETE FROM kv WHERE key=?", (DENSE_OFF_KEY,)),
                    ("INSERT OR IGNORE INTO vector_queue (message_id) SELECT id FROM messages m"
                     " WHERE text IS NOT NULL AND NOT EXISTS"
                     " (SELECT 1 FROM message_vectors v WHERE v.message_id = m.id)", ()),
                ]
            await self.store.commit([*resume, (
                "INSERT OR IGNORE INTO vector_queue (message_id)"
                " SELECT message_id FROM message_vectors WHERE model != ?",
                (self.embedder.model_id,),
            )])
        except Exception:  # the worker still embeds what is queued
            log.exception("could not queue vectors of an earlier embedding model")
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while await self._step():
                    pass
            except Exception as error:  # a broken model or endpoint must not kill the worker
                self.failures += 1
                delay = min(MAX_BACKOFF, 2.0 ** self.failures)
                log.warning("recall embedding failed (%s); retrying in %.0f s", error, delay)
                self._idle.set()
                await asyncio.sleep(delay)  # back off; commits meanwhile must not hammer it
                self._wake.set()
                continue
            self.failures = 0
            if not self._wake.is_set():
                self._idle.set()

    async def _step(self) -> bool:
        rows = await self.store.fetchall(
            "SELECT q.message_id, m.text, m.sender_name FROM vector_queue q"
            " LEFT JOIN messages m ON m.id = q.message_id ORDER BY q.message_id LIMIT ?",
            (self.batch,),
        )
        if not rows:
            return False
        work = [(r[0], r[1], r[2]) for r in rows if r[1] is not None]
        model = self.embedder.model_id
        statements: list[Statement] = [
            ("DELETE FROM vector_queue WHERE message_id=?", (r[0],)) for r in rows if r[1] is None
        ]
        if work:
            vectors = await self._embed([embedding_text(t, s) for _, t, s in work],
                                        [message_id for message_id, _, _ in work])
            for (message_id, text, sender), vector in zip(work, vectors, strict=True):
                if vector is None:  # refused for good: leave it to keyword search
                    statements.append(("DELETE FROM vector_queue WHERE message_id=?",
                                       (message_id,)))
                    continue
                blob = np.asarray(vector, dtype="<f4").tobytes()
                statements.append((_STORE_VECTOR, (model, blob, message_id, text, sender)))
                statements.append((_DEQUEUE, (message_id, message_id, model, message_id)))
        await self.store.commit(statements)
        return True

    async def _embed(self, texts: list[str], ids: list[int]) -> list[list[float] | None]:
        """Vectors for texts; None for one the embedder refuses (the batch is halved until the
        refused one is alone, so one bad message never holds back the rest)."""
        try:
            return list(await self.embedder.embed(texts))
        except EmbeddingError as error:
            if not error.rejected:
                raise  # the endpoint, not the input: back off and retry
            if len(texts) > 1:
                half = len(texts) // 2
                return [*await self._embed(texts[:half], ids[:half]),
                        *await self._embed(texts[half:], ids[half:])]
            # Alone and refused: if the endpoint embeds a trivial input, the fault is this one
            # (a refused probe is a configuration fault: raise, back off, retry).
            await self.embedder.embed([_PROBE])
            self.skipped += 1
            log.warning("recall: message %d cannot be embedded (%s); it is found by keywords"
                        " only", ids[0], error)
            return [None]
