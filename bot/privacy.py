"""Erasing one person from a shared agent's memory (`/forget-me`).

What goes: the person's own messages; every function-call group (the agent's call and its
results) and every spoken reply that mentions them; core memory lines and summary sentences
naming them; archival passages naming them. Names match as whole words (so "Al" does not erase
"also"); the user id matches anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class Matcher:
    def __init__(self, user_id: str, names: Iterable[str]) -> None:
        words = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
        parts = [re.escape(user_id)] + [rf"(?<!\w){re.escape(w)}(?!\w)" for w in words]
        self.pattern = re.compile("|".join(parts), re.IGNORECASE)

    def __call__(self, text: str | None) -> bool:
        return bool(text) and self.pattern.search(text or "") is not None

    def scrub_lines(self, text: str) -> str:
        return "\n".join(line for line in text.split("\n") if not self(line))

    def scrub_sentences(self, text: str) -> str:
        return " ".join(s for s in _SENTENCE.split(text) if not self(s)).strip()


def doomed_message_ids(rows: list[Any], sender_id: str, mentions: Matcher) -> list[int]:
    """Ids of messages to delete, keeping every function call together with its results."""
    doomed: set[int] = set()
    group: list[Any] = []

    def close_group() -> None:
        if group and any(mentions(_searchable(m)) for m in group):
            doomed.update(m["id"] for m in group)
        group.clear()

    for row in rows:
        if row["role"] == "tool" and group:
            group.append(row)
            continue
        close_group()
        if row["role"] == "assistant":
            group.append(row)
        elif row["sender_id"] == sender_id or mentions(_searchable(row)):
            doomed.add(row["id"])
    close_group()
    return sorted(doomed)


def _searchable(row: Any) -> str:
    return " ".join(filter(None, (row["content"], row["text"], row["tool_calls"])))
