"""The per-agent turn queue: each incoming message is stored as pending before any LLM call (so
a crash cannot lose it), then answered under that agent's own lock: messages to one agent run
strictly in order, different agents run concurrently, and messages that pile up while an agent
is thinking are answered together in its next turn. Replies leave through the outbox, which
records what was delivered.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.agent import AgentEvent, Courier, EventSink, Outgoing, TurnResult, queue_replies
from bot.messages import (
    INSERT_MESSAGE,
    Message,
    clean_text,
    iso,
    local_time_text,
    pack_system_event,
    pack_user_message,
    utcnow,
)
from bot.store import Statement, agent_tag

if TYPE_CHECKING:
    from bot.engine import AgentSpec, Engine

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiters: dict[int, asyncio.Future[TurnResult]] = field(default_factory=dict)


class TurnsMixin:
    def slot(self: Engine, agent_id: str) -> _Slot:
        return self._slots.setdefault(agent_id, _Slot())

    async def accept(
        self: Engine,
        agent_id: str,
        text: str,
        *,
        sender_name: str | None = None,
        sender_id: str | None = None,
        external_id: str | None = None,
        spec: AgentSpec | None = None,
        kind: str = "user_message",
        created_at: datetime | None = None,
        pending: bool = True,
    ) -> Message:
        """Durably record an incoming event as pending; it is answered by a later turn.

        With pending=False the message is only recorded into recall memory (importing history).
        """
        agent = await self.agent(agent_id, spec)
        text = clean_text(text)
        sender_name = clean_text(sender_name) if sender_name is not None else None
        sender_id = clean_text(sender_id) if sender_id is not None else None
        external_id = clean_text(external_id) if external_id is not None else None
        now = created_at or utcnow()
        time_text = local_time_text(now, self.tz)
        if kind == "user_message":
            # The id tells people with one name apart: said when the speaker changes, not on
            # every message (a DM would repeat one 18-digit id all along).
            speaker = (sender_name, sender_id)
            new_speaker = agent.last_speaker != speaker
            agent.last_speaker = speaker
            content = pack_user_message(text, sender_name, sender_id if new_speaker else None,
                                        time_text)
            said: str | None = text
        else:
            content, said = pack_system_event(kind, text, time_text), None
        message = Message(
            id=self.store.allocate_message_id(), agent_id=agent_id, role="user", kind=kind,
            content=content, created_at=now, text=said, sender_name=sender_name,
            sender_id=sender_id, in_context=False, pending=pending, external_id=external_id,
        )
        await self.store.commit([(INSERT_MESSAGE, message.row(agent_tag(agent_id)))])
        agent.recall_count += 1
        return message

    async def send(
        self: Engine,
        agent_id: str,
        text: str,
        *,
        sender_name: str | None = None,
        sender_id: str | None = None,
        external_id: str | None = None,
        spec: AgentSpec | None = None,
        on_event: EventSink | None = None,
        kind: str = "user_message",
        courier: Courier | None = None,
    ) -> TurnResult:
        """Send a message (or system event) to an agent and wait for the turn that answers it."""
        message = await self.accept(
            agent_id, text, sender_name=sender_name, sender_id=sender_id,
            external_id=external_id, spec=spec, kind=kind,
        )
        return await self.answer(message, on_event, courier)

    async def answer(self: Engine, message: Message, on_event: EventSink | None = None,
                     courier: Courier | None = None) -> TurnResult:
        """Wait for the turn that answers an accepted message (running it if it is our turn).
        The courier takes each committed reply as its step ends, whoever's message it answers
        (a turn answers every message that waited; its replies go to the last one's address)."""
        agent_id = message.agent_id
        slot = self.slot(agent_id)
        future: asyncio.Future[TurnResult] = asyncio.get_running_loop().create_future()
        slot.waiters[message.id] = future
        try:
            async with slot.lock:
                if not future.done():
                    await self._run_pending(agent_id, on_event, courier)
                if not future.done():
                    # Not pending any more yet unanswered: erased (/forget-me) before its turn.
                    future.set_result(TurnResult())
            return await future
        finally:
            slot.waiters.pop(message.id, None)

    async def _run_pending(self: Engine, agent_id: str, on_event: EventSink | None,
                           courier: Courier | None = None) -> TurnResult:
        """Answer every pending event of the agent in one turn (call with the slot lock held)."""
        agent = await self.agent(agent_id)
        inputs = await self.recall.pending(agent_id)
        if not inputs:
            return TurnResult()
        try:
            result = await agent.run_turn(inputs, on_event, courier)
        except BaseException as error:
            continuation = agent.continuation
            await agent.abandon()
            await self.reload(agent_id)
            if not isinstance(error, Exception):
                raise  # cancelled: the messages stay pending and are answered after a restart
            log.exception("turn of %s failed", agent_id)
            # The person still hears back (through the outbox, like any reply), once: the
            # answered ids tell the adapter which message's handler delivers it.
            notice = "Something went wrong on my side; please try again."
            result = TurnResult(notices=[notice], answered_ids=[
                m.id for m in inputs if m.kind == "user_message"])
            if on_event is not None:
                on_event(AgentEvent("notice", notice))
            replies = queue_replies(agent_id, inputs, result)
            if continuation is not None:  # what was committed of the turn stays; it is over
                replies.append(("DELETE FROM messages WHERE id=? AND agent_id=? AND pending=1",
                                (continuation.id, agent_id)))
            await self._settle(agent_id, inputs, replies)
            await self._hand_over(agent_id, result, courier)
        slot = self.slot(agent_id)
        for message in inputs:
            waiter = slot.waiters.get(message.id)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
        return result

    async def _settle(self: Engine, agent_id: str, inputs: list[Message],
                      replies: list[Statement]) -> None:
        """After a failed turn, keep its inputs in context but stop retrying them; the notice
        for the person is committed with that."""
        joined = [(  # they join the context now, like the inputs of a turn that worked
            # (unless a mid-turn reply committed them already: they keep their place)
            "UPDATE messages SET pending=0, in_context=1, position=? WHERE agent_id=? AND id=?"
            " AND pending=1",
            (self.store.allocate_position(), agent_id, m.id),
        ) for m in inputs]
        await self.store.commit([*joined, *replies])
        await self.reload(agent_id)

    @staticmethod
    async def _hand_over(agent_id: str, result: TurnResult, courier: Courier | None) -> None:
        if courier is None or not result.outbox:
            return
        try:
            await courier(result.outbox, False)
        except Exception:
            log.exception("could not hand the notice of %s over; it stays in the outbox",
                          agent_id)
        else:
            result.handed_over.update(item.id for item in result.outbox)

    async def event(self: Engine, agent_id: str, kind: str, text: str,
                    on_event: EventSink | None = None,
                    external_id: str | None = None) -> TurnResult:
        """Inject a system event (heartbeat, system_alert, login) and let the agent react."""
        return await self.send(agent_id, text, kind=kind, on_event=on_event,
                               external_id=external_id)

    async def undelivered(self: Engine) -> list[tuple[str, Outgoing]]:
        """Replies committed but not yet delivered (after a crash), oldest first."""
        rows = await self.store.fetchall(
            "SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY created_at, rowid"
        )
        return [(r["agent_id"], Outgoing(r["id"], r["target"], r["text"])) for r in rows]

    async def mark_delivered(self: Engine, outbox_ids: list[str]) -> None:
        """Mark replies delivered, and delete those delivered longer ago than the window (the
        outbox would otherwise keep every reply ever sent)."""
        if outbox_ids:
            now = utcnow()
            keep = timedelta(minutes=self.settings.outbox_keep_delivered_minutes)
            marks = ",".join("?" * len(outbox_ids))
            await self.store.commit([
                (f"UPDATE outbox SET delivered_at=? WHERE id IN ({marks})",
                 (iso(now), *outbox_ids)),
                ("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at <= ?",
                 (iso(now - keep),)),
            ])

    async def pending_agent_ids(self: Engine) -> list[str]:
        rows = await self.store.fetchall(
            "SELECT DISTINCT agent_id FROM messages WHERE pending=1 ORDER BY agent_id"
        )
        return [row[0] for row in rows]

    async def resume(self: Engine, agent_id: str, on_event: EventSink | None = None,
                     courier: Courier | None = None) -> TurnResult:
        """Answer messages accepted before a crash or restart (and finish a turn a restart
        cut short after a reply: its continuation event is pending)."""
        async with self.slot(agent_id).lock:
            return await self._run_pending(agent_id, on_event, courier)
