"""Overhead per turn: wall time minus the time spent waiting on the LLM, zero-latency LLM, from an
empty agent to one with 10,000 messages of history and 100,000 archival passages."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from bench import populate
from bench.common import SPEC, Dist, Section, child_cpu_seconds
from bench.driver import Bench, Turn, conversation, engine_on, in_order
from bench.llm_proc import LLMProcess

# (label, messages of history, archival passages)
FULL = [("empty", 0, 0), ("1k msgs / 10k passages", 1_000, 10_000),
        ("10k msgs / 100k passages", 10_000, 100_000)]
QUICK = [("empty", 0, 0), ("300 msgs / 500 passages", 300, 500)]
LATENCY = 0.05  # a fast real LLM still takes this long
CONTEXT_FILL = 0.55  # the queue starts at 55% of the usable window: past the summary target,
# short of the memory-pressure warning; the heaviest context a healthy agent carries


def _figures(turns: list[Turn]) -> dict[str, float]:
    every = Dist.of([t.overhead for t in turns])
    plain = Dist.of([t.overhead for t in turns if t.kind == "plain"])
    own = Dist.of([t.own for t in turns])
    strict = Dist.of([t.strict for t in turns if t.strict is not None])
    return {"p50": every.p50, "p95": every.p95, "max": every.max,
            "plain_p50": plain.p50, "plain_p95": plain.p95,
            "own_p50": own.p50, "own_p95": own.p95,
            "strict_p50": strict.p50, "strict_p95": strict.p95,
            "llm_p50": Dist.of([t.llm for t in turns]).p50,
            "cpu_p50": Dist.of([t.cpu for t in turns]).p50,
            "cpu_p95": Dist.of([t.cpu for t in turns]).p95,
            "wall_p50": Dist.of([t.wall for t in turns]).p50,
            "plain_turns_with_extra_calls": sum(
                1 for t in turns if t.kind == "plain" and t.calls > 1)}


def _overlap(turns: list[Turn]) -> dict[str, float]:
    """Turns right after an archival insert overlap its Chroma write (in the background, 10-30
    ms of work in the Chroma process): split them out to show what that costs."""
    pairs = list(itertools.pairwise(turns))
    after = [t.overhead for prev, t in pairs if prev.kind == "archive"]
    rest = [turns[0].overhead] + [t.overhead for prev, t in pairs if prev.kind != "archive"]
    return {"after_archive_p50": Dist.of(after).p50, "others_p50": Dist.of(rest).p50,
            "others_p95": Dist.of(rest).p95}


async def run(quick: bool) -> Section:
    sizes = QUICK if quick else FULL
    turns, warmup = (40, 5) if quick else (400, 20)
    section = Section("Overhead per turn", (
        f"zero-latency LLM in its own process; {turns} turns of the 70/10/10/10 mix per size after"
        f" {warmup} warm-up turns; gpt-4o-mini budget (128k window), history queue filled to"
        f" {int(CONTEXT_FILL * 100)}% of it; synthetic 384-d archival vectors"))
    by_size: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mnemocord-overhead-") as scratch:
        async with LLMProcess(0.0) as llm, engine_on(llm.base_url, Path(scratch)) as bench:
            await _sizes(section, bench, llm, sizes, turns, warmup, by_size)
        slow = await _with_latency(section, Path(scratch), len(sizes) - 1, turns // 2)
    first, last = by_size[sizes[0][0]], by_size[sizes[-1][0]]
    growth50 = last["p50"] / first["p50"] if first["p50"] else 0.0
    growth95 = last["p95"] / first["p95"] if first["p95"] else 0.0
    section.say(f"growth from {sizes[0][0]} to {sizes[-1][0]}: p50 x{growth50:.2f},"
                f" p95 x{growth95:.2f}")
    section.figures = {"sizes": by_size, "largest": sizes[-1][0], "growth_p50": growth50,
                       "growth_p95": growth95, "with_latency": slow}
    return section


async def _with_latency(section: Section, data: Path, index: int, turns: int
                        ) -> dict[str, float]:
    """The largest agent again with a 50 ms LLM: background work then overlaps the wait."""
    async with LLMProcess(LATENCY) as llm, engine_on(llm.base_url, data) as bench:
        done = await conversation(bench, f"cli:size{index}", turns, seed=5, first_seq=20_000,
                                  server=llm)
    figures = _figures(done)
    section.say(f"the same agent with a {LATENCY * 1000:.0f} ms LLM ({turns} turns): overhead"
                f" {figures['p50']:.2f} ms p50, {figures['p95']:.2f} ms p95 (strict"
                f" {figures['strict_p50']:.2f} / {figures['strict_p95']:.2f}); process CPU per"
                f" turn {figures['cpu_p50']:.2f} / {figures['cpu_p95']:.2f} ms")
    return figures


async def _sizes(section: Section, bench: Bench, llm: LLMProcess,
                 sizes: list[tuple[str, int, int]], turns: int,
                 warmup: int, by_size: dict[str, dict[str, float]]) -> None:
    engine = bench.engine
    fill = int(engine.context.budget.usable * CONTEXT_FILL)
    for index, (label, messages, passages) in enumerate(sizes):
        agent_id = f"cli:size{index}"
        await engine.agent(agent_id, SPEC)
        if messages:
            filled = await populate.history(engine, agent_id, messages, context_tokens=fill,
                                            spec=SPEC)
            section.say(f"[{label}] history: {filled.rows} messages stored in"
                        f" {filled.seconds:.1f} s; {len((await engine.agent(agent_id)).queue)}"
                        " of them in context")
        if passages:
            filled = await populate.passages(engine, agent_id, passages)
            section.say(f"[{label}] archival: {filled.rows} passages in {filled.seconds:.1f} s")
            await engine.reload(agent_id)
        await conversation(bench, agent_id, warmup, seed=99, first_seq=10_000)
        chroma, chroma_cpu = engine.vectors.pid, child_cpu_seconds(engine.vectors.pid)
        done = await conversation(bench, agent_id, turns, server=llm)
        await engine.archival.flush()
        chroma_cpu = child_cpu_seconds(engine.vectors.pid) - chroma_cpu
        figures = _figures(done) | _overlap(done)
        # (not known if the Chroma process was restarted meanwhile: NaN)
        figures["chroma_cpu_per_turn_ms"] = (chroma_cpu / len(done) * 1000
                                             if chroma == engine.vectors.pid else float("nan"))
        figures["chroma_restarts"] = engine.vectors.restarts
        figures["in_order"] = float(in_order(done))
        by_size[label] = figures
        section.say(f"[{label}] overhead {figures['p50']:.2f} ms p50, {figures['p95']:.2f} ms"
                    f" p95, max {figures['max']:.1f} ms; plain chat {figures['plain_p50']:.2f}"
                    f" / {figures['plain_p95']:.2f} ms; without embedding waits"
                    f" {figures['own_p50']:.2f} / {figures['own_p95']:.2f} ms; strict"
                    " (wall minus the LLM server's own time: the HTTP client counted as ours)"
                    f" {figures['strict_p50']:.2f} / {figures['strict_p95']:.2f} ms;"
                    f" LLM wait p50 {figures['llm_p50']:.2f} ms; process CPU per turn"
                    f" {figures['cpu_p50']:.2f} / {figures['cpu_p95']:.2f} ms (and"
                    f" {figures['chroma_cpu_per_turn_ms']:.2f} ms a turn on average in the"
                    " Chroma process);"
                    f" plain turns with more"
                    f" than one LLM call (a summary when the window filled):"
                    f" {figures['plain_turns_with_extra_calls']:.0f}")
        section.say(f"[{label}] turns right after an archival insert (its Chroma write"
                    f" runs meanwhile): p50 {figures['after_archive_p50']:.2f} ms; all"
                    f" others: p50 {figures['others_p50']:.2f} ms, p95"
                    f" {figures['others_p95']:.2f} ms")
