"""Many conversations at once: throughput against the LLM's concurrency limit, per-agent order,
fairness, a slow agent among fast ones, and raw turns/s with a zero-latency LLM."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.common import SPEC, Dist, Section
from bench.driver import Bench, engine_on
from bench.llm_proc import LLMProcess
from bench.words import kinds, reply_seq, user_text


async def _talk(bench: Bench, agent_id: str, plan: list[str], seed: int,
                latencies: list[float]) -> bool:
    """One person's conversation: each message waits for its answer. Returns whether every
    reply answered the message it followed, in order."""
    rng = random.Random(seed)
    ordered = True
    for seq, kind in enumerate(plan):
        started = time.perf_counter()
        result = await bench.engine.send(agent_id, user_text(kind, seq, rng), sender_name="Bo",
                                         spec=SPEC)
        latencies.append(time.perf_counter() - started)
        ordered &= bool(result.replies) and reply_seq(result.replies[-1]) == seq
    return ordered


async def _stored_in_order(bench: Bench, agent_ids: list[str]) -> bool:
    """In the database, every agent's messages were stored in the order they were sent."""
    rows = await bench.engine.store.fetchall(
        "SELECT agent_id, text FROM messages WHERE kind='user_message' ORDER BY id")
    seen: dict[str, list[int]] = {}
    for agent_id, text in rows:
        seen.setdefault(agent_id, []).append(int(text.split()[1]))
    return all(seen.get(a, []) == sorted(seen.get(a, [])) for a in agent_ids)


async def _many(bench: Bench, count: int, turns: int, *, mix: bool, prefix: str
                ) -> dict[str, Any]:
    latencies: list[float] = []
    agent_ids = [f"{prefix}{i}" for i in range(count)]
    for agent_id in agent_ids:  # created up front: agent creation is not what is measured
        await bench.engine.agent(agent_id, SPEC)
    started = time.perf_counter()
    finished: list[float] = []

    async def one(index: int, agent_id: str) -> bool:
        plan = kinds(turns, seed=index) if mix else ["plain"] * turns
        ordered = await _talk(bench, agent_id, plan, index, latencies)
        finished.append(time.perf_counter() - started)
        return ordered

    ordered = await asyncio.gather(*(one(i, a) for i, a in enumerate(agent_ids)))
    elapsed = time.perf_counter() - started
    dist = Dist.of(latencies)
    return {"turns": len(latencies), "seconds": elapsed, "turns_per_s": len(latencies) / elapsed,
            "p50_s": dist.p50 / 1000, "p95_s": dist.p95 / 1000, "max_s": dist.max / 1000,
            "first_done_s": min(finished), "last_done_s": max(finished),
            "in_order": all(ordered) and await _stored_in_order(bench, agent_ids)}


async def _capped(section: Section, quick: bool) -> dict[str, Any]:
    conversations, turns, latency, limit = (40, 2, 0.1, 8) if quick else (500, 3, 1.0, 64)
    async with LLMProcess(latency) as llm, engine_on(llm.base_url,
                                                     llm_max_concurrency=limit) as bench:
        result = await _many(bench, conversations, turns, mix=False, prefix="dm:c")
        stats = await llm.stats()
    ideal = limit / latency
    result |= {"limit": ideal, "share_of_limit": result["turns_per_s"] / ideal,
               "max_inflight": stats["max_inflight"], "conversations": conversations,
               "latency": latency, "concurrency": limit}
    section.say(
        f"{conversations} conversations x {turns} plain turns, LLM latency {latency:.1f} s,"
        f" LLM_MAX_CONCURRENCY={limit}: {result['turns_per_s']:.1f} turns/s ="
        f" {result['share_of_limit'] * 100:.1f}% of the {ideal:.0f} turns/s limit; server saw at"
        f" most {stats['max_inflight']} calls at once")
    section.say(
        f"turn latency p50 {result['p50_s']:.2f} s, p95 {result['p95_s']:.2f} s, max"
        f" {result['max_s']:.2f} s (queueing for a slot: {conversations}/{limit} x {latency} s ="
        f" {conversations / limit * latency:.1f} s expected); conversations finished between"
        f" {result['first_done_s']:.1f} s and {result['last_done_s']:.1f} s;"
        f" per-agent order kept: {result['in_order']}")
    return result


async def _slow(section: Section, quick: bool) -> dict[str, Any]:
    count, turns, latency, slow = (5, 3, 0.05, 1.0) if quick else (40, 10, 0.05, 10.0)
    figures: dict[str, Any] = {"slow_seconds": slow}
    for with_slow in (False, True):
        async with LLMProcess(latency, slow_seconds=slow) as llm, engine_on(
                llm.base_url, llm_max_concurrency=64) as bench:
            latencies: list[float] = []
            await bench.engine.agent("dm:slow", SPEC)
            for i in range(count):
                await bench.engine.agent(f"dm:fast{i}", SPEC)
            jobs = [_talk(bench, f"dm:fast{i}", ["plain"] * turns, i, latencies)
                    for i in range(count)]
            slow_latency: list[float] = []
            if with_slow:
                jobs.append(_talk(bench, "dm:slow", ["slow"] * 2, 99, slow_latency))
            await asyncio.gather(*jobs)
            dist = Dist.of(latencies)
            key = "with_slow" if with_slow else "without_slow"
            figures |= {f"{key}_p50": dist.p50, f"{key}_p95": dist.p95, f"{key}_max": dist.max}
            if with_slow:
                figures["slow_turn_s"] = min(slow_latency)
    section.say(
        f"{count} fast conversations x {turns} turns (LLM {latency * 1000:.0f} ms) next to one"
        f" agent whose calls take {slow:.0f} s: fast turns p50 {figures['with_slow_p50']:.0f} ms,"
        f" p95 {figures['with_slow_p95']:.0f} ms (alone: {figures['without_slow_p50']:.0f} /"
        f" {figures['without_slow_p95']:.0f} ms); the slow agent's turns took"
        f" {figures['slow_turn_s']:.1f} s")
    return figures


async def _zero(section: Section, quick: bool) -> dict[str, Any]:
    count, turns = (10, 4) if quick else (100, 20)
    figures: dict[str, Any] = {}
    for mix in (True, False):
        async with LLMProcess(0.0) as llm, engine_on(llm.base_url,
                                                     llm_max_concurrency=64) as bench:
            result = await _many(bench, count, turns, mix=mix, prefix="dm:z")
            await bench.engine.archival.flush()
        label = "mix" if mix else "plain"
        figures |= {f"{label}_turns_per_s": result["turns_per_s"],
                    f"{label}_p50_ms": result["p50_s"] * 1000,
                    f"{label}_p95_ms": result["p95_s"] * 1000, f"{label}_in_order":
                    result["in_order"]}
        section.say(f"zero-latency LLM, {count} agents x {turns} turns ({label}):"
                    f" {result['turns_per_s']:.0f} turns/s; turn latency p50"
                    f" {result['p50_s'] * 1000:.1f} ms, p95 {result['p95_s'] * 1000:.1f} ms;"
                    f" order kept: {result['in_order']}")
    return figures


async def run(quick: bool) -> Section:
    section = Section("Concurrency", (
        "each conversation sends its next message when the previous one is answered; LLM in its"
        " own process; turns counted as answered messages"))
    section.figures = {"capped": await _capped(section, quick),
                       "slow": await _slow(section, quick),
                       "zero": await _zero(section, quick)}
    return section
