"""Footprint: resident memory with 10,000 agents in the database and 500 of them active, idle
agents leaving memory, and start-up to ready. Measured in a fresh child process so the figures are
the bot's alone (not the benchmark's, nor the LLM server's)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import populate
from bench.common import Section
from bench.driver import engine_on
from bench.llm_proc import LLMProcess

AGENT_MESSAGES = 30  # ten past turns each, all in context
PASSAGES = 20  # archival passages of each of the first 2 x ACTIVE agents


async def _spawn(base_url: str, data: Path, agents: int, active: int, touch: int,
                 max_loaded: int) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.footprint_child", base_url, str(data), str(agents),
            str(active), str(touch)]
    if not agents:
        args[3:] = ["--ready", base_url, str(data)]
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE,
        env={**_env(), "MAX_LOADED_AGENTS": str(max_loaded)})
    assert proc.stdout is not None
    stages: dict[str, Any] = {}
    while line := await proc.stdout.readline():
        stage = json.loads(line)
        stage["at"] = time.perf_counter() - started
        stages[stage.pop("stage")] = stage
    if await proc.wait() != 0:
        raise RuntimeError(f"footprint child failed ({proc.returncode})")
    return stages


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DATABASE_"))}


async def run(quick: bool) -> Section:
    agents, active, touch, max_loaded = (300, 20, 60, 30) if quick else (
        10_000, 500, 3_000, 1_000)
    archives = 2 * active
    section = Section("Footprint and start-up", (
        f"{agents:,} agents stored ({AGENT_MESSAGES} messages each, all in context; the first"
        f" {2 * active:,} with {PASSAGES} archival passages), a fresh"
        f" process serves {active} at once (3 mixed turns each), then {touch:,} others one"
        f" message each; MAX_LOADED_AGENTS={max_loaded}; zero-latency LLM; RSS of the bot"
        " process and of its Chroma process"))
    with tempfile.TemporaryDirectory(prefix="mnemocord-footprint-") as scratch:
        data = Path(scratch)
        async with LLMProcess(0.0) as llm:
            async with engine_on(llm.base_url, data) as bench:
                filled = await populate.agents(bench.engine, agents, messages=AGENT_MESSAGES)
                for index in range(archives):
                    await populate.passages(bench.engine, f"dm:{index}", PASSAGES, seed=index)
            section.say(f"stored {agents:,} agents in {filled.seconds:.1f} s; the first"
                        f" {archives:,} have {PASSAGES} archival passages each")
            stages = await _spawn(llm.base_url, data, agents, active, touch, max_loaded)
            # Start-up again, alone, a few times: one spawn is at the mercy of the machine.
            starts = [(await _spawn(llm.base_url, data, 0, 0, 0, max_loaded))["ready"]["at"]
                      for _ in range(2 if quick else 5)]
    ready, first = stages["ready"], stages["first_reply"]
    plain, serving, touched = stages["active_plain"], stages["active"], stages["touched"]
    figures = {"agents": agents, "active": active, "max_loaded": max_loaded,
               "ready_s": statistics.median(starts), "ready_max_s": max(starts),
               "starts": len(starts),
               "ready_in_run_s": ready["at"], "first_reply_s": first["at"],
               "rss_ready": ready["rss"],
               # The bot and its Chroma process together: what the machine must hold.
               "rss_plain_mib": plain["rss"] + plain["index_rss"],
               "rss_mib": serving["rss"] + serving["index_rss"],
               "rss_bot_mib": serving["rss"], "rss_index_mib": serving["index_rss"],
               "indexes_open": serving["indexes"], "loaded_active": serving["loaded"],
               "rss_after": touched["rss"] + touched["index_rss"], "peak_mib": touched["peak"],
               "loaded_after": touched["loaded"], "index_restarts": touched["restarts"]}
    section.say(f"start-up: ready {ready['at']:.2f} s after spawn (RSS {ready['rss']:.0f} MiB),"
                f" first reply at {first['at']:.2f} s; {len(starts)} more starts: median"
                f" {figures['ready_s']:.2f} s, max {figures['ready_max_s']:.2f} s")
    section.say(f"{active} active agents, 3 plain turns each ({plain['seconds']:.1f} s): RSS"
                f" {plain['rss']:.0f} MiB bot + {plain['index_rss']:.0f} MiB Chroma process with"
                f" {plain['loaded']} agents loaded")
    section.say(f"then 3 mixed turns each ({serving['seconds']:.1f} s): RSS {serving['rss']:.0f}"
                f" MiB bot + {serving['index_rss']:.0f} MiB Chroma process ="
                f" {figures['rss_mib']:.0f} MiB, {serving['indexes']} Chroma collections open"
                " (archival inserts/searches)")
    section.say(f"after {touch:,} more agents came and went: RSS {touched['rss']:.0f} MiB bot"
                f" (peak {touched['peak']:.0f}) + {touched['index_rss']:.0f} MiB Chroma process,"
                f" {touched['loaded']} agents loaded (MAX_LOADED_AGENTS={max_loaded}); the"
                f" Chroma process was restarted {touched['restarts']} times for its memory limit"
                " (CHROMA_MEMORY_LIMIT_MB)")
    section.figures = figures
    return section
