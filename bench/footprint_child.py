"""The bot side of the footprint benchmark, in a fresh process: only the engine is imported,
so start-up time and resident memory are the bot's own.

    python -m bench.footprint_child BASE_URL DATA_DIR AGENTS ACTIVE TOUCH
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

from bench import transport
from bench.common import HTTPEmbedder, rss_mib, settings_for
from bench.words import kinds, user_text
from bot.engine import Engine


def _vm(name: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _child(base_url: str, data: Path, agents: int, active: int, touch: int) -> None:
    """Runs in the child: open the engine, answer, serve `active` agents, then touch `touch`
    agents one after another; prints one JSON line per stage."""
    settings = settings_for(base_url, data, llm_max_concurrency=64)
    embedder = HTTPEmbedder(base_url)
    engine = await Engine(settings, embedder=embedder).open()
    print(json.dumps({"stage": "ready", "rss": rss_mib()}), flush=True)
    rng = random.Random(3)
    await engine.send("dm:0", user_text("plain", 0, rng), sender_name="Bo")
    print(json.dumps({"stage": "first_reply", "rss": rss_mib()}), flush=True)

    async def talk(index: int, plan: list[str], first: int) -> None:
        talk_rng = random.Random(index)
        for seq, kind in enumerate(plan, start=first):
            await engine.send(f"dm:{index}", user_text(kind, seq, talk_rng), sender_name="Bo")

    # First plain chat only (the bot's own memory), then the mix, whose archival inserts and
    # searches open each agent's Chroma index.
    for stage, plan in (("active_plain", ["plain"] * 3), ("active", None)):
        started = time.perf_counter()
        await asyncio.gather(*(talk(i, plan or kinds(3, seed=i), 10 if plan else 20)
                               for i in range(active)))
        await engine.archival.flush()
        index = await engine.vectors.stats()
        print(json.dumps({"stage": stage, "rss": rss_mib(), "index_rss": index["rss_mib"],
                          "seconds": time.perf_counter() - started,
                          "loaded": len(engine._agents), "indexes": index["collections"],
                          "restarts": engine.vectors.restarts}),
              flush=True)
    for index in range(active, active + touch):  # others come and go, one message each
        await engine.send(f"dm:{index % agents}", user_text("plain", 9, rng), sender_name="Bo")
    await engine.archival.flush()
    index = await engine.vectors.stats()
    print(json.dumps({"stage": "touched", "rss": rss_mib(), "peak": _vm("VmHWM"),
                      "index_rss": index["rss_mib"], "loaded": len(engine._agents),
                      "restarts": engine.vectors.restarts}),
          flush=True)
    await engine.aclose()
    await embedder.aclose()


async def _ready_only(base_url: str, data: Path) -> None:
    """Start-up alone: open the engine, say so, close."""
    embedder = HTTPEmbedder(base_url)
    engine = await Engine(settings_for(base_url, data), embedder=embedder).open()
    print(json.dumps({"stage": "ready", "rss": rss_mib()}), flush=True)
    await engine.aclose()
    await embedder.aclose()


if __name__ == "__main__":
    transport.apply()  # as the parent was asked (BENCH_LLM_TRANSPORT)
    if sys.argv[1] == "--ready":
        asyncio.run(_ready_only(sys.argv[2], Path(sys.argv[3])))
    else:
        base, folder, total, busy, more = sys.argv[1:6]
        asyncio.run(_child(base, Path(folder), int(total), int(busy), int(more)))
