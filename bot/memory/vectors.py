"""The vector index behind archival memory.

One Chroma collection per agent: a metadata filter on one shared collection
measured ~25x slower at 100k vectors. Passage text lives in SQLite (the source
of truth); Chroma only maps passage id -> vector, plus the document and
metadata for convenience when inspecting the store.

Chroma's client is synchronous, so every call goes through ``asyncio.to_thread``.
Only one process may own an embedded (``path=``) store: two writers lose
vectors. Run ``chroma run`` and pass ``host=`` to share one between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

_NAME_PREFIX = "agent"
_SLUG_MAX = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_IDS_PAGE = 10_000


def collection_name(agent_id: str) -> str:
    """A valid, deterministic Chroma collection name for any agent id.

    The readable slug helps when browsing the store; the hash of the exact id
    keeps distinct ids distinct even when their slugs collide. Periods are
    replaced too, so the name can never hold ".." or look like an IP address.
    """
    slug = _UNSAFE.sub("_", agent_id).strip("_-")[:_SLUG_MAX]
    digest = hashlib.sha256(agent_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{_NAME_PREFIX}-{slug}-{digest}" if slug else f"{_NAME_PREFIX}-{digest}"


def _clean_metadata(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    # Chroma rejects empty metadata dicts but accepts None.
    return meta or None


class VectorIndex:
    """Per-agent cosine vector collections in Chroma (embedded or server)."""

    def __init__(
        self,
        *,
        path: Path | None = None,
        host: str | None = None,
        port: int = 8000,
        hnsw: dict[str, Any] | None = None,
    ) -> None:
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
        self._client: ClientAPI | None = None
        self._client_lock = asyncio.Lock()
        self._collections: dict[str, Collection] = {}
        self._create_lock = asyncio.Lock()
        self._max_batch: int | None = None

    # ---------------------------------------------------------------- client / collections

    def _connect(self) -> ClientAPI:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if self.host is not None:
            return chromadb.HttpClient(host=self.host, port=self.port, settings=settings)
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.path), settings=settings)

    async def _get_client(self) -> ClientAPI:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    # chromadb imports httpx, and openai (running on the loop meanwhile)
                    # reads sys.modules["httpx"]: a half-imported module made embedding calls
                    # fail with AttributeError. httpx alone imports in tens of milliseconds.
                    import httpx  # noqa: F401

                    client = await asyncio.to_thread(self._connect)
                    self._max_batch = await asyncio.to_thread(client.get_max_batch_size)
                    self._client = client
        return self._client

    async def warm(self) -> None:
        """Import chromadb and open the client now, off the event loop (1.3 s here), so the
        first archival search after start-up does not wait for it."""
        try:
            await self._get_client()
        except Exception:  # the first real use reports it
            log.warning("could not open the vector index yet", exc_info=True)

    async def _collection(self, agent_id: str, *, create: bool) -> Collection | None:
        """The agent's collection handle (cached); None if missing and not ``create``."""
        cached = self._collections.get(agent_id)
        if cached is not None:
            return cached
        # The client first: it imports chromadb (over a second) on a worker thread; imported
        # here first, that import would stall the event loop.
        client = await self._get_client()
        from chromadb.errors import NotFoundError

        name = collection_name(agent_id)
        if not create:
            try:
                col = await asyncio.to_thread(client.get_collection, name, embedding_function=None)
            except NotFoundError:
                return None
        else:
            # One creator at a time, so concurrent first writes can't race on creation.
            async with self._create_lock:
                cached = self._collections.get(agent_id)
                if cached is not None:
                    return cached
                col = await asyncio.to_thread(
                    client.get_or_create_collection,
                    name,
                    configuration={"hnsw": dict(self._hnsw)},
                    metadata={"agent_id": agent_id},
                    embedding_function=None,
                )
        stored = (col.metadata or {}).get("agent_id")
        if stored is not None and stored != agent_id:
            raise RuntimeError(f"collection {name} belongs to {stored!r}, not {agent_id!r}")
        self._collections[agent_id] = col
        return col

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
        col = await self._collection(agent_id, create=True)
        assert col is not None
        step = self._max_batch or 1000
        for start in range(0, len(ids), step):
            end = start + step
            metas = None
            if metadatas is not None:
                metas = [_clean_metadata(m) for m in metadatas[start:end]]
                if all(m is None for m in metas):
                    metas = None
            await asyncio.to_thread(
                col.upsert,
                ids=ids[start:end],
                embeddings=embeddings[start:end],  # Chroma converts to float32 off-loop
                documents=documents[start:end],
                metadatas=metas,  # type: ignore[arg-type]
            )

    async def query(self, agent_id: str, embedding: list[float], k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest ids as (id, cosine similarity), best first."""
        if k <= 0:
            return []
        col = await self._collection(agent_id, create=False)
        if col is None:
            return []
        result = await asyncio.to_thread(
            col.query,
            query_embeddings=[list(map(float, embedding))],
            n_results=k,
            include=["distances"],
        )
        ids = result["ids"][0] if result["ids"] else []
        distances = result["distances"][0] if result["distances"] else []
        # Chroma's cosine distance is 1 - cos, so similarity is recovered exactly.
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    async def count(self, agent_id: str) -> int:
        col = await self._collection(agent_id, create=False)
        if col is None:
            return 0
        return int(await asyncio.to_thread(col.count))

    async def ids(self, agent_id: str) -> list[str]:
        """Every id stored for the agent (paged, so huge collections don't spike memory)."""
        col = await self._collection(agent_id, create=False)
        if col is None:
            return []
        out: list[str] = []
        while True:
            page = await asyncio.to_thread(col.get, include=[], limit=_IDS_PAGE, offset=len(out))
            out.extend(page["ids"])
            if len(page["ids"]) < _IDS_PAGE:
                return out

    async def delete(self, agent_id: str, ids: list[str]) -> None:
        if not ids:
            return
        col = await self._collection(agent_id, create=False)
        if col is None:
            return
        await asyncio.to_thread(col.delete, ids=list(ids))

    async def drop_agent(self, agent_id: str) -> None:
        """Delete the agent's whole collection; a missing one is fine."""
        client = await self._get_client()  # imports chromadb off the event loop
        from chromadb.errors import NotFoundError

        self._collections.pop(agent_id, None)
        with contextlib.suppress(NotFoundError):
            await asyncio.to_thread(client.delete_collection, collection_name(agent_id))

    async def aclose(self) -> None:
        """Release the client; an embedded store's files are flushed and unlocked."""
        client, self._client = self._client, None
        self._collections.clear()
        if client is not None:
            close = getattr(client, "close", None)  # older Chroma clients lack close()
            if close is not None:
                await asyncio.to_thread(close)
