"""Personas and human templates: plain `.txt` files, chosen by name."""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class PersonaError(ValueError):
    pass


def checked_name(name: str) -> str:
    name = name.strip().removesuffix(".txt")
    if not _NAME.fullmatch(name):
        raise PersonaError(
            f"{name[:40]!r} is not a valid name: use letters, digits, '-' or '_' (max 64)."
        )
    return name


def list_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.txt") if _NAME.fullmatch(p.stem))


def read(folder: Path, name: str, kind: str = "persona") -> str:
    """The text of `folder/name.txt`; names are checked so no path can leave the folder."""
    path = folder / f"{checked_name(name)}.txt"
    if not path.is_file():
        available = ", ".join(list_names(folder)) or "none"
        raise PersonaError(f"No {kind} named {name!r}. Available: {available}.")
    return path.read_text(encoding="utf-8").strip()
