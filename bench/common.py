"""What every benchmark shares: settings for an engine on the scripted server, percentiles,
memory readings and a timing wrapper for the embedder."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import REPO_ROOT, Settings
from bot.embeddings import Embedder, TiktokenSplitter, embedding_window_for
from bot.engine import AgentSpec

SPEC = AgentSpec(name="Sam", persona="sam", human="basic")
RESULTS = REPO_ROOT / "bench" / "results"


def settings_for(base_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """An engine configured like production, except that the LLM and the embeddings endpoint are
    the scripted server (embeddings over HTTP: the query vectors are the provider's work)."""
    values: dict[str, Any] = {
        "llm_base_url": base_url,
        "llm_api_key": "sk-bench",
        "llm_model": "gpt-4o-mini",
        "llm_max_retries": 0,
        "embedding_provider": "openai",
        "embedding_model": "scripted-embedding",
        "embedding_base_url": base_url,
        "recall_embeddings": "off",
        "data_dir": data_dir,
        "personas_dir": REPO_ROOT / "personas",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


class HTTPEmbedder:
    """The embeddings endpoint of the scripted server, over a bare aiohttp session.

    Embedding is the provider's work, like the LLM's: the benchmarks time it separately and keep
    the client thin. (The production OpenAIEmbedder goes through the `openai` SDK, whose request
    layer costs about as much as an LLM request's: the `micro` section.)
    """

    def __init__(self, base_url: str, model: str = "scripted-embedding") -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model_id = f"openai:{model}"
        self.model = model
        self._session: aiohttp.ClientSession | None = None
        self._splitter: TiktokenSplitter | None = None

    async def splitter(self) -> TiktokenSplitter:
        """Documents are cut as for OpenAIEmbedder with this model (tiktoken tokens)."""
        if self._splitter is None:
            self._splitter = await asyncio.to_thread(
                TiktokenSplitter, self.model, embedding_window_for(self.model))
        return self._splitter

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = json.dumps({"model": self.model, "input": [t or " " for t in texts]})
        async with self._session.post(self.url, data=body,
                                      headers={"Content-Type": "application/json"}) as response:
            response.raise_for_status()
            data = sorted(json.loads(await response.read())["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class TimedEmbedder:
    """Wraps an embedder and adds up the time spent waiting for it (the provider's time)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.seconds = 0.0
        self.calls = 0
        self.splitter = inner.splitter

    async def embed(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return await self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Dist:
    """Median, p95 and max of a list of durations (in milliseconds)."""

    p50: float
    p95: float
    max: float
    n: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Dist:
        ms = [s * 1000 for s in seconds]
        middle = statistics.median(ms) if ms else 0.0
        return cls(middle, percentile(ms, 95), max(ms, default=0.0), len(ms))

    def __str__(self) -> str:
        return f"p50 {self.p50:.2f} ms, p95 {self.p95:.2f} ms, max {self.max:.1f} ms (n={self.n})"


@dataclass
class Section:
    """One benchmark's printed figures and its machine-readable results."""

    name: str
    conditions: str = ""
    lines: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(f"  {text}", flush=True)


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of a process, in MiB (Linux)."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child_cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of another process, e.g. the Chroma process; 0 if gone. Its
    resolution is a clock tick (10 ms): sum it over many turns, don't read it per turn."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def du_mib(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
    return total / 2**20


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                      if line.startswith("Model name")), model)
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }
