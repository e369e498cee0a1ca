"""Reading a chat request the way a scripted "model" needs to: what was said this turn."""

from __future__ import annotations

import json
from typing import Any


def turn_inputs(messages: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """What people said since the agent last spoke (the turn's inputs, oldest first), and
    whether the agent already called a function in this turn."""
    said: list[str] = []
    called = False
    for message in reversed(messages):
        calls_made = message.get("tool_calls") or []
        if message["role"] == "assistant" and any(
            c["function"]["name"] == "send_message" for c in calls_made
        ):
            break
        # A function result newer than every input belongs to this turn (an older one is the
        # result of the agent's last send_message).
        called = called or (message["role"] == "tool" and not said)
        if message["role"] == "user":
            try:
                event = json.loads(message["content"])
            except (TypeError, ValueError):
                continue
            if isinstance(event, dict) and event.get("type") == "user_message":
                said.insert(0, event["message"])
    return said, called
