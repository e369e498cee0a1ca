"""One agent and its turns: LLM steps, tool calls, heartbeats, the step cap, committing writes.

A turn's writes (new messages, core memory, summary, archival passages, token usage) are buffered
and committed in one transaction. A step that said something and leads to another step commits
the turn so far with its replies (progressive delivery); the rest is committed at the end.
Replies are handed to the adapter only after the commit that holds them, so a crash can never
show a reply whose turn is then replayed; a pending continuation event, committed with a
mid-turn reply, makes a restart finish the turn (bot/turns.py, the pending inputs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.context import ContextWindow
from bot.llm import Completion, LLMClient, LLMError
from bot.memory.archival import ArchivalMemory, PassagePage
from bot.memory.core import CoreMemory
from bot.memory.people import People
from bot.memory.recall import RecallMemory, SearchPage
from bot.messages import (
    INSERT_MESSAGE,
    Message,
    iso,
    local_time_text,
    make_call_id,
    pack_system_event,
    utcnow,
)
from bot.outbox import INSERT_OUTBOX as INSERT_OUTBOX  # re-exported
from bot.outbox import Courier as Courier
from bot.outbox import Outgoing as Outgoing
from bot.outbox import outbox_rows, reply_target
from bot.steps import OVERFLOW_RETRIES as OVERFLOW_RETRIES  # re-exported
from bot.steps import StepLoop, Turn
from bot.store import Statement, Store, agent_tag

log = logging.getLogger(__name__)

# The continuation event's words, for the model, should a restart come before the turn's end.
INTERRUPTED = ("Your previous turn was interrupted by a restart after you had sent a message."
               " Finish what you were doing, without repeating what you already said.")


@dataclass
class AgentEvent:
    """Something the adapter may show: thought, call, result, message, notice or memory."""

    kind: str
    text: str
    name: str | None = None
    ok: bool = True


EventSink = Callable[[AgentEvent], None]


@dataclass
class TurnResult:
    replies: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    steps: int = 0
    llm_calls: int = 0
    llm_seconds: float = 0.0
    answered_ids: list[int] = field(default_factory=list)
    outbox: list[Outgoing] = field(default_factory=list)
    handed_over: set[str] = field(default_factory=set)  # outbox ids a courier already took

    @property
    def texts(self) -> list[str]:
        """What the person should see, in order: the agent's messages, then any notices."""
        return [text for text in (*self.replies, *self.notices) if text.strip()]


def queue_replies(agent_id: str, inputs: list[Message], result: TurnResult) -> list[Statement]:
    """The outbox rows of all of result.texts (adds the items to result.outbox)."""
    items, statements = outbox_rows(agent_id, reply_target(inputs), result.texts)
    result.outbox.extend(items)
    return statements


@dataclass
class Services:
    """What every agent shares: storage, memory tiers, the context window and the LLM."""

    store: Store
    recall: RecallMemory
    archival: ArchivalMemory
    context: ContextWindow
    llm: LLMClient
    step_cap: int
    tool_output_limit: int
    plain_text_replies: bool
    # Set when the server rejected a tool_choice naming send_message (bot/steps.py).
    forcing_refused: bool = False


class Agent(StepLoop):
    def __init__(
        self,
        services: Services,
        *,
        agent_id: str,
        name: str,
        core: CoreMemory,
        summary: str,
        queue: list[Message],
        core_updated_at: datetime | None,
        warning_sent: bool,
        recall_count: int,
        archival_count: int,
        options: dict[str, Any],
        people: People | None = None,
    ) -> None:
        self.services = services
        self.id = agent_id
        self.tag = agent_tag(agent_id)
        self.name = name
        self.core = core
        self.summary = summary
        self.queue = queue
        self.core_updated_at = core_updated_at
        self.warning_sent = warning_sent
        self.recall_count = recall_count
        self.archival_count = archival_count
        self.options = options
        # Per-person blocks (a shared agent's; disabled elsewhere): bot/memory/people.py.
        self.people = people or People(services.store, agent_id, enabled=False, limit=0,
                                       in_context=0)
        # (name, id) of the last person whose message was accepted (bot/turns.py, accept).
        self.last_speaker: tuple[str | None, str | None] | None = None
        self.recall: RecallMemory = services.recall
        self.archival: ArchivalMemory = services.archival
        self._reset_turn()

    # --- the turn buffer ------------------------------------------------------------------------

    def _reset_turn(self) -> None:
        self._clear_writes()
        self._result = TurnResult()
        self._turn = Turn()
        self._sink: EventSink | None = None
        self._courier: Courier | None = None
        self._target: str | None = None
        self._unsent: list[str] = []  # replies said but not yet committed
        self.continuation: Message | None = None  # committed with the first mid-turn reply

    def _clear_writes(self) -> None:
        self._new: list[Message] = []
        self._updated: set[int] = set()
        self._statements: list[Statement] = []
        self._dirty_core = False

    def _emit(self, kind: str, text: str, name: str | None = None, ok: bool = True) -> None:
        if self._sink is not None:
            self._sink(AgentEvent(kind, text, name, ok))

    def new_message(self, role: str, kind: str, content: str | None, **fields: Any) -> Message:
        message = Message(
            id=self.services.store.allocate_message_id(), agent_id=self.id, role=role, kind=kind,
            content=content, created_at=fields.pop("created_at", None) or utcnow(), **fields,
        )
        return message

    def append(self, message: Message) -> Message:
        """Put a message at the end of the FIFO queue (and into recall at commit)."""
        self.queue.append(message)
        self._new.append(message)
        self.recall_count += 1
        return message

    def mark_updated(self, message: Message) -> None:
        self._updated.add(message.id)

    def add_statements(self, statements: list[Statement]) -> None:
        self._statements.extend(statements)

    def core_changed(self) -> None:
        self._dirty_core = True
        self.core_updated_at = utcnow()

    def deliver(self, text: str) -> None:
        """A reply: shown and handed to the adapter once the commit that holds it is done."""
        self._result.replies.append(text)
        self._unsent.append(text)

    def notice(self, text: str) -> None:
        self._result.notices.append(text)
        self._emit("notice", text)

    def record_usage(self, purpose: str, completion: Completion) -> None:
        usage = completion.usage
        self._statements.append((
            "INSERT INTO usage (agent_id, created_at, purpose, model, prompt_tokens,"
            " completion_tokens, total_tokens) VALUES (?,?,?,?,?,?,?)",
            (self.id, iso(utcnow()), purpose, completion.model, usage.prompt_tokens,
             usage.completion_tokens, usage.total_tokens),
        ))
        self._result.llm_calls += 1
        self._result.llm_seconds += completion.wait_seconds

    async def archive(self, content: str, source: str | None = None) -> int:
        ids, statements = await self.archival.insert(self.id, content, source)
        self._statements.extend(statements)
        self.archival_count += len(ids)
        return len(ids)

    def commit_statements(self) -> list[Statement]:
        statements: list[Statement] = [(INSERT_MESSAGE, m.row(self.tag)) for m in self._new]
        new_ids = {m.id for m in self._new}
        wanted = self._updated - new_ids
        by_id: dict[int, Message] = {}
        for message in reversed(self.queue):  # usually the turn's inputs, at the end
            if len(by_id) == len(wanted):
                break
            if message.id in wanted:
                by_id[message.id] = message
        for message_id in sorted(wanted):
            message = by_id.get(message_id)
            in_context = int(message.in_context) if message else 0
            pending = int(message.pending) if message else 0
            statements.append((
                "UPDATE messages SET in_context=?, pending=?, content=?, text=?, tool_calls=?,"
                " position=COALESCE(?, position) WHERE id=? AND agent_id=?",
                (in_context, pending, message.content, message.text,
                 message.tool_calls_json(), message.position, message_id, self.id),
            ) if message else (
                "UPDATE messages SET in_context=0, pending=0 WHERE id=? AND agent_id=?",
                (message_id, self.id),
            ))
        if self._dirty_core:
            statements += self.core.save_statements(self.id, iso(self.core_updated_at or utcnow()))
        statements.append(self.state_statement())
        return statements + self._statements

    def state_statement(self) -> Statement:
        return (
            "UPDATE agents SET summary=?, core_updated_at=?, warning_sent=?, options=?"
            " WHERE id=?",
            (self.summary, iso(self.core_updated_at) if self.core_updated_at else None,
             int(self.warning_sent), json.dumps(self.options), self.id),
        )

    async def commit(self) -> None:
        await self.services.store.commit(self.commit_statements())
        self.archival.mark_committed(self.id)
        self._clear_writes()

    async def abandon(self) -> None:
        """Forget uncommitted work (the engine reloads the agent from the database)."""
        await self.archival.discard_uncommitted(self.id)
        self._reset_turn()

    # --- a turn ---------------------------------------------------------------------------------

    async def run_turn(self, inputs: list[Message], sink: EventSink | None = None,
                       courier: Courier | None = None) -> TurnResult:
        """Process input events (already stored as pending) through LLM steps until done.
        Replies reach the sink (as "message" events) and the courier as their step's commit
        ends; result.outbox lists them all, result.handed_over those the courier took."""
        self._reset_turn()
        self._sink = sink
        self._courier = courier
        self._target = reply_target(inputs)
        for message in inputs:
            message.in_context = True
            message.pending = False
            # It joins the context now: after the turn that was running when it arrived.
            message.position = self.services.store.allocate_position()
            self.queue.append(message)
            self.mark_updated(message)
        if inputs:  # their speakers' blocks join the context with them
            self._statements += await self.people.arrive(inputs, inputs[-1].position or 0)
        self._result.answered_ids = [m.id for m in inputs if m.kind == "user_message"]
        self._turn.person = bool(self._result.answered_ids)
        try:
            await self._steps()
        except LLMError as error:
            log.warning("turn of %s stopped: %s", self.id, error)
            self.notice(f"Sorry, I couldn't think just now: {error} Your message is saved.")
        result = self._result
        said = self._unsent
        items = self._queue_outbox([*said, *result.notices])
        if self.continuation is not None:  # the turn ends here: nothing left to resume
            self._statements.append(("DELETE FROM messages WHERE id=? AND agent_id=? AND"
                                     " pending=1", (self.continuation.id, self.id)))
        await self.commit()
        await self._hand_over(said, items, more=False)
        self._reset_turn()
        return result

    async def publish(self) -> None:
        """Mid-turn: commit the turn so far with the replies said in it, then hand them over,
        so the person sees each reply as its step ends. The first time, a pending event is
        committed with it: should the process die before the turn's end, the restart runs a
        turn for it (the pending inputs) that finishes the work, and the sent part, already in
        the context and the outbox, is neither lost nor said again."""
        if self.continuation is None:
            event = self.new_message(
                "user", "heartbeat", pack_system_event("heartbeat", INTERRUPTED, self.now_text()),
                external_id=self._target,
            )
            event.in_context = False
            event.pending = True
            self.continuation = event
            self._statements.append((INSERT_MESSAGE, event.row(self.tag)))
        said = self._unsent
        items = self._queue_outbox(said)
        await self.commit()
        await self._hand_over(said, items, more=True)

    def _queue_outbox(self, texts: list[str]) -> list[Outgoing]:
        items, statements = outbox_rows(self.id, self._target, texts)
        self._result.outbox.extend(items)
        self._statements.extend(statements)
        return items

    async def _hand_over(self, said: list[str], items: list[Outgoing], *, more: bool) -> None:
        """Committed replies to the adapter. A courier failing leaves them in the outbox (the
        adapter's own after-turn or start-up delivery takes them), never fails the turn."""
        self._unsent = []
        for text in said:
            self._emit("message", text)
        if not items or self._courier is None:
            return
        try:
            await self._courier(items, more)
        except Exception:
            log.exception("could not hand the replies of %s over; they stay in the outbox",
                          self.id)
        else:
            self._result.handed_over.update(item.id for item in items)

    def now_text(self) -> str:
        return local_time_text(utcnow(), self.services.context.tz)

    def _fresh_call_id(self) -> str:
        """An id for a call the model gave none (text calls, plain text stored as a call): nine
        letters and digits, the one shape every provider takes (bot/messages.py make_call_id)."""
        return make_call_id("c", self.services.store.allocate_message_id())

    def _clip_output(self, text: str) -> str:
        limit = self.services.tool_output_limit
        if len(text) <= limit:
            return text
        return text[:limit] + f"\n[… output truncated: {len(text) - limit} more characters]"

    async def fit_context(self) -> None:
        context = self.services.context
        tokens = context.count(self, utcnow())
        budget = context.budget
        if tokens >= budget.flush_at:
            await self.evict(budget.target)
        elif tokens >= budget.warning_at and not self.warning_sent:
            self.warn_memory_pressure(tokens)

    def warn_memory_pressure(self, tokens: int) -> None:
        alert = self.services.context.pressure_alert(tokens)
        self.warning_sent = True
        self.append(self.new_message(
            "user", "system_alert", pack_system_event("system_alert", alert, self.now_text())
        ))
        self._emit("memory", alert)

    async def evict(self, target: int) -> int:
        """Move the oldest messages out of context into a new recursive summary."""
        context = self.services.context
        cut = context.eviction_cut(self, target, utcnow())
        if cut == 0:
            return 0
        evicted = self.queue[:cut]
        self.summary = await context.summarize(self, evicted)
        self.queue = self.queue[cut:]
        for message in evicted:
            message.in_context = False
            self._updated.add(message.id)
        self.warning_sent = False
        self._emit("memory", f"Summarized {cut} older messages; they stay in recall memory.")
        return cut

    # --- rendering of search results for the model ---------------------------------------------

    def render_recall_page(self, page: SearchPage) -> str:
        per_item = max(200, self.services.tool_output_limit // page.page_size)
        lines = [page.header()]
        lines += [self.recall.render_item(m, per_item) for m in page.items]
        return "\n".join(lines)

    def render_archival_page(self, page: PassagePage) -> str:
        if not page.total:
            return "Archival memory is empty."
        if not page.items:
            return f"No results on page {page.page}; there are {page.pages} pages (from 0)."
        per_item = max(200, self.services.tool_output_limit // page.page_size)
        first = page.page * page.page_size + 1
        lines = [
            f"Showing passages {first}-{first + len(page.items) - 1} of {page.total} ranked by"
            f" relevance (page {page.page} of pages 0-{page.pages - 1})."
        ]
        tz = self.services.context.tz
        for passage in page.items:
            text = passage.text
            if len(text) > per_item:
                text = text[:per_item] + f" […{len(text) - per_item} more characters]"
            when = passage.created_at.astimezone(tz).strftime("%Y-%m-%d")
            lines.append(f"[{when}] {text}")
        return "\n".join(lines)
