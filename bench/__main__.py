"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks and print their figures.

Each section prints its conditions and figures as it goes; at the end a table compares every
figure with its target. Results are saved to bench/results/latest.json (and a dated copy) and
the table to bench/results/latest.md, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import search, transport
from bench.common import RESULTS, Section, machine
from bench.report import summary_table

SECTIONS = ["overhead", "prompt", "prompt_cost", "concurrency", "search", "footprint", "discord",
            "progressive", "channel", "micro"]
_MODULES = {"discord": "through_discord"}


async def _run(names: list[str], quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "sections": {},
                               "llm_transport": transport.apply()}
    print(f"# Mnemocord benchmarks ({'quick' if quick else 'full'} run,"
          f" LLM transport: {results['llm_transport']})")
    print(", ".join(f"{k}: {v}" for k, v in results["machine"].items()), flush=True)
    for name in names:
        module = importlib.import_module(f"bench.{_MODULES.get(name, name)}")
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        print(f"\n## {name}", flush=True)
        section: Section = await module.run(quick)
        seconds = time.perf_counter() - started
        # Other processes on the machine inflate every figure: say how busy it was.
        load = f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
        print(f"  conditions: {section.conditions}")
        print(f"  ({seconds:.1f} s; {load})", flush=True)
        results["sections"][name] = {"title": section.name, "conditions": section.conditions,
                                     "lines": section.lines, "figures": section.figures,
                                     "seconds": round(seconds, 1), "load": load}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke run (about 40 s)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where to write the results (default bench/results/)")
    parser.add_argument("--data", type=Path, help="keep the search dataset here and reuse it"
                        " on later runs (it is large: about 5 GB for the full run)")
    parser.add_argument("--llm-transport", choices=["openai", "aiohttp"], default="openai",
                        help="an experiment: run the LLM client's HTTP exchange on aiohttp"
                        " (bench/transport.py) to measure what the transport costs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    search.DATA = args.data
    transport.apply(args.llm_transport)
    names = args.only or SECTIONS
    results = asyncio.run(_run(names, args.quick))
    table = summary_table(results)
    print("\n## summary\n" + table, flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "quick" if args.quick else "full"
    for path in (args.results / f"{kind}-latest.json", args.results / f"{kind}-{stamp}.json"):
        path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    (args.results / f"{kind}-latest.md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
