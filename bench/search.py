"""Search at scale: archival_memory_search over 1,000,000 passages in 1,000 agents and
conversation_search over 1,000,000 messages, through the public RecallMemory / ArchivalMemory
APIs; insert throughput and disk per 100k items."""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import populate
from bench.common import Dist, Section, du_mib
from bench.driver import engine_on
from bench.llm_proc import LLMProcess
from bench.words import query

DATA: Path | None = None  # set by `python -m bench --data DIR` to keep (and reuse) the dataset


async def _fill(bench: Any, agents: int, passages: int, messages: int,
                section: Section) -> dict[str, float]:
    engine = bench.engine
    db, chroma = engine.settings.db_path, engine.settings.chroma_dir
    marker = bench.data_dir / f"filled-{agents}x{passages}x{messages}.json"
    if marker.exists():
        section.say(f"reusing the dataset in {bench.data_dir} (insert figures from its fill)")
        return dict(json.loads(marker.read_text(encoding="utf-8")))
    figures: dict[str, float] = {}
    before_db = du_mib(db.parent) - du_mib(chroma)
    started = time.perf_counter()
    for index in range(agents):
        await populate.passages(engine, f"dm:{index}", passages, seed=index)
        if index % max(1, agents // 10) == 0:
            done = (index + 1) * passages
            section.say(f"  ... {done:,} passages, {done / (time.perf_counter() - started):,.0f}/s")
    await engine.store.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - started
    total = agents * passages
    figures["passage_rate"] = total / seconds
    sqlite_growth = du_mib(db.parent) - du_mib(chroma) - before_db
    figures["passage_mib_per_100k"] = (du_mib(chroma) + sqlite_growth) / total * 100_000
    figures["passage_chroma_mib_per_100k"] = du_mib(chroma) / total * 100_000
    section.say(f"archival: {total:,} passages in {seconds:.0f} s ({figures['passage_rate']:,.0f}"
                f"/s incl. SQLite rows); disk {figures['passage_mib_per_100k']:.0f} MiB per 100k"
                f" (Chroma {figures['passage_chroma_mib_per_100k']:.0f})")
    before = du_mib(db.parent) - du_mib(chroma)
    started = time.perf_counter()
    stored = 0
    for index in range(agents):
        filled = await populate.history(engine, f"dm:{index}", messages, seed=index)
        stored += filled.rows
    await engine.store.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - started
    figures["message_rate"] = stored / seconds
    figures["message_mib_per_100k"] = (du_mib(db.parent) - du_mib(chroma) - before) / stored \
        * 100_000
    section.say(f"recall: {stored:,} messages in {seconds:.0f} s ({figures['message_rate']:,.0f}"
                f"/s with FTS and counters); disk {figures['message_mib_per_100k']:.0f} MiB per"
                " 100k")
    marker.write_text(json.dumps(figures), encoding="utf-8")
    return figures


async def _searches(search: Any, agents: list[str], rng: random.Random, embedder: Any
                    ) -> tuple[list[float], list[float]]:
    """One search per agent: wall times, and wall minus the embedding endpoint's time."""
    walls, own = [], []
    for agent_id in agents:
        waited = embedder.seconds
        started = time.perf_counter()
        page = await search(agent_id, query(rng))
        wall = time.perf_counter() - started
        assert page.total >= 0
        walls.append(wall)
        own.append(wall - (embedder.seconds - waited))
    return walls, own


async def run(quick: bool) -> Section:
    agents, passages, messages = (8, 200, 300) if quick else (1_000, 1_000, 1_000)
    sample = 8 if quick else 300
    section = Section("Search at scale", (
        f"{agents:,} agents x {passages:,} archival passages (synthetic 384-d vectors, one Chroma"
        f" collection per agent) and x {messages:,} messages (real FTS rows); {sample} agents"
        " searched, each first after an engine start (cold) then again (warm); queries are two"
        " content words; embeddings from the scripted endpoint, reported apart"))
    figures: dict[str, Any] = {"agents": agents, "passages": agents * passages,
                               "messages": agents * (messages // 3) * 3}
    with tempfile.TemporaryDirectory(prefix="mnemocord-search-") as scratch:
        folder = DATA / ("quick" if quick else "full") if DATA else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        figures |= await _measure(section, folder, agents, passages, messages, sample)
    section.figures = figures
    return section


async def _measure(section: Section, folder: Path, agents: int, passages: int, messages: int,
                   sample: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with LLMProcess(0.0) as llm:
        async with engine_on(llm.base_url, folder) as bench:
            figures |= await _fill(bench, agents, passages, messages, section)
        rng = random.Random(5)
        chosen = rng.sample([f"dm:{i}" for i in range(agents)], sample)
        async with engine_on(llm.base_url, folder) as bench:  # a fresh start: cold
            engine = bench.engine
            for label, search in (("archival", engine.archival.search),
                                  ("recall", engine.recall.search)):
                cold, _ = await _searches(search, chosen, rng, bench.embedder)
                warm, warm_own = await _searches(search, chosen, rng, bench.embedder)
                figures |= {f"{label}_cold_p50": Dist.of(cold).p50,
                            f"{label}_cold_p95": Dist.of(cold).p95,
                            f"{label}_p50": Dist.of(warm).p50, f"{label}_p95": Dist.of(warm).p95,
                            f"{label}_own_p50": Dist.of(warm_own).p50,
                            f"{label}_own_p95": Dist.of(warm_own).p95}
                section.say(f"{label} search: warm {Dist.of(warm)}; without the query embedding"
                            f" p50 {Dist.of(warm_own).p50:.2f} / p95 {Dist.of(warm_own).p95:.2f}"
                            f" ms; cold (first search of the agent) {Dist.of(cold)}")
    return figures
