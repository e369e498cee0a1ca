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

from bot.embeddings import Embedder
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


def embedding_text(text: str, sender_name: str | None) -> str:
    return f"{sender_name}: {text}" if sender_name else text


class RecallIndexer:
    def __init__(self, store: Store, embedder: Embedder, batch: int = BATCH) -> None:
        self.store = store
        self.embedder = embedder
        self.batch = batch
        self.failures = 0
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
            await self.store.commit([(
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
            vectors = await self.embedder.embed([embedding_text(t, s) for _, t, s in work])
            for (message_id, text, sender), vector in zip(work, vectors, strict=True):
                blob = np.asarray(vector, dtype="<f4").tobytes()
                statements.append((_STORE_VECTOR, (model, blob, message_id, text, sender)))
                statements.append((_DEQUEUE, (message_id, message_id, model, message_id)))
        await self.store.commit(statements)
        return True
