"""Messages of the FIFO queue and of recall memory, and how events are packed for the model.

Like the original MemGPT, user input and system events reach the model as JSON in user-role
messages, so the model can tell a person's words from a heartbeat or a memory alert, and a person
cannot forge a system event by typing one (their text is always a JSON string value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def local_time_text(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %I:%M:%S %p %Z%z").strip()


def clean_text(text: str) -> str:
    """Text that can be stored and sent: a terminal or a broken client can hand us unpaired
    surrogates (e.g. undecodable bytes), which SQLite and JSON-over-HTTP reject. Paired ones
    are joined, lone ones become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def is_clean(text: str) -> bool:
    return clean_text(text) is text


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


EDITS = 0  # bumped by Message.changed(): in-place edits of messages already in a queue


@dataclass
class Message:
    """One entry of the conversation as the model sees it (content) and as people said it (text)."""

    id: int
    agent_id: str
    role: str  # system | user | assistant | tool
    kind: str  # user_message | heartbeat | system_alert | login | assistant | tool_result
    content: str | None
    created_at: datetime
    text: str | None = None  # what was actually said: indexed for conversation_search
    sender_name: str | None = None
    sender_id: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    tool_name: str | None = None
    in_context: bool = True
    pending: bool = False
    external_id: str | None = None
    # Set when the message joins the context later than it was created (an input answered by a
    # later turn); None: at its id. See bot/store.py, CONTEXT_ORDER.
    position: int | None = None
    tokens: int | None = None  # cached token count of to_openai()
    # Cached JSON of the message as sent to the model (set with tokens; cleared by changed()).
    wire: str | None = field(default=None, repr=False, compare=False)

    def changed(self) -> None:
        """Call after editing what the model sees (content, tool calls): drops the cached token
        count and JSON, and tells context windows that a cached prompt may be stale."""
        global EDITS
        self.tokens = None
        self.wire = None
        EDITS += 1

    def to_openai(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.role == "tool":
            message["tool_call_id"] = self.tool_call_id
        return message

    def tool_calls_json(self) -> str | None:
        return json.dumps([c.to_openai() for c in self.tool_calls]) if self.tool_calls else None

    def row(self, tag: str) -> tuple[Any, ...]:
        calls = self.tool_calls_json()
        return (
            self.id, self.agent_id, tag, self.role, self.kind, self.content, self.text,
            self.sender_name, self.sender_id, calls, self.tool_call_id, self.tool_name,
            iso(self.created_at), int(self.in_context), int(self.pending), self.external_id,
        )

    @classmethod
    def from_row(cls, row: Any) -> Message:
        calls = [
            ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in json.loads(row["tool_calls"] or "[]")
        ]
        return cls(
            id=row["id"], agent_id=row["agent_id"], role=row["role"], kind=row["kind"],
            content=row["content"], created_at=parse_iso(row["created_at"]), text=row["text"],
            sender_name=row["sender_name"], sender_id=row["sender_id"], tool_calls=calls,
            tool_call_id=row["tool_call_id"], tool_name=row["tool_name"],
            in_context=bool(row["in_context"]), pending=bool(row["pending"]),
            external_id=row["external_id"],
        )


INSERT_MESSAGE = (
    "INSERT INTO messages (id, agent_id, agent_tag, role, kind, content, text, sender_name,"
    " sender_id, tool_calls, tool_call_id, tool_name, created_at, in_context, pending,"
    " external_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _packed(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


def pack_user_message(text: str, sender_name: str | None, sender_id: str | None, time: str) -> str:
    event: dict[str, Any] = {"type": "user_message", "message": text, "time": time}
    if sender_name:
        event["name"] = sender_name
    if sender_id:
        event["user_id"] = sender_id
    return _packed(event)


def pack_system_event(kind: str, message: str, time: str) -> str:
    """kind: heartbeat | system_alert | login."""
    key = "reason" if kind == "heartbeat" else "message"
    return _packed({"type": kind, key: message, "time": time})


def pack_tool_result(ok: bool, message: str, time: str) -> str:
    return _packed({"status": "OK" if ok else "Failed", "message": message, "time": time})
