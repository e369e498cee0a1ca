"""The benchmark harness still runs: `python -m bench --quick` completes and prints every section.

No timing is asserted (figures on a shared CI machine mean little); docs/benchmarks.md records a
full run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SECTIONS = ["overhead", "prompt", "prompt_cost", "concurrency", "search", "footprint", "discord",
            "progressive", "channel", "micro"]


def test_quick_benchmark_run_prints_every_section(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DISCORD_"))}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in SECTIONS:
        assert f"\n## {name}\n" in done.stdout, f"section {name} missing"
    assert "\n## summary\n" in done.stdout
    results = json.loads((tmp_path / "quick-latest.json").read_text(encoding="utf-8"))
    assert set(results["sections"]) == set(SECTIONS)
    assert all(section["figures"] for section in results["sections"].values())
    assert "(missing:" not in done.stdout
