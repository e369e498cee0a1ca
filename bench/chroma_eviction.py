"""Why the bot does not bound embedded Chroma's memory with Chroma's own index cache:
`python -m bench.chroma_eviction [COLLECTIONS] [PER_COLLECTION]`.

Embedded Chroma (1.x) caches as many agents' HNSW indexes as its open-file limit allows (a fifth
of RLIMIT_NOFILE at client start). This writes COLLECTIONS small collections (each
searched once right after its write, as an agent does), then searches each again for a vector
it holds: first with the limit as the machine has it, then with the limit
lowered (at client start only) so that about 100 indexes stay cached, then the same with
`sync_threshold=1` (every write synced to disk). It prints resident memory and how many
searches failed.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import numpy as np


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def trial(collections: int, per: int, nofile: int | None, hnsw: dict[str, Any]) -> str:
    import chromadb
    from chromadb.config import Settings

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    try:
        client = chromadb.PersistentClient(path=tempfile.mkdtemp(prefix="chroma-eviction-"),
                                           settings=Settings(anonymized_telemetry=False))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    rng = np.random.default_rng(0)
    kept = []
    started = time.perf_counter()
    for index in range(collections):
        collection = client.get_or_create_collection(
            f"agent-{index}", configuration={"hnsw": {"space": "cosine", **hnsw}},
            embedding_function=None)
        vectors = rng.standard_normal((per, 384)).astype(np.float32)
        collection.upsert(ids=[uuid.uuid4().hex for _ in range(per)], embeddings=vectors)
        collection.query(query_embeddings=[vectors[-1]], n_results=1)  # as an agent would
        kept.append((collection, vectors[0]))
    write_s = time.perf_counter() - started
    after_writes = _rss_mib()
    failed, error = 0, ""
    for collection, vector in kept:
        try:
            found = collection.query(query_embeddings=[vector], n_results=1)
            assert found["distances"] and found["distances"][0][0] < 1e-3
        except Exception as problem:  # what is being counted
            failed, error = failed + 1, f"{type(problem).__name__}: {problem}"[:110]
    after_searches = _rss_mib()
    client.close()
    cache = (nofile or soft) // 5
    return (f"cache of {cache} indexes, hnsw {hnsw or 'defaults'}: {collections} collections x"
            f" {per} vectors written in {write_s:.1f} s, RSS {after_writes:.0f} MiB after the"
            f" writes, {after_searches:.0f} MiB after searching each; failed searches: {failed}"
            + (f" ({error})" if failed else ""))


TRIALS: list[tuple[int | None, dict[str, Any]]] = [
    (None, {}), (564, {}), (564, {"sync_threshold": 1, "batch_size": 1})]


def main() -> None:
    if sys.argv[1:2] == ["--trial"]:  # one trial per process, so memory figures stay apart
        nofile, hnsw = TRIALS[int(sys.argv[2])]
        print(trial(int(sys.argv[3]), int(sys.argv[4]), nofile, hnsw), flush=True)
        return
    collections = sys.argv[1] if len(sys.argv) > 1 else "400"
    per = sys.argv[2] if len(sys.argv) > 2 else "20"
    for number in range(len(TRIALS)):
        subprocess.run([sys.executable, "-m", "bench.chroma_eviction", "--trial", str(number),
                        collections, per], check=True)


if __name__ == "__main__":
    main()
