"""Operator commands on an agent, as in the MemGPT CLI: memory, pop, dump, save/load, retry,
rethink, rewrite, summarize, attach, tokens, export, reset. Both adapters call these through the
engine; each runs under the agent's lock, so it never interleaves with a turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.agent import EventSink, TurnResult
from bot.channel_memory import is_overheard
from bot.forget import ForgetReport, forget_in_agent, forget_person, scrub_storage
from bot.memory.archival import PassagePage
from bot.memory.core import CoreMemory
from bot.memory.people import PersonBlock
from bot.memory.recall import SearchPage
from bot.messages import Message, clean_text, iso, utcnow
from bot.personas import checked_name
from bot.privacy import Matcher
from bot.store import CONTEXT_ORDER

if TYPE_CHECKING:
    from bot.engine import Engine

MAX_ATTACH_CHARS = 2_000_000
MAX_DUMP = 1_000_000
MAX_NAME = 100


class CommandError(ValueError):
    """A command that cannot be done as asked; the message is for the person who asked."""


@dataclass
class MemoryView:
    agent_id: str
    name: str
    blocks: list[dict[str, Any]]
    summary: str
    recall_count: int
    archival_count: int
    in_context: int
    checkpoints: list[str]
    # A shared agent's per-person blocks (bot/memory/people.py), in the order they joined.
    people: list[dict[str, Any]] = field(default_factory=list)


def _group_start(queue: list[Message], index: int) -> int:
    """Move an index back so it does not fall between a function call and its results."""
    while index > 0 and queue[index].role == "tool":
        index -= 1
    return index


class CommandsMixin:
    async def memory(self: Engine, agent_id: str) -> MemoryView:
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            names = await self.store.fetchall(
                "SELECT name FROM checkpoints WHERE agent_id=? ORDER BY created_at", (agent_id,)
            )
            return MemoryView(
                agent_id, agent.name, agent.core.snapshot(), agent.summary, agent.recall_count,
                await self.archival.count(agent_id), len(agent.queue), [r[0] for r in names],
                [_export_person(b) for b in await agent.people.all_blocks()],
            )

    async def person_block(self: Engine, agent_id: str, person_id: str) -> dict[str, Any] | None:
        """One person's block in a shared agent (what /memory shows a member), if any."""
        agent = await self.agent(agent_id)
        found = [b for b in await agent.people.all_blocks() if b.person_id == person_id]
        return _export_person(found[0]) if found else None

    async def pop(self: Engine, agent_id: str, count: int = 3) -> int:
        """Undo the last `count` messages (whole function-call groups); returns how many went."""
        if count < 1:
            raise CommandError("Pop at least one message.")
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            queue = agent.queue
            if not queue:
                raise CommandError("There are no messages in context to pop.")
            start = _group_start(queue, max(0, len(queue) - count))
            removed = queue[start:]
            await self._delete_messages(agent_id, [m.id for m in removed])
            await self.reload(agent_id)
            return len(removed)

    async def _delete_messages(self: Engine, agent_id: str, ids: list[int]) -> None:
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        await self.store.commit([(
            f"DELETE FROM messages WHERE agent_id=? AND id IN ({marks})", (agent_id, *ids)
        )])

    async def dump(self: Engine, agent_id: str, count: int = 10) -> list[Message]:
        if count < 1:
            raise CommandError("Dump at least one message.")
        await self.agent(agent_id)
        # SQLite's LIMIT is a 64-bit integer; no agent has more messages than this anyway.
        return await self.recall.recent(agent_id, min(count, MAX_DUMP))

    async def save(self: Engine, agent_id: str, name: str) -> None:
        name = self._checkpoint_name(name)
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            state = {
                "core": agent.core.snapshot(),
                "summary": agent.summary,
                "queue": [m.id for m in agent.queue],
                "warning_sent": agent.warning_sent,
                "people": [{"person_id": b.person_id, "value": b.value}
                           for b in await agent.people.all_blocks()],
            }
            await self.store.commit([(
                "INSERT OR REPLACE INTO checkpoints (agent_id, name, created_at, state)"
                " VALUES (?,?,?,?)",
                (agent_id, name, iso(utcnow()), json.dumps(state)),
            )])

    async def load(self: Engine, agent_id: str, name: str) -> None:
        """Restore core memory, summary and context to a checkpoint; later messages stay in
        recall memory."""
        name = self._checkpoint_name(name)
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            row = await self.store.fetchone(
                "SELECT state FROM checkpoints WHERE agent_id=? AND name=?", (agent_id, name)
            )
            if row is None:
                raise CommandError(f"There is no checkpoint named {name!r}.")
            state = json.loads(row["state"])
            agent.core = CoreMemory.from_snapshot(state["core"])
            agent.summary = state["summary"]
            agent.warning_sent = bool(state.get("warning_sent"))
            agent.core_changed()
            ids = [int(i) for i in state["queue"]]
            statements = agent.commit_statements()
            statements.append(("UPDATE messages SET in_context=0 WHERE agent_id=? AND in_context=1",
                               (agent_id,)))
            statements += [
                ("UPDATE messages SET in_context=1 WHERE agent_id=? AND id=?", (agent_id, i))
                for i in ids
            ]
            if "people" in state:  # what was known of each person then (later: nothing)
                statements.append(("UPDATE person_blocks SET value='' WHERE agent_id=?",
                                   (agent_id,)))
                statements += [("UPDATE person_blocks SET value=? WHERE agent_id=? AND"
                                " person_id=?", (str(p["value"]), agent_id, str(p["person_id"])))
                               for p in state["people"]]
            await self.store.commit(statements)
            await self.reload(agent_id)

    @staticmethod
    def _checkpoint_name(name: str) -> str:
        try:
            return checked_name(name)
        except ValueError as error:
            raise CommandError(str(error)) from None

    async def checkpoints(self: Engine, agent_id: str) -> list[str]:
        if not await self.exists(agent_id):
            return []
        rows = await self.store.fetchall(
            "SELECT name FROM checkpoints WHERE agent_id=? ORDER BY created_at", (agent_id,)
        )
        return [r[0] for r in rows]

    async def retry(self: Engine, agent_id: str, on_event: EventSink | None = None) -> TurnResult:
        """Drop the agent's answer to the last user message and answer it again."""
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            queue = agent.queue
            last = next((i for i in range(len(queue) - 1, -1, -1)
                         if queue[i].kind == "user_message" and not is_overheard(queue[i])),
                        None)
            if last is None:
                raise CommandError("There is no user message in context to retry.")
            # Its answer goes; what the channel said meanwhile (observe mode) stays.
            await self._delete_messages(agent_id, [m.id for m in queue[last + 1:]
                                                   if not is_overheard(m)])
            message = queue[last]
            await self.store.commit([(
                "UPDATE messages SET pending=1, in_context=0 WHERE id=? AND agent_id=?",
                (message.id, agent_id),
            )])
            await self.reload(agent_id)
            return await self._run_pending(agent_id, on_event)

    async def _rewrite_last(self: Engine, agent_id: str, text: str, *, spoken: bool) -> None:
        text = clean_text(text)
        if not text.strip():
            raise CommandError("Give the new text.")
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            for message in reversed(agent.queue):
                if message.role != "assistant":
                    continue
                if spoken and message.text is not None:
                    for call in message.tool_calls:
                        if call.name == "send_message":
                            args = _loads(call.arguments)
                            args["message"] = text
                            call.arguments = json.dumps(args, ensure_ascii=False)
                    message.text = text
                elif not spoken and (message.content or message.tool_calls):
                    message.content = text
                else:
                    continue
                message.changed()
                agent.mark_updated(message)
                await agent.commit()
                return
            what = "sent message" if spoken else "inner monologue"
            raise CommandError(f"There is no {what} in context to change.")

    async def rethink(self: Engine, agent_id: str, text: str) -> None:
        await self._rewrite_last(agent_id, text, spoken=False)

    async def rewrite(self: Engine, agent_id: str, text: str) -> None:
        await self._rewrite_last(agent_id, text, spoken=True)

    async def summarize(self: Engine, agent_id: str) -> int:
        """Fold everything but the last few messages into the summary now."""
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            evicted = await agent.evict(0)
            await agent.commit()
            return evicted

    async def heartbeat(self: Engine, agent_id: str, on_event: EventSink | None = None,
                        external_id: str | None = None) -> TurnResult:
        """external_id: the adapter's address for the answer (it then goes through the outbox)."""
        return await self.event(agent_id, "heartbeat", "Manual heartbeat from the operator.",
                                on_event, external_id)

    async def memory_warning(self: Engine, agent_id: str, on_event: EventSink | None = None,
                             external_id: str | None = None) -> TurnResult:
        agent = await self.agent(agent_id)
        _, tokens = self.context.assemble(agent, utcnow())
        return await self.event(agent_id, "system_alert", self.context.pressure_alert(tokens),
                                on_event, external_id)

    async def attach(self: Engine, agent_id: str, text: str, source: str) -> int:
        """Store a document in archival memory; returns the number of passages."""
        text, source = clean_text(text), clean_text(source)
        if not text.strip():
            raise CommandError("The file is empty.")
        if len(text) > MAX_ATTACH_CHARS:
            raise CommandError(f"The file is too large (over {MAX_ATTACH_CHARS:,} characters).")
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            count = await agent.archive(text, source)
            await agent.commit()
            return count

    async def tokens(self: Engine, agent_id: str) -> dict[str, int]:
        agent = await self.agent(agent_id)
        now = utcnow()
        context = self.context
        parts = context.system_parts(agent, now)
        summary = context.summary_message(agent)
        messages = sum(context.effective_tokens(m) for m in agent.queue)
        _, total = context.assemble(agent, now)
        budget = context.budget
        return {
            "tools": context.tools_tokens,
            "system": sum(self.counter.count(p) for p in parts),
            "core_memory": self.counter.count(context.core_part(agent)),
            "summary": self.counter.count(summary["content"]) if summary else 0,
            "messages": messages,
            "total": total,
            "window": budget.window,
            "usable": budget.usable,
            "warning_at": budget.warning_at,
            "flush_at": budget.flush_at,
        }

    async def search_recall(self: Engine, agent_id: str, query: str, page: int = 0
                            ) -> SearchPage:
        await self.agent(agent_id)
        try:
            return await self.recall.search(agent_id, query, page)
        except ValueError as error:
            raise CommandError(str(error)) from None

    async def search_archival(self: Engine, agent_id: str, query: str, page: int = 0
                              ) -> PassagePage:
        await self.agent(agent_id)
        try:
            return await self.archival.search(agent_id, query, page)
        except ValueError as error:
            raise CommandError(str(error)) from None

    async def set_persona(self: Engine, agent_id: str, text: str) -> None:
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            try:
                agent.core.set("persona", clean_text(text).strip())
            except ValueError as error:
                raise CommandError(str(error)) from None
            agent.core_changed()
            await agent.commit()

    async def export(self: Engine, agent_id: str) -> dict[str, Any]:
        """Everything stored for the agent, as plain JSON-able data."""
        async with self.slot(agent_id).lock:
            agent = await self.agent(agent_id)
            rows = await self.store.fetchall(
                f"SELECT * FROM messages WHERE agent_id=? ORDER BY pending, {CONTEXT_ORDER}",
                (agent_id,),
            )
            passages = await self.archival.all_passages(agent_id)
            return {
                "agent": {"id": agent_id, "name": agent.name, "summary": agent.summary},
                "core_memory": agent.core.snapshot(),
                "people": [_export_person(b) for b in await agent.people.all_blocks()],
                "messages": [_export_message(Message.from_row(r)) for r in rows],
                "archival": [
                    {"id": p.id, "text": p.text, "source": p.source,
                     "created_at": iso(p.created_at)}
                    for p in passages
                ],
                "checkpoints": await self.checkpoints(agent_id),
                "exported_at": iso(utcnow()),
            }

    async def forget_sender(
        self: Engine, agent_id: str, sender_id: str, names: list[str]
    ) -> dict[str, int]:
        """Erase one person from one agent (see bot/privacy.py for exactly what goes)."""
        person = self._person(sender_id, names)
        report = await forget_in_agent(self, agent_id, sender_id, person)
        await scrub_storage(self.store)
        return {"messages": report.messages, "passages": report.passages}

    async def forget_person(
        self: Engine, sender_id: str, names: list[str], reset: list[str] | tuple[str, ...] = ()
    ) -> ForgetReport:
        """/forget-me: erase the agents in `reset` (the person's own private agents) whole, and
        the person from every other agent (bot/forget.py, bot/privacy.py)."""
        self._person(sender_id, names)
        return await forget_person(self, sender_id, names, reset)

    @staticmethod
    def _person(sender_id: str, names: list[str]) -> Matcher:
        # Ids and names are matched against every stored message: an unbounded one would make
        # that scan quadratic (a 100k-character "name" took minutes). Discord's are short.
        if not sender_id.strip() or any(len(v) > MAX_NAME for v in (sender_id, *names)):
            raise CommandError(f"A person's id and names must be 1 to {MAX_NAME} characters.")
        return Matcher(sender_id, names)

    async def agents_with_sender(self: Engine, sender_id: str) -> list[str]:
        """Agents holding messages the person sent."""
        rows = await self.store.fetchall(
            "SELECT DISTINCT agent_id FROM messages WHERE sender_id=?", (sender_id,)
        )
        return [r[0] for r in rows]

    async def reset(self: Engine, agent_id: str) -> None:
        """Erase the agent and all its memory; it is created afresh on next use."""
        async with self.slot(agent_id).lock:
            await self.agent(agent_id)
            drop_passages = await self.archival.drop_agent(agent_id)
            await self.store.commit([
                ("DELETE FROM messages WHERE agent_id=?", (agent_id,)),
                ("DELETE FROM usage WHERE agent_id=?", (agent_id,)),
                ("DELETE FROM outbox WHERE agent_id=?", (agent_id,)),
                drop_passages,
                ("DELETE FROM agents WHERE id=?", (agent_id,)),
            ])
            self._agents.pop(agent_id, None)


def _loads(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _export_person(block: PersonBlock) -> dict[str, Any]:
    return {"label": block.label, "person_id": block.person_id, "name": block.name,
            "value": block.value}


def _export_message(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "kind": message.kind,
        "created_at": iso(message.created_at),
        "sender_name": message.sender_name,
        "sender_id": message.sender_id,
        "text": message.text,
        "content": message.content,
        "tool_calls": [c.to_openai() for c in message.tool_calls],
        "in_context": message.in_context,
    }
