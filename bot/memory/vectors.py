"""The vector index behind archival memory.

One Chroma collection per agent: a metadata filter on one shared collection
measured ~25x slower at 100k vectors. Passage text lives in SQLite (the source
of truth); Chroma only maps passage id -> vector, plus the document and
metadata for convenience when inspecting the store.

Chroma runs in a process of its own (bot/memory/vector_worker.py): its Rust
bindings hold the GIL through a whole write, so on a thread of this process a
write stalled every conversation for 10-25 ms (docs/benchmarks.md). The worker
is started on first use (or by `warm`) and again if it ever dies; an agent
without passages never needs it. Only one process may own an embedded
(``path=``) store: two writers lose vectors. Run ``chroma run`` and pass
``host=`` to share one between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import pickle
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bot.memory.vector_worker import HEADER, READY

log = logging.getLogger(__name__)

_NAME_PREFIX = "agent"
_SLUG_MAX = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_IDS_PAGE = 10_000
_START_TIMEOUT = 120.0  # importing chromadb takes seconds on a busy 2-core machine
_STOP_TIMEOUT = 30.0


class VectorIndexError(RuntimeError):
    """Chroma failed an operation, or its process stopped."""


class _Stopped(VectorIndexError):
    """The Chroma process ended before answering."""


def collection_name(agent_id: str) -> str:
    """A valid, deterministic Chroma collection name for any agent id.

    The readable slug helps when browsing the store; the hash of the exact id
    keeps distinct ids distinct even when their slugs collide. Periods are
    replaced too, so the name can never hold ".." or look like an IP address.
    """
    slug = _UNSAFE.sub("_", agent_id).strip("_-")[:_SLUG_MAX]
    digest = hashlib.sha256(agent_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{_NAME_PREFIX}-{slug}-{digest}" if slug else f"{_NAME_PREFIX}-{digest}"


class _Worker:
    """The Chroma process and the requests waiting for its answers."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.next_id = READY + 1
        self.calls = 0
        self.started = time.monotonic()
        self.reader = asyncio.create_task(self._read(), name="vector-index-replies")

    @classmethod
    async def start(cls, config: dict[str, Any]) -> _Worker:
        # The worker needs no secret: keep tokens and keys out of its environment.
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.memory.vector_worker", json.dumps(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )
        try:  # the process says it is ready once its Chroma client is open
            await asyncio.wait_for(_read_frame(proc), _START_TIMEOUT)
        except (asyncio.IncompleteReadError, TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            code = await proc.wait()
            raise VectorIndexError(
                f"the vector index process did not start (exit code {code}); its error is"
                " in the log above") from None
        return cls(proc)

    async def call(self, op: str, *args: Any) -> Any:
        if self.reader.done():
            raise _Stopped("the vector index process has stopped")
        request_id, self.next_id = self.next_id, self.next_id + 1
        answer = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = answer
        data = pickle.dumps((request_id, op, args), protocol=pickle.HIGHEST_PROTOCOL)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(HEADER.pack(len(data)) + data)
            await self.proc.stdin.drain()
            return await answer
        except (ConnectionError, BrokenPipeError) as error:
            raise _Stopped("the vector index process has stopped") from error
        finally:
            self.waiting.pop(request_id, None)

    async def _read(self) -> None:
        """Hand each answer to its caller; when the process ends, fail whoever still waits."""
        try:
            while True:
                request_id, ok, value = await _read_frame(self.proc)
                answer = self.waiting.get(request_id)
                if answer is None or answer.done():
                    continue  # its caller was cancelled
                if ok:
                    answer.set_result(value)
                else:
                    answer.set_exception(VectorIndexError(value))
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await self.proc.wait()
            if code:
                log.error("the vector index process stopped (exit code %s)", code)
            error = _Stopped(f"the vector index process stopped (exit code {code})")
            for answer in self.waiting.values():
                if not answer.done():
                    answer.set_exception(error)

    async def stop(self) -> None:
        with contextlib.suppress(VectorIndexError, TimeoutError):
            await asyncio.wait_for(self.call("close"), _STOP_TIMEOUT)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            log.error("the vector index process did not stop; killing it")
            self.proc.kill()
            await self.proc.wait()
        await self.reader


async def _read_frame(proc: asyncio.subprocess.Process) -> Any:
    assert proc.stdout is not None
    head = await proc.stdout.readexactly(HEADER.size)
    return pickle.loads(await proc.stdout.readexactly(HEADER.unpack(head)[0]))


class VectorIndex:
    """Per-agent cosine vector collections in Chroma (embedded or server), served by a worker
    process."""

    def __init__(
        self,
        *,
        path: Path | None = None,
        host: str | None = None,
        port: int = 8000,
        hnsw: dict[str, Any] | None = None,
        memory_limit_mb: int = 0,
        check_every: int = 200,
        min_age: float = 600.0,
        call_timeout: float = 60.0,
    ) -> None:
        """memory_limit_mb: restart the Chroma process once it holds more than this (0 =
        never), checked every `check_every` calls, when nothing is waiting on it, it has more
        than one collection open and has run for at least `min_age` seconds (so a single large
        archive, which a restart cannot shrink, never makes it restart over and over).
        call_timeout: seconds a call may wait for its answer; past it the call fails and the
        process (hung, or lost in a call) is killed, so the next call starts a fresh one."""
        if (path is None) == (host is None):
            raise ValueError("VectorIndex needs exactly one of path= (embedded) or host= (server)")
        hnsw = dict(hnsw or {})
        space = hnsw.pop("space", "cosine")
        if space != "cosine":
            # query() turns cosine distance into similarity; other spaces would lie.
            raise ValueError(f"VectorIndex only supports the cosine space, got {space!r}")
        self.path = Path(path) if path is not None else None
        self.host = host
        self.port = port
        self._hnsw: dict[str, Any] = {"space": "cosine", **hnsw}
        self._worker: _Worker | None = None
        self._worker_lock = asyncio.Lock()
        # Only an embedded store's memory is the worker's to give back; a server keeps its own.
        self.memory_limit_mb = memory_limit_mb if path is not None else 0
        self.check_every = check_every
        self.min_age = min_age
        self.restarts = 0  # for the memory limit
        self.call_timeout = call_timeout
        self.timeouts = 0

    async def _call(self, op: str, *args: Any) -> Any:
        try:
            return await self._call_once(op, *args)
        except _Stopped:
            # Every operation is idempotent (upserts, deletes by id, reads): if the process
            # died under it, a new one does it again.
            log.warning("the vector index process stopped; starting it again")
            return await self._call_once(op, *args)

    async def _call_once(self, op: str, *args: Any) -> Any:
        worker = self._worker
        if worker is None or worker.reader.done():
            async with self._worker_lock:
                worker = self._worker
                if worker is None or worker.reader.done():
                    if self.path is not None:
                        self.path.mkdir(parents=True, exist_ok=True)
                    config = {"path": str(self.path) if self.path else None, "host": self.host,
                              "port": self.port, "hnsw": self._hnsw}
                    worker = self._worker = await _Worker.start(config)
        try:
            result = await asyncio.wait_for(worker.call(op, *args), self.call_timeout)
        except TimeoutError:
            self.timeouts += 1
            await self._abandon(worker)
            raise VectorIndexError(
                f"the vector index did not answer {op!r} within {self.call_timeout:g} s"
                " (CHROMA_TIMEOUT); its process was stopped and starts again on the next call"
            ) from None
        worker.calls += 1
        if self.memory_limit_mb and worker.calls % self.check_every == 0:
            try:
                await self._recycle_if_large(worker)
            except VectorIndexError:  # the next check decides; this call is done
                log.warning("could not check the vector index process", exc_info=True)
        return result

    async def _abandon(self, worker: _Worker) -> None:
        """Kill a process that stopped answering (a hung process ignores a polite close)."""
        async with self._worker_lock:
            if self._worker is worker:
                self._worker = None
        log.error("the vector index process (pid %s) stopped answering; killing it",
                  worker.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            worker.proc.kill()
        await worker.proc.wait()
        await worker.reader  # fails whatever else still waited on it

    async def _recycle_if_large(self, worker: _Worker) -> None:
        """Embedded Chroma keeps every agent index it has loaded in memory for good (its own
        LRU, sized from the open-file limit, drops indexes not yet synced to disk and then
        fails their searches), so its memory grows with the agents that used archival memory
        since it started. Past the limit, a restart at a quiet moment gives it back: the next
        call starts a new process, which reads indexes from disk as they are needed."""
        if time.monotonic() - worker.started < self.min_age:
            return
        stats = await worker.call("stats")
        rss = stats["rss_mib"]
        if rss <= self.memory_limit_mb or stats["collections"] < 2 or worker.waiting:
            return
        async with self._worker_lock:
            if self._worker is not worker or worker.waiting:
                return  # restarted already, or busy again: the next check decides
            self._worker = None  # new calls wait for the lock, then start a new process
            log.info("restarting the vector index process (%.0f MiB > %d MiB)", rss,
                     self.memory_limit_mb)
            await worker.stop()
            self.restarts += 1

    async def warm(self) -> None:
        """Start the worker now (it imports chromadb: seconds), so the first archival search
        after start-up does not wait for it."""
        try:
            await self._call("stats")
        except Exception:  # the first real use reports it
            log.warning("could not open the vector index yet", exc_info=True)

    # ---------------------------------------------------------------- public API

    async def add(
        self,
        agent_id: str,
        ids: list[str],
        embeddings: list[list[float]],
        documents: list[str],
        metadatas: list[dict[str, Any]] | None = None,
    ) -> None:
        """Upsert vectors for ``agent_id``; re-adding an id replaces it."""
        if not ids:
            return
        if len(embeddings) != len(ids) or len(documents) != len(ids):
            raise ValueError("ids, embeddings and documents must have the same length")
        if metadatas is not None and len(metadatas) != len(ids):
            raise ValueError("metadatas must have one entry per id")
        metas = None
        if metadatas is not None and any(metadatas):
            metas = [m or None for m in metadatas]  # Chroma rejects empty dicts, takes None
        matrix = np.asarray(embeddings, dtype=np.float32)  # a compact frame for the pipe
        await self._call("add", agent_id, list(ids), matrix, list(documents), metas)

    async def query(self, agent_id: str, embedding: list[float], k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest ids as (id, cosine similarity), best first."""
        if k <= 0:
            return []
        result: list[tuple[str, float]] = await self._call(
            "query", agent_id, [float(x) for x in embedding], k)
        return result

    async def count(self, agent_id: str) -> int:
        return int(await self._call("count", agent_id))

    async def ids(self, agent_id: str) -> list[str]:
        """Every id stored for the agent (paged, so huge collections don't spike memory)."""
        out: list[str] = []
        while True:
            page: list[str] = await self._call("ids", agent_id, _IDS_PAGE, len(out))
            out.extend(page)
            if len(page) < _IDS_PAGE:
                return out

    async def delete(self, agent_id: str, ids: list[str]) -> None:
        if ids:
            await self._call("delete", agent_id, list(ids))

    async def drop_agent(self, agent_id: str) -> None:
        """Delete the agent's whole collection; a missing one is fine."""
        await self._call("drop", agent_id)

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (for resource accounting)."""
        worker = self._worker
        return worker.proc.pid if worker is not None and not worker.reader.done() else None

    async def stats(self) -> dict[str, float]:
        """The worker's open collections and resident memory (the memory limit, benchmarks)."""
        return dict(await self._call("stats"))

    async def aclose(self) -> None:
        """Stop the worker; an embedded store's files are flushed and unlocked."""
        async with self._worker_lock:
            worker, self._worker = self._worker, None
            if worker is not None:
                await worker.stop()
