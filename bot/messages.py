"""Messages of the FIFO queue and of recall memory, and how events are packed for the model.

Like the original MemGPT, user input and system events reach the model as JSON in user-role
messages, so the model can tell a person's words from a heartbeat or a memory alert, and a person
cannot forge a system event by typing one (their text is always a JSON string value).

The framing is compact, since it is paid on every message of every call (docs/benchmarks.md,
"What a turn costs"): `{"from":"Ada","id":"…","time":"2026-12-04 19:54","text":"…"}` for a
person (the id only when the speaker changes), `{"event":"heartbeat","time":…,"text":…}` for a
system event, and a function result as plain text: `OK`, `OK: <report>` or `Error: <reason>`.
Messages are stored packed; the older, longer framing (`{"type": "user_message", ...}`,
`{"status": "OK", ...}`) is still read by `unpack_event` and `unpack_tool_result`.
"""

from __future__ import annotations

import json
import re
import string
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
    """An event's time: local, to the minute (the system message names the time zone)."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def long_time_text(moment: datetime, tz: ZoneInfo) -> str:
    """The time with its weekday and zone, said once in the system message."""
    return moment.astimezone(tz).strftime("%A %Y-%m-%d %H:%M %Z").strip()


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


# Tool-call ids as every provider takes them: Mistral (La Plateforme, and vLLM in mistral tokenizer
# mode) refuses any id but nine letters or digits ("Tool call id was call_0 but must be a-z, A-Z,
# 0-9, with a length of 9."; mistral-common protocol/instruct/validator.py), the strictest rule
# of all (OpenAI: at most 40 characters). Ids we make have that shape; a provider's own ids go
# back exactly as it gave them (a proxy may tie other fields to them: OpenRouter's
# reasoning_details).
CALL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
_ALPHABET = string.digits + string.ascii_letters
# The ids we made before (plain_7 for a plain answer, call_12 for a fresh id, call_0 for a call
# without one), still in stored conversations: sent in the new shape, the call and its result
# alike.
_LEGACY_ID = re.compile(r"^(plain|call)_(\d+)$")


def make_call_id(prefix: str, number: int) -> str:
    """A nine-character id from a one-letter prefix and a unique number (e.g. a message id)."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _ALPHABET[rest] + digits
    return prefix[:1] + digits.rjust(8, "0")[-8:]


def wire_call_id(call_id: str) -> str:
    legacy = _LEGACY_ID.match(call_id)
    return make_call_id(legacy.group(1)[0], int(legacy.group(2))) if legacy else call_id


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text: as the model produced it, or repaired (bot/llm.py replayable_calls)
    # The provider's own fields of the call, sent back unchanged (Gemini 3's
    # {"extra_content": {"google": {"thought_signature": ...}}}).
    extra: dict[str, Any] = field(default_factory=dict)

    def to_openai(self) -> dict[str, Any]:
        return {**self.stored(), "id": wire_call_id(self.id)}

    def stored(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
            **self.extra,
        }

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> ToolCall:
        extra = {k: v for k, v in data.items() if k not in ("id", "type", "function")}
        return cls(data["id"], data["function"]["name"], data["function"]["arguments"], extra)


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
    # The provider's own fields of an assistant message, sent back unchanged: DeepSeek's
    # reasoning_content, OpenRouter's reasoning_details (bot/llm.py REPLAYED_FIELDS).
    extra: dict[str, Any] = field(default_factory=dict)
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
            message["tool_call_id"] = (
                wire_call_id(self.tool_call_id) if self.tool_call_id else self.tool_call_id)
        if self.extra:
            message.update(self.extra)
        return message

    def tool_calls_json(self) -> str | None:
        return json.dumps([c.stored() for c in self.tool_calls]) if self.tool_calls else None

    def row(self, tag: str) -> tuple[Any, ...]:
        calls = self.tool_calls_json()
        return (
            self.id, self.agent_id, tag, self.role, self.kind, self.content, self.text,
            self.sender_name, self.sender_id, calls, self.tool_call_id, self.tool_name,
            iso(self.created_at), int(self.in_context), int(self.pending), self.external_id,
            json.dumps(self.extra, ensure_ascii=False) if self.extra else None,
        )

    @classmethod
    def from_row(cls, row: Any) -> Message:
        calls = [ToolCall.from_stored(c) for c in json.loads(row["tool_calls"] or "[]")]
        return cls(
            id=row["id"], agent_id=row["agent_id"], role=row["role"], kind=row["kind"],
            content=row["content"], created_at=parse_iso(row["created_at"]), text=row["text"],
            sender_name=row["sender_name"], sender_id=row["sender_id"], tool_calls=calls,
            tool_call_id=row["tool_call_id"], tool_name=row["tool_name"],
            in_context=bool(row["in_context"]), pending=bool(row["pending"]),
            external_id=row["external_id"], extra=json.loads(row["extra"] or "{}"),
        )


INSERT_MESSAGE = (
    "INSERT INTO messages (id, agent_id, agent_tag, role, kind, content, text, sender_name,"
    " sender_id, tool_calls, tool_call_id, tool_name, created_at, in_context, pending,"
    " external_id, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _packed(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def pack_user_message(text: str, sender_name: str | None, sender_id: str | None, time: str) -> str:
    """A person's message. Pass sender_id only when it tells the model something (a new
    speaker); the name always comes, "user" when unknown."""
    event: dict[str, Any] = {"from": sender_name or "user"}
    if sender_id:
        event["id"] = sender_id
    event["time"] = time
    event["text"] = text
    return _packed(event)


def pack_system_event(kind: str, message: str, time: str) -> str:
    """kind: heartbeat | system_alert | login."""
    return _packed({"event": kind, "time": time, "text": message})


TOOL_OK = "OK"
TOOL_ERROR = "Error: "
_BARE_SUCCESS = {"", "Message sent."}


def pack_tool_result(ok: bool, message: str, time: str | None = None) -> str:
    """A function's result. It follows its call at once, whose input event has the time, so
    `time` (kept for callers) is not sent; a bare success ("Message sent.") is just OK."""
    if not ok:
        return TOOL_ERROR + message
    return TOOL_OK if message in _BARE_SUCCESS else f"{TOOL_OK}: {message}"


def unpack_tool_result(content: str | None) -> tuple[bool, str]:
    """(ok, report) of a stored function result, in either framing."""
    text = content or ""
    if text.startswith("{"):
        try:
            old = json.loads(text)
        except ValueError:
            old = None
        if isinstance(old, dict) and "status" in old:
            return old.get("status") == "OK", str(old.get("message", ""))
    if text.startswith(TOOL_ERROR):
        return False, text[len(TOOL_ERROR):]
    if text == TOOL_OK:
        return True, ""
    return True, text.removeprefix(f"{TOOL_OK}: ")


@dataclass
class Event:
    """A packed user-role event read back: kind is user_message, heartbeat, system_alert..."""

    kind: str
    text: str
    time: str | None = None
    name: str | None = None
    sender_id: str | None = None


def unpack_event(content: str | None) -> Event | None:
    """A packed event in either framing; None for anything else (e.g. the summary)."""
    try:
        data = json.loads(content or "")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if "from" in data and "text" in data:
        return Event("user_message", str(data["text"]), data.get("time"), data["from"],
                     data.get("id"))
    if "event" in data:
        return Event(str(data["event"]), str(data.get("text", "")), data.get("time"))
    if "type" in data:  # the framing before issue 11
        text = data.get("message", data.get("reason", ""))
        return Event(str(data["type"]), str(text), data.get("time"), data.get("name"),
                     data.get("user_id"))
    return None
