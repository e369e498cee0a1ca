"""Sizes of the long reliability runs: a quick size for CI and a full size (MNEMOCORD_FULL=1).

Each run can also write its figures as JSON into MNEMOCORD_REPORT_DIR (if set), which is how the
full-size numbers in docs/reliability.md were collected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

FULL = os.environ.get("MNEMOCORD_FULL", "").strip() not in ("", "0")


def pick(quick: T, full: T) -> T:
    """The quick value in CI, the full one when MNEMOCORD_FULL=1."""
    return full if FULL else quick


def report(name: str, figures: dict[str, Any]) -> None:
    """Print a run's figures (shown with pytest -s) and keep them for the docs if asked to."""
    print(f"\n[{name}] {json.dumps(figures, sort_keys=True)}")
    folder = os.environ.get("MNEMOCORD_REPORT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
