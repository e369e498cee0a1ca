"""Sentence embeddings for archival memory.

Two backends share one small protocol: a local ONNX sentence model run on CPU
(all-MiniLM-L6-v2 by default) and any OpenAI-compatible ``/v1/embeddings``
endpoint. Every returned vector is L2-normalised so cosine similarity is a dot
product, and every blocking call runs off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from bot.embedding_tokens import (
    TiktokenSplitter,
    TokenSplitter,
    WordpieceSplitter,
    embedding_window_for,
)
from bot.redact import redact

if TYPE_CHECKING:
    import onnxruntime
    import openai
    from tokenizers import Encoding, Tokenizer

log = logging.getLogger(__name__)

HF_REPO = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_URL = f"https://huggingface.co/{HF_REPO}/resolve/main/onnx/model.onnx"
DEFAULT_TOKENIZER_URL = f"https://huggingface.co/{HF_REPO}/resolve/main/tokenizer.json"
DEFAULT_LOCAL_MODEL_ID = "all-MiniLM-L6-v2"

# Output names used by sentence-transformers / optimum ONNX exports, in preference order.
_TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")
_POOLED_OUTPUTS = ("sentence_embedding", "pooler_output")


class EmbeddingError(RuntimeError):
    """An embedding backend could not produce vectors (model missing, API failure...).

    ``rejected``: the backend refused these inputs (HTTP 400/413/422), so sending the same ones
    again cannot help; other failures (network, 5xx, 429, a missing model) may pass.
    """

    def __init__(self, message: str, *, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


# Statuses that say "this input", not "this server" or "this key": retrying cannot help.
_REJECTED_STATUSES = frozenset({400, 413, 422})


@runtime_checkable
class Embedder(Protocol):
    model_id: str  # stored alongside vectors so a model change is detectable

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in input order; a text longer than the
        model's window is clipped to it (never an error)."""
        ...

    async def splitter(self) -> TokenSplitter:
        """The model's tokenizer (loaded on first use), to cut documents into passages."""
        ...

    async def aclose(self) -> None: ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    # An all-zero vector stays zero instead of becoming NaN.
    return matrix / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------- local ONNX


def _find_onnx(model_dir: Path) -> Path:
    for candidate in (model_dir / "model.onnx", model_dir / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    found = sorted(model_dir.glob("*.onnx"))
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise EmbeddingError(f"{model_dir} holds several ONNX files ({names}); name one model.onnx")
    raise EmbeddingError(f"no ONNX model (model.onnx, *.onnx or onnx/model.onnx) in {model_dir}")


def _local_files(model_dir: Path) -> tuple[Path, Path]:
    if not model_dir.is_dir():
        raise EmbeddingError(f"embedding model directory {model_dir} does not exist")
    tokenizer = model_dir / "tokenizer.json"
    if not tokenizer.is_file():
        raise EmbeddingError(f"no tokenizer.json in {model_dir}")
    return _find_onnx(model_dir), tokenizer


def _download(url: str, dest: Path, timeout: float) -> None:
    """Fetch ``url`` into ``dest`` atomically: a crash never leaves a half file behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp_name, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise EmbeddingError(
            f"could not download {url} to {dest}: {exc}. If this machine is offline, "
            "download model.onnx and tokenizer.json elsewhere and point the embedding "
            "model directory setting at them."
        ) from exc
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


class _LoadedModel:
    """A ready ONNX session + tokenizer. Only touched from the inference thread."""

    def __init__(
        self, model_path: Path, tokenizer_path: Path, max_tokens: int, threads: int | None
    ):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer: Tokenizer = Tokenizer.from_file(str(tokenizer_path))
        padding = self.tokenizer.padding
        if padding:
            self.pad_id = int(padding["pad_id"])
        else:
            self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        # tokenizer.json often ships fixed padding to 128: we pad per batch ourselves.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # Spinning worker threads fight the event loop and SQLite for a small machine's cores:
        # on 2 cores a one-query embedding took 15 ms p50 / 23 ms p95 spinning, 8 / 9 ms not.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: onnxruntime.InferenceSession = ort.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.output, self.pooled = self._pick_output(outputs)

    @staticmethod
    def _pick_output(outputs: list[str]) -> tuple[str, bool]:
        for name in _TOKEN_OUTPUTS:
            if name in outputs:
                return name, False
        for name in _POOLED_OUTPUTS:
            if name in outputs:
                return name, True
        return outputs[0], False

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        # Similar lengths share a batch so dynamic padding wastes little compute.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        result: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            vectors = self._run([encodings[i] for i in idx])
            if result is None:
                result = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            result[idx] = vectors
        assert result is not None
        return result

    def _run(self, batch: Sequence[Encoding]) -> np.ndarray:
        width = max(len(e.ids) for e in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        for row, enc in enumerate(batch):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        # Some exports drop token_type_ids; feed exactly what the graph declares.
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        out = self.session.run([self.output], feeds)
        hidden = out[0].astype(np.float32)
        if self.pooled or hidden.ndim == 2:
            return _normalise(hidden)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)


class LocalEmbedder:
    """An all-MiniLM-L6-v2-style ONNX sentence model on CPU.

    Loads lazily on the first ``embed``; if ``model_dir`` is None the model and
    tokenizer are downloaded once into ``cache_dir / "all-MiniLM-L6-v2"``.
    Inference runs on one dedicated thread, and onnxruntime itself uses one
    core by default (``threads``): on a 2-core machine a second intra-op thread
    made batches no faster (28.5 vs 29.0 ms per chat turn) but took the core
    that SQLite and the event loop need while a search embeds its query.
    """

    def __init__(
        self,
        model_dir: Path | None,
        cache_dir: Path,
        max_tokens: int = 256,
        batch_size: int = 32,
        threads: int | None = 1,
        *,
        model_id: str | None = None,
        model_url: str = DEFAULT_MODEL_URL,
        tokenizer_url: str = DEFAULT_TOKENIZER_URL,
        download_timeout: float = 60.0,
    ) -> None:
        if max_tokens < 2 or batch_size < 1:
            raise ValueError("max_tokens must be >= 2 and batch_size >= 1")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.cache_dir = Path(cache_dir)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.threads = threads
        self.model_url = model_url
        self.tokenizer_url = tokenizer_url
        self.download_timeout = download_timeout
        if model_id is None:
            model_id = f"local:{self.model_dir.name}" if self.model_dir else DEFAULT_LOCAL_MODEL_ID
        self.model_id = model_id
        self.load_count = 0  # how many times the model was actually loaded (tests, diagnostics)
        self._model: _LoadedModel | None = None
        self._splitter: WordpieceSplitter | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _ensure_files(self) -> tuple[Path, Path]:
        if self.model_dir is not None:
            return await asyncio.to_thread(_local_files, self.model_dir)
        target = self.cache_dir / DEFAULT_LOCAL_MODEL_ID
        model, tokenizer = target / "model.onnx", target / "tokenizer.json"
        for url, dest in ((self.tokenizer_url, tokenizer), (self.model_url, model)):
            if not dest.is_file():
                log.info("downloading %s to %s", url, dest)
                await asyncio.to_thread(_download, url, dest, self.download_timeout)
        return model, tokenizer

    async def _ensure_loaded(self) -> _LoadedModel:
        if self._model is not None:
            return self._model
        async with self._lock:
            if self._model is None:  # another caller may have loaded it while we waited
                model_path, tokenizer_path = await self._ensure_files()
                try:
                    self._model = await self._run(
                        _LoadedModel, model_path, tokenizer_path, self.max_tokens, self.threads
                    )
                except EmbeddingError:
                    raise
                except Exception as exc:
                    msg = f"could not load embedding model {model_path}: {exc}"
                    raise EmbeddingError(msg) from exc
                self.load_count += 1
            return self._model

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._closed:
            raise EmbeddingError("embedder is closed")
        if not texts:
            return []
        model = await self._ensure_loaded()
        # The tokenizer truncates every input to max_tokens: a long text is clipped, not refused.
        vectors: np.ndarray = await self._run(model.encode, list(texts), self.batch_size)
        return vectors.tolist()

    async def splitter(self) -> TokenSplitter:
        if self._splitter is None:
            _, tokenizer_path = await self._ensure_files()
            loaded = await asyncio.to_thread(WordpieceSplitter, tokenizer_path, self.max_tokens)
            self._splitter = self._splitter or loaded
        return self._splitter

    async def aclose(self) -> None:
        self._closed = True
        self._model = None
        # Don't wait: an in-flight batch finishes on its own thread, the loop stays free.
        self._executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- OpenAI-compatible


def _parse_embeddings(raw: bytes, expected: int) -> list[list[float]]:
    """The normalised vectors of an OpenAI-shaped /v1/embeddings answer, in input order."""
    try:
        data = sorted(json.loads(raw)["data"], key=lambda d: d["index"])
        indexes = [d["index"] for d in data]
        matrix = np.asarray([d["embedding"] for d in data], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise EmbeddingError(f"embedding endpoint returned an unreadable answer: {exc}") from exc
    if indexes != list(range(expected)) or matrix.ndim != 2:
        raise EmbeddingError(f"embedding endpoint returned {len(data)} vectors for {expected}"
                             " inputs")
    return _normalise(matrix).tolist()


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint.

    The client is borrowed (it is usually shared with chat completions), so
    ``aclose`` leaves it open. ``max_input_tokens`` is the model's window (None: OpenAI's
    documented limit for its models, else a conservative 512); longer inputs are clipped to it,
    as OpenAI rejects them (400 "maximum context length is 8192 tokens").
    """

    def __init__(self, client: openai.AsyncOpenAI, model: str, batch_size: int = 256,
                 max_input_tokens: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_input_tokens is not None and max_input_tokens < 1:
            raise ValueError("max_input_tokens must be >= 1")
        self.client = client
        self.model = model
        self.batch_size = batch_size
        self.model_id = f"openai:{model}"
        self.window = max_input_tokens or embedding_window_for(model)
        self._splitter: TiktokenSplitter | None = None

    async def splitter(self) -> TiktokenSplitter:
        if self._splitter is None:  # loading an encoding takes ~0.7 s: off the loop
            loaded = await asyncio.to_thread(TiktokenSplitter, self.model, self.window)
            self._splitter = self._splitter or loaded
        return self._splitter

    async def _clipped(self, texts: list[str]) -> list[str]:
        # A text of at most `window` UTF-8 bytes has at most `window` tokens: no need to count.
        if all(len(t) <= self.window and len(t.encode()) <= self.window for t in texts):
            return texts
        splitter = await self.splitter()
        return await asyncio.to_thread(lambda: [splitter.clip(t) for t in texts])

    async def embed(self, texts: list[str]) -> list[list[float]]:
        import openai

        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            # Most servers reject empty input strings; a space embeds as "nothing".
            batch = [t if t else " " for t in texts[start : start + self.batch_size]]
            batch = await self._clipped(batch)
            body = json.dumps({"model": self.model, "input": batch, "encoding_format": "float"})
            try:
                # The raw bytes: the SDK's response models check every float through typing
                # introspection, 1-2 s of the event loop for one batch of 256 (a 2 MB /attach
                # sends 15); the JSON is parsed on a thread instead.
                raw = await self.client.post(
                    "/embeddings", cast_to=bytes, content=body.encode(),
                    options={"headers": {"Content-Type": "application/json"}},
                )
            except openai.APIError as exc:
                # Servers echo (parts of) the API key in errors: never carry that along.
                msg = f"embedding request to model {self.model!r} failed: {redact(str(exc))}"
                status = getattr(exc, "status_code", None)
                raise EmbeddingError(msg, rejected=status in _REJECTED_STATUSES) from exc
            vectors.extend(await asyncio.to_thread(_parse_embeddings, raw, len(batch)))
        return vectors

    async def aclose(self) -> None:
        return None


def make_embedder(
    provider: str,
    *,
    model_dir: Path | None = None,
    cache_dir: Path | None = None,
    openai_client: openai.AsyncOpenAI | None = None,
    openai_model: str | None = None,
    openai_max_input_tokens: int | None = None,
) -> Embedder:
    """Build the embedder named by ``provider`` ("local" or "openai")."""
    kind = provider.strip().lower()
    if kind == "local":
        if cache_dir is None:
            if model_dir is None:
                raise ValueError("the local embedder needs model_dir or cache_dir")
            cache_dir = Path(model_dir)  # nothing is downloaded when model_dir is set
        return LocalEmbedder(Path(model_dir) if model_dir else None, Path(cache_dir))
    if kind == "openai":
        if openai_client is None or not openai_model:
            raise ValueError("the openai embedder needs openai_client and openai_model")
        return OpenAIEmbedder(openai_client, openai_model,
                              max_input_tokens=openai_max_input_tokens)
    raise ValueError(f"unknown embedding provider {provider!r}; expected 'local' or 'openai'")
