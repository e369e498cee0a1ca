"""VectorIndex against real Chroma: an embedded PersistentClient and a `chroma run` server."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.memory import vectors
from bot.memory.vectors import VectorIndex, collection_name

DIM = 16
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
ODD_IDS = [
    "dm:123",
    "channel:456",
    "channel:456:member:789",
    "cli:sam",
    "",
    "a",
    "..",
    "1.2.3.4",
    "dm/123",  # same slug as "dm:123"
    "DM:123",
    "  spaced out  ",
    "émoji 🧠 ünïcode",
    "x" * 2000,
    "-_-",
]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.normal(size=(n, DIM))
    return m / np.linalg.norm(m, axis=1, keepdims=True)


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[VectorIndex]:
    idx = VectorIndex(path=tmp_path / "chroma")
    yield idx
    await idx.aclose()


# ----------------------------------------------------------------- collection names


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120))
def test_collection_name_is_always_valid(agent_id: str) -> None:
    name = collection_name(agent_id)
    assert NAME_RE.match(name), name
    assert ".." not in name
    assert name == collection_name(agent_id)  # deterministic


@given(st.text(max_size=80), st.text(max_size=80))
def test_collection_names_are_distinct(a: str, b: str) -> None:
    if a != b:
        assert collection_name(a) != collection_name(b)


def test_collection_name_stays_readable() -> None:
    assert collection_name("channel:456:member:789").startswith("agent-channel_456_member_789-")


@pytest.fixture(scope="module")
def raw_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[chromadb.ClientAPI]:
    client = chromadb.PersistentClient(
        path=str(tmp_path_factory.mktemp("raw")), settings=Settings(anonymized_telemetry=False)
    )
    yield client
    client.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(agent_id=st.text(max_size=300))
def test_chroma_accepts_every_derived_name(raw_client: chromadb.ClientAPI, agent_id: str) -> None:
    # Chroma's own validator is the judge, not our regex.
    name = collection_name(agent_id)
    raw_client.get_or_create_collection(name, metadata={"agent_id": agent_id})
    raw_client.delete_collection(name)


async def test_odd_agent_ids_get_distinct_collections(index: VectorIndex) -> None:
    assert len({collection_name(a) for a in ODD_IDS}) == len(ODD_IDS)
    for n, agent in enumerate(ODD_IDS):
        vec = np.zeros(DIM)
        vec[n % DIM] = 1.0
        await index.add(agent, [f"p{n}"], [vec.tolist()], [f"doc {n}"])
    for n, agent in enumerate(ODD_IDS):
        assert await index.ids(agent) == [f"p{n}"]
    # The exact original id is kept in the collection metadata.
    await index.aclose()
    client = chromadb.PersistentClient(
        path=str(index.path), settings=Settings(anonymized_telemetry=False)
    )
    try:
        stored = {client.get_collection(collection_name(a)).metadata["agent_id"] for a in ODD_IDS}
    finally:
        client.close()
    assert stored == set(ODD_IDS)


# ----------------------------------------------------------------- behaviour


async def test_query_ranks_by_cosine(index: VectorIndex) -> None:
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 50)
    ids = [f"m{i}" for i in range(50)]
    await index.add("dm:1", ids, vecs.tolist(), [f"text {i}" for i in range(50)])
    q = vecs[7] + 0.3 * _unit(rng, 1)[0]
    hits = await index.query("dm:1", q.tolist(), k=5)

    sims = vecs @ (q / np.linalg.norm(q))
    expected = [ids[i] for i in np.argsort(-sims)[:5]]
    assert [h[0] for h in hits] == expected
    assert hits[0][0] == "m7"
    for hit_id, sim in hits:
        assert sim == pytest.approx(sims[ids.index(hit_id)], abs=1e-4)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


async def test_similarity_scale(index: VectorIndex) -> None:
    e = np.eye(DIM)
    await index.add(
        "a",
        ["same", "orth", "opp"],
        [e[0].tolist(), e[1].tolist(), (-e[0]).tolist()],
        ["s", "o", "p"],
    )
    hits = dict(await index.query("a", e[0].tolist(), k=3))
    assert hits["same"] == pytest.approx(1.0, abs=1e-5)
    assert hits["orth"] == pytest.approx(0.0, abs=1e-5)
    assert hits["opp"] == pytest.approx(-1.0, abs=1e-5)


async def test_k_larger_than_collection_and_missing_agent(index: VectorIndex) -> None:
    rng = np.random.default_rng(2)
    await index.add("dm:1", ["a", "b", "c"], _unit(rng, 3).tolist(), ["a", "b", "c"])
    assert len(await index.query("dm:1", _unit(rng, 1)[0].tolist(), k=100)) == 3
    assert await index.query("dm:1", _unit(rng, 1)[0].tolist(), k=0) == []
    assert await index.query("nobody", _unit(rng, 1)[0].tolist(), k=5) == []
    assert await index.count("nobody") == 0
    assert await index.ids("nobody") == []
    await index.delete("nobody", ["a"])
    await index.drop_agent("nobody")
    assert await index.count("nobody") == 0  # lookups never create collections


async def test_count_ids_upsert_delete_drop(index: VectorIndex) -> None:
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 6)
    ids = [f"id{i}" for i in range(6)]
    metas = [{"kind": "note"}, {}, None, {"n": 3}, {}, {"kind": "fact"}]
    await index.add("cli:sam", ids, vecs.tolist(), [f"d{i}" for i in range(6)], metas)
    await index.add("cli:sam", [], [], [])  # no-op
    assert await index.count("cli:sam") == 6
    assert sorted(await index.ids("cli:sam")) == ids

    # Upsert: same id, new vector, count unchanged, query sees the new vector.
    await index.add("cli:sam", ["id0"], [vecs[5].tolist()], ["moved"])
    assert await index.count("cli:sam") == 6
    top = await index.query("cli:sam", vecs[5].tolist(), k=2)
    assert {i for i, _ in top} == {"id0", "id5"}

    await index.delete("cli:sam", ["id1", "id2", "not-there"])
    await index.delete("cli:sam", [])
    assert sorted(await index.ids("cli:sam")) == ["id0", "id3", "id4", "id5"]

    await index.drop_agent("cli:sam")
    assert await index.count("cli:sam") == 0
    await index.drop_agent("cli:sam")  # second drop is fine
    # Writing after a drop recreates the collection.
    await index.add("cli:sam", ["new"], [vecs[0].tolist()], ["again"])
    assert await index.ids("cli:sam") == ["new"]


async def test_mismatched_lengths_rejected(index: VectorIndex) -> None:
    with pytest.raises(ValueError):
        await index.add("a", ["x", "y"], [[1.0] * DIM], ["x", "y"])
    with pytest.raises(ValueError):
        await index.add("a", ["x"], [[1.0] * DIM], ["x"], metadatas=[{}, {}])


async def test_agents_are_isolated(index: VectorIndex) -> None:
    rng = np.random.default_rng(4)
    a_vecs, b_vecs = _unit(rng, 20), _unit(rng, 20)
    await index.add("dm:123", [f"a{i}" for i in range(20)], a_vecs.tolist(), ["a"] * 20)
    # "dm/123" sanitises to the same slug: only the hash keeps it apart.
    await index.add("dm/123", [f"b{i}" for i in range(20)], b_vecs.tolist(), ["b"] * 20)
    for q in b_vecs[:5]:
        hits = await index.query("dm:123", q.tolist(), k=40)
        assert len(hits) == 20
        assert all(i.startswith("a") for i, _ in hits)
    assert await index.count("dm/123") == 20
    await index.drop_agent("dm/123")
    assert await index.count("dm:123") == 20


async def test_concurrent_first_writes_share_one_collection(index: VectorIndex) -> None:
    rng = np.random.default_rng(5)
    vecs = _unit(rng, 40).tolist()
    await asyncio.gather(
        *(index.add("channel:9", [f"c{i}"], [vecs[i]], [str(i)]) for i in range(40))
    )
    assert await index.count("channel:9") == 40


# Reading .configuration of a collection made with embedding_function=None warns; harmless.
@pytest.mark.filterwarnings("ignore:legacy embedding function config")
async def test_persistence_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store"
    rng = np.random.default_rng(6)
    vecs = _unit(rng, 30)
    first = VectorIndex(path=path, hnsw={"ef_search": 64, "ef_construction": 128})
    await first.add("channel:456", [f"p{i}" for i in range(30)], vecs.tolist(), ["x"] * 30)
    await first.aclose()

    second = VectorIndex(path=path)
    try:
        assert await second.count("channel:456") == 30
        hits = await second.query("channel:456", vecs[12].tolist(), k=1)
        assert hits[0][0] == "p12"
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    finally:
        await second.aclose()

    # HNSW settings (and the cosine space) were fixed at creation time.
    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False)
    )
    try:
        hnsw = client.get_collection(collection_name("channel:456")).configuration["hnsw"]
    finally:
        client.close()
    assert hnsw["space"] == "cosine"
    assert hnsw["ef_search"] == 64
    assert hnsw["ef_construction"] == 128


def test_constructor_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cosine"):
        VectorIndex(path=tmp_path, hnsw={"space": "l2"})
    with pytest.raises(ValueError, match="exactly one"):
        VectorIndex()
    with pytest.raises(ValueError, match="exactly one"):
        VectorIndex(path=tmp_path, host="127.0.0.1")


# ----------------------------------------------------------------- chroma server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    venv_exe = Path(sys.executable).with_name("chroma")
    exe = str(venv_exe) if venv_exe.exists() else shutil.which("chroma")
    if exe is None:
        pytest.skip("the chroma CLI is not installed")
    port = _free_port()
    log = (tmp_path / "chroma.log").open("wb")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Readiness: poll the heartbeat, bounded at 30 s.
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited early: {(tmp_path / 'chroma.log').read_text()}")
            try:
                url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
                with urllib.request.urlopen(url, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("chroma server did not become ready in 30 s")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_against_chroma_server(chroma_server: int) -> None:
    rng = np.random.default_rng(7)
    vecs = _unit(rng, 25)
    idx = VectorIndex(host="127.0.0.1", port=chroma_server)
    try:
        await idx.add(
            "dm:42",
            [f"s{i}" for i in range(25)],
            vecs.tolist(),
            ["t"] * 25,
            [{"i": i} for i in range(25)],
        )
        await idx.add("dm:43", ["other"], [vecs[3].tolist()], ["o"])
        hits = await idx.query("dm:42", vecs[3].tolist(), k=50)
        assert len(hits) == 25
        assert hits[0][0] == "s3"
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert await idx.count("dm:42") == 25
        await idx.delete("dm:42", ["s3"])
        assert "s3" not in await idx.ids("dm:42")
        await idx.drop_agent("dm:43")
        assert await idx.query("dm:43", vecs[3].tolist(), k=1) == []
    finally:
        await idx.aclose()

    # A second client sees the same data: the server owns the store.
    again = VectorIndex(host="127.0.0.1", port=chroma_server)
    try:
        assert await again.count("dm:42") == 24
    finally:
        await again.aclose()


async def test_ids_pages_through_large_collections(
    index: VectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shrink the page so paging is exercised without writing 10k vectors.
    monkeypatch.setattr(vectors, "_IDS_PAGE", 7)
    rng = np.random.default_rng(8)
    ids = [f"x{i:02d}" for i in range(23)]
    await index.add("a", ids, _unit(rng, 23).tolist(), ["d"] * 23)
    assert sorted(await index.ids("a")) == ids


# ----------------------------------------------------------------- the Chroma process


async def test_chroma_runs_in_its_own_process_and_comes_back_after_dying(
    index: VectorIndex,
) -> None:
    import os
    import signal

    rng = np.random.default_rng(9)
    vecs = _unit(rng, 5)
    await index.add("dm:7", [f"v{i}" for i in range(5)], vecs.tolist(), ["d"] * 5)
    first = index.pid
    assert first is not None and first != os.getpid()
    assert (await index.stats())["collections"] >= 1

    os.kill(first, signal.SIGKILL)
    # The call finds the process gone, starts another and is done there (every operation is
    # idempotent); what was written is on disk.
    assert await index.count("dm:7") == 5
    assert index.pid not in (None, first)
    hits = await index.query("dm:7", vecs[2].tolist(), k=1)
    assert hits[0][0] == "v2"


async def test_a_failed_chroma_operation_is_reported_not_fatal(index: VectorIndex) -> None:
    await index.add("dm:8", ["a"], [[1.0] + [0.0] * (DIM - 1)], ["a"])
    with pytest.raises(vectors.VectorIndexError, match="dimension"):
        await index.add("dm:8", ["b"], [[1.0, 0.0]], ["b"])  # the collection holds 16-d vectors
    assert await index.count("dm:8") == 1  # the process lives on


async def test_chroma_process_is_restarted_past_its_memory_limit(tmp_path: Path) -> None:
    # A limit every process exceeds (Python alone takes more than 1 MiB), checked on every
    # call of a process of any age: once it holds two collections, each call is followed by a
    # restart, and nothing written is lost.
    index = VectorIndex(path=tmp_path / "chroma", memory_limit_mb=1, check_every=1, min_age=0)
    rng = np.random.default_rng(10)
    vecs = _unit(rng, 3)
    try:
        await index.add("dm:9", ["a", "b", "c"], vecs.tolist(), ["a", "b", "c"])
        assert index.restarts == 0  # one collection: a restart would not make it smaller
        await index.add("dm:10", ["d"], vecs[:1].tolist(), ["d"])
        assert index.restarts == 1 and index.pid is None
        assert await index.count("dm:9") == 3  # a new process, one collection open again
        assert await index.count("dm:10") == 1
        assert index.restarts == 2
        hits = await index.query("dm:9", vecs[1].tolist(), k=1)
        assert hits[0][0] == "b"
    finally:
        await index.aclose()


async def test_a_young_chroma_process_is_not_restarted(tmp_path: Path) -> None:
    index = VectorIndex(path=tmp_path / "chroma", memory_limit_mb=1, check_every=1)
    rng = np.random.default_rng(11)
    try:
        for agent in ("dm:1", "dm:2", "dm:3"):
            await index.add(agent, ["x"], _unit(rng, 1).tolist(), ["x"])
        assert index.restarts == 0 and index.pid is not None
    finally:
        await index.aclose()


async def test_a_hung_chroma_process_is_a_clear_error_then_restarted(tmp_path: Path) -> None:
    import os
    import signal

    # A really hung process: SIGSTOP freezes the worker mid-life, as a deadlock would.
    index = VectorIndex(path=tmp_path / "chroma", call_timeout=3.0)
    rng = np.random.default_rng(12)
    vecs = _unit(rng, 2)
    try:
        await index.add("dm:11", ["a", "b"], vecs.tolist(), ["a", "b"])
        hung = index.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        # The guard only keeps a regression from hanging the suite; the index must answer first.
        with pytest.raises(vectors.VectorIndexError,
                           match=r"did not answer 'query'.*CHROMA_TIMEOUT"):
            await asyncio.wait_for(index.query("dm:11", vecs[0].tolist(), k=1), 120)
        assert index.timeouts == 1
        with pytest.raises(ProcessLookupError):  # killed and reaped, not left frozen
            os.kill(hung, 0)
        index.call_timeout = 120.0  # a fresh process loads the collection: no hurry now
        hits = await index.query("dm:11", vecs[1].tolist(), k=1)
        assert hits[0][0] == "b" and index.pid not in (None, hung)
    finally:
        await index.aclose()
