"""Reading a chat request the way a scripted "model" needs to: what was said this turn."""

from __future__ import annotations

from typing import Any

from bot.messages import unpack_event


def is_person(content: str | None) -> bool:
    """Whether a user-role message is a person's words (not a system event or the summary)."""
    event = unpack_event(content)
    return event is not None and event.kind == "user_message"


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
            event = unpack_event(message.get("content"))
            if event is not None and event.kind == "user_message":
                said.insert(0, event.text)
    return said, called
