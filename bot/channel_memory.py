"""What the agent hears without being asked: observed channel messages, and the edits and
deletions people make to messages it stored (matched by their external, e.g. Discord, id)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from bot.messages import Message, clean_text

if TYPE_CHECKING:
    from bot.engine import AgentSpec, Engine

log = logging.getLogger(__name__)
OVERHEARD = "overheard"  # a key of the packed event: the message was not addressed to the agent


def mark_overheard(content: str | None) -> str | None:
    """The packed person's message with "overheard": true before its text, so the model (and
    /retry) can tell it from the messages it was asked to answer."""
    try:
        event = json.loads(content or "")
    except ValueError:
        return content
    if not isinstance(event, dict) or "text" not in event:
        return content
    text = event.pop("text")
    event |= {OVERHEARD: True, "text": text}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def is_overheard(message: Message) -> bool:
    return message.kind == "user_message" and f'"{OVERHEARD}":true' in (message.content or "")


class ChannelMemoryMixin:
    async def observe(
        self: Engine, agent_id: str, text: str, *, sender_name: str | None = None,
        sender_id: str | None = None, external_id: str | None = None,
        spec: AgentSpec | None = None,
    ) -> Message:
        """Store a message the agent overheard: in recall and at the end of its context, with
        no turn (no LLM call). The unanswered run of overheard messages at the end of the
        context is capped; older ones leave the context (staying searchable in recall), and
        the usual eviction folds the context into the summary at the next turn."""
        async with self.slot(agent_id).lock:  # never in the middle of a turn
            message = await self.accept(
                agent_id, text, sender_name=sender_name, sender_id=sender_id,
                external_id=external_id, spec=spec, pending=False)
            agent = await self.agent(agent_id)
            message.in_context = True
            message.position = self.store.allocate_position()
            message.content = mark_overheard(message.content)
            agent.queue.append(message)
            run = 0  # the person messages after the agent's last own step
            while run < len(agent.queue) and agent.queue[-1 - run].kind == "user_message":
                run += 1
            dropped = agent.queue[len(agent.queue) - run:][:max(
                0, run - self.settings.observe_context_messages)]
            if dropped:
                gone = {m.id for m in dropped}
                agent.queue = [m for m in agent.queue if m.id not in gone]
            await self.store.commit([
                ("UPDATE messages SET in_context=1, position=?, content=? WHERE agent_id=?"
                 " AND id=?", (message.position, message.content, agent_id, message.id)),
                *[("UPDATE messages SET in_context=0 WHERE agent_id=? AND id=?",
                   (agent_id, m.id)) for m in dropped],
            ])
            return message

    async def edit_external(self: Engine, external_id: str, text: str) -> int:
        """A person edited a message the agent stored: recall (keywords and vectors, through
        the store's triggers) and the context hold the new text. Returns how many changed."""
        text = clean_text(text)
        changed = 0
        for agent_id, message_id in await self.recall.by_external_id(external_id):
            async with self.slot(agent_id).lock:
                statements = await self.recall.edit_statements(agent_id, message_id, text)
                if not statements:
                    continue  # the same text (e.g. Discord added a link preview)
                await self.store.commit(statements)
                if agent_id in self._agents:
                    await self.reload(agent_id)  # a message in context shows the new text
                changed += 1
        return changed

    async def delete_external(self: Engine, external_id: str) -> int:
        """A person deleted a message the agent stored: it leaves recall and the context."""
        removed = 0
        for agent_id, message_id in await self.recall.by_external_id(external_id):
            async with self.slot(agent_id).lock:
                await self.store.commit([(
                    "DELETE FROM messages WHERE agent_id=? AND id=?", (agent_id, message_id))])
                if agent_id in self._agents:
                    await self.reload(agent_id)
                removed += 1
        if removed:
            log.info("a deleted message left the memory of %d agent(s)", removed)
        return removed
