"""The outbox: replies committed with their turn's writes, delivered by the adapter after.

A reply is in the outbox before anyone sees it, so a crash before (or during) its delivery
cannot lose it, and a re-send after a restart carries the same nonce (Discord drops a repeat).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.messages import Message, iso, utcnow
from bot.store import Statement


@dataclass
class Outgoing:
    """A reply waiting in the outbox: `target` is the adapter's address of the message it
    answers (for Discord "channel_id:message_id")."""

    id: str
    target: str
    text: str


# Takes committed replies to the person as each step ends (the adapter's delivery); the flag
# says whether the turn goes on (the adapter may show it is still at work).
Courier = Callable[[list[Outgoing], bool], Awaitable[None]]

INSERT_OUTBOX = "INSERT INTO outbox (id, agent_id, target, text, created_at) VALUES (?,?,?,?,?)"


def reply_target(inputs: list[Message]) -> str | None:
    """Where a turn's replies go: the adapter's address of the last person's message that has
    one, else of the last event that has one (e.g. a heartbeat a slash command sent: its
    address is the channel, so the answer cannot be lost with the command's response)."""
    return next((m.external_id for m in reversed(inputs) if m.external_id
                 and m.kind == "user_message"), None) or next(
        (m.external_id for m in reversed(inputs) if m.external_id), None)


def outbox_rows(agent_id: str, target: str | None, texts: list[str]
                ) -> tuple[list[Outgoing], list[Statement]]:
    """Adapters that address replies (external ids) get them through the outbox, committed
    with the turn, so a crash before delivery cannot lose them."""
    if target is None:
        return [], []
    now = iso(utcnow())
    items = [Outgoing(uuid.uuid4().hex, target, text) for text in texts if text.strip()]
    return items, [(INSERT_OUTBOX, (i.id, agent_id, target, i.text, now)) for i in items]
