"""The process that owns Chroma: `python -m bot.memory.vector_worker CONFIG_JSON`.

Chroma's Rust bindings keep the GIL for the whole of a write (10-25 ms here, see
docs/benchmarks.md), so a write on a worker thread still stops the bot's event loop. This
process holds the Chroma client instead; `bot.memory.vectors.VectorIndex` talks to it over
stdin/stdout with length-prefixed pickle frames (both ends are this package; nothing else
writes to the pipes).

Requests run on a few lanes (threads), an agent's always on the same one and in the order
sent: Chroma fails a search that meets the first write of the same collection ("Nothing found
on disk"), while one agent's search need not wait for another agent's write. The process exits
when its stdin closes (the bot stopped or died).
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import queue
import struct
import sys
import threading
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger("mnemocord.vector_worker")

HEADER = struct.Struct(">I")
LANES = 4
READY = 0  # the request id of the greeting sent once the client is open


def write_frame(stream: BinaryIO, payload: object) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: BinaryIO) -> Any:
    """The next frame, or None at the end of the stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    size = HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


class Collections:
    """The Chroma client and a handle per agent's collection."""

    def __init__(self, config: dict[str, Any]) -> None:
        import chromadb
        from chromadb.config import Settings

        from bot.memory.vectors import collection_name

        self.name_of = collection_name
        self.hnsw: dict[str, Any] = config["hnsw"]
        settings = Settings(anonymized_telemetry=False)
        if config.get("host"):
            self.client: ClientAPI = chromadb.HttpClient(
                host=config["host"], port=config["port"], settings=settings)
        else:
            self.client = chromadb.PersistentClient(path=config["path"], settings=settings)
        self.max_batch = int(self.client.get_max_batch_size())
        # Handles of recently used collections. (Chroma keeps every index it loaded in memory:
        # its own LRU, sized from the open-file limit, loses indexes not yet synced to disk.)
        self.handles: OrderedDict[str, Collection] = OrderedDict()
        self.max_handles = 1000
        # An agent's requests share a lane, but two agents' first writes may create their
        # collections at once on two lanes: keep Chroma's catalogue writes one at a time.
        self._create = threading.Lock()

    def get(self, agent_id: str, *, create: bool) -> Collection | None:
        handle = self.handles.get(agent_id)
        if handle is not None:
            with contextlib.suppress(KeyError):  # another lane may have just evicted it
                self.handles.move_to_end(agent_id)
            return handle
        from chromadb.errors import NotFoundError

        name = self.name_of(agent_id)
        if create:
            with self._create:
                handle = self.client.get_or_create_collection(
                    name, configuration={"hnsw": dict(self.hnsw)},
                    metadata={"agent_id": agent_id}, embedding_function=None)
        else:
            try:
                handle = self.client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        owner = (handle.metadata or {}).get("agent_id")
        if owner is not None and owner != agent_id:
            raise RuntimeError(f"collection {name} belongs to {owner!r}, not {agent_id!r}")
        self.handles[agent_id] = handle
        while len(self.handles) > self.max_handles:
            with contextlib.suppress(KeyError):
                self.handles.popitem(last=False)
        return handle

    # --- the operations ---------------------------------------------------------------------

    def add(self, agent_id: str, ids: list[str], embeddings: Any, documents: list[str],
            metadatas: list[dict[str, Any] | None] | None) -> None:
        handle = self.get(agent_id, create=True)
        assert handle is not None
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            # No documents: passage text lives only in SQLite (the source of truth, never
            # read back from here), so an erased passage (/forget-me) leaves no copy in
            # Chroma's own files.
            handle.upsert(ids=ids[start:end], embeddings=embeddings[start:end],
                          metadatas=metadatas[start:end] if metadatas else None)

    def query(self, agent_id: str, embedding: list[float], k: int) -> list[tuple[str, float]]:
        handle = self.get(agent_id, create=False)
        if handle is None:
            return []
        result = handle.query(query_embeddings=[embedding], n_results=k, include=["distances"])
        ids = result["ids"][0] if result["ids"] else []
        distances = (result["distances"] or [[]])[0]
        # Chroma's cosine distance is 1 - cos, so similarity is recovered exactly.
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def count(self, agent_id: str) -> int:
        handle = self.get(agent_id, create=False)
        return 0 if handle is None else int(handle.count())

    def ids(self, agent_id: str, limit: int, offset: int) -> list[str]:
        handle = self.get(agent_id, create=False)
        if handle is None:
            return []
        return list(handle.get(include=[], limit=limit, offset=offset)["ids"])

    def delete(self, agent_id: str, ids: list[str]) -> None:
        handle = self.get(agent_id, create=False)
        if handle is not None:
            handle.delete(ids=ids)

    def drop(self, agent_id: str) -> None:
        from chromadb.errors import NotFoundError

        self.handles.pop(agent_id, None)
        with contextlib.suppress(NotFoundError):
            self.client.delete_collection(self.name_of(agent_id))

    def stats(self) -> dict[str, float]:
        return {"collections": len(self.handles), "rss_mib": _rss_mib()}

    def close(self) -> None:
        self.handles.clear()
        close = getattr(self.client, "close", None)  # older Chroma clients lack close()
        if close is not None:
            close()


def _rss_mib() -> float:
    """Resident memory now (Linux), else the peak so far (what other systems report)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) / 1024 for line in status
                        if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / (2**20 if sys.platform == "darwin" else 1024)


def _lane(jobs: queue.SimpleQueue[Any], collections: Collections, out: BinaryIO,
          out_lock: threading.Lock) -> None:
    while (job := jobs.get()) is not None:
        request_id, op, args = job
        try:
            reply = (request_id, True, getattr(collections, op)(*args))
        except Exception as error:  # returned to the caller, which raises it there
            reply = (request_id, False, f"{type(error).__name__}: {error}")
        try:
            with out_lock:
                write_frame(out, reply)
        except OSError:  # the bot is gone; finish the queue so the store is left whole
            pass


def serve(config: dict[str, Any], requests: BinaryIO, out: BinaryIO) -> None:
    collections = Collections(config)
    out_lock = threading.Lock()
    write_frame(out, (READY, True, collections.max_batch))
    lanes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(LANES)]
    threads = [threading.Thread(target=_lane, args=(jobs, collections, out, out_lock),
                                name=f"chroma-{number}", daemon=True)
               for number, jobs in enumerate(lanes)]
    for thread in threads:
        thread.start()
    closing: int | None = None
    while (request := read_frame(requests)) is not None:
        if request[1] == "close":
            closing = request[0]
            break
        agent_id = request[2][0] if request[2] else ""
        lanes[zlib.crc32(agent_id.encode("utf-8", "surrogatepass")) % LANES].put(request)
    for jobs in lanes:  # every lane finishes what it was given, then the store is closed
        jobs.put(None)
    for thread in threads:
        thread.join()
    collections.close()
    if closing is not None:
        with contextlib.suppress(OSError):
            write_frame(out, (closing, True, None))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(json.loads(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
