"""Fast, deterministic bulk data in the engine's own schema: agents, history, archival passages.

Messages go in through `Store.commit` with the engine's INSERT statement, so every trigger (FTS,
recall counters) runs exactly as for live turns. Archival vectors are synthetic: random unit
vectors of the real model's size (384), because what Chroma's search costs depends on the
number and size of the vectors, not on what they mean. Their passage rows are real SQLite rows.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from bench.words import sentence
from bot.engine import AgentSpec, Engine
from bot.memory.archival import INDEXED_KEY, INSERT_PASSAGE
from bot.messages import (
    INSERT_MESSAGE,
    Message,
    ToolCall,
    iso,
    pack_tool_result,
    pack_user_message,
)
from bot.store import Statement, agent_tag

BATCH = 5_000
START = datetime(2023, 1, 1, tzinfo=UTC)


@dataclass
class Filled:
    rows: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _turn(engine: Engine, agent_id: str, rng: random.Random, when: datetime,
          in_context: bool) -> list[Message]:
    """One past exchange as a live turn stores it: the person's message, the send_message call
    and its result."""
    said = sentence(rng)
    time_text = when.strftime("%Y-%m-%d %I:%M:%S %p UTC+0000")
    new_id = engine.store.allocate_message_id
    user = Message(
        id=new_id(), agent_id=agent_id, role="user", kind="user_message",
        content=pack_user_message(said, "Alice", "1001", time_text), created_at=when,
        text=said, sender_name="Alice", sender_id="1001", in_context=in_context,
    )
    reply = f"I remember: {sentence(rng, 8)}"
    call = ToolCall(f"call_{user.id}", "send_message", f'{{"message": "{reply}"}}')
    assistant = Message(
        id=new_id(), agent_id=agent_id, role="assistant", kind="assistant", content="Answer.",
        created_at=when, text=reply, tool_calls=[call], in_context=in_context,
    )
    result = Message(
        id=new_id(), agent_id=agent_id, role="tool", kind="tool_result",
        content=pack_tool_result(True, "Message sent.", time_text), created_at=when,
        tool_call_id=call.id, tool_name="send_message", in_context=in_context,
    )
    return [user, assistant, result]


async def history(engine: Engine, agent_id: str, messages: int, *, context_tokens: int = 0,
                  seed: int = 1, spec: AgentSpec | None = None) -> Filled:
    """Give an agent `messages` messages of past turns (a minute apart, oldest first); the newest
    ones, up to about `context_tokens`, stay in its context window like a live queue."""
    await engine.agent(agent_id, spec or AgentSpec())
    rng = random.Random(seed)
    turns = [
        _turn(engine, agent_id, rng, START + timedelta(minutes=i), False)
        for i in range(max(1, messages // 3))
    ]
    budget = context_tokens
    for turn in reversed(turns if budget > 0 else []):  # the newest turns that fit stay
        cost = sum(engine.context.message_tokens(m) for m in turn)
        if cost > budget:
            break
        budget -= cost
        for message in turn:
            message.in_context = True
    tag = agent_tag(agent_id)
    started = time.perf_counter()
    rows: list[Statement] = [(INSERT_MESSAGE, m.row(tag)) for turn in turns for m in turn]
    for first in range(0, len(rows), BATCH):
        await engine.store.commit(rows[first:first + BATCH])
    seconds = time.perf_counter() - started
    await engine.reload(agent_id)
    return Filled(len(rows), seconds)


def unit_vectors(count: int, dim: int, rng: np.random.Generator) -> list[list[float]]:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.tolist()


async def passages(engine: Engine, agent_id: str, count: int, *, dim: int = 384,
                   seed: int = 1) -> Filled:
    """`count` archival passages: text rows in SQLite, synthetic vectors in Chroma."""
    rng = random.Random(f"{agent_id}:{seed}")  # passage ids are unique across agents
    vrng = np.random.default_rng(seed)
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        size = min(BATCH, count - first)
        ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(size)]
        texts = [sentence(rng, 20) for _ in range(size)]
        when = iso(START + timedelta(seconds=first))
        await engine.vectors.add(agent_id, ids, unit_vectors(size, dim, vrng), texts,
                                 [{"created_at": when}] * size)
        await engine.store.commit(
            [(INSERT_PASSAGE, (pid, agent_id, text, None, when)) for pid, text in zip(
                ids, texts, strict=True)]
        )
    # As a load of the agent would leave it: the index is known to hold them all.
    total = await engine.store.scalar("SELECT COUNT(*) FROM passages WHERE agent_id=?",
                                      (agent_id,))
    await engine.store.commit([(
        "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
        " SET value=excluded.value", (INDEXED_KEY.format(agent_id), str(total)),
    )])
    return Filled(count, time.perf_counter() - started)


async def agents(engine: Engine, count: int, prefix: str = "dm:", messages: int = 0,
                 seed: int = 1) -> Filled:
    """`count` agents created the way the engine creates them, each with a few past turns."""
    started = time.perf_counter()
    rng = random.Random(seed)
    spec = AgentSpec(name="Sam", persona="sam", human="basic")
    blocks = engine._blocks_for(spec)  # the same blocks every new agent gets
    now = iso(datetime.now(UTC))
    batch: list[Statement] = []
    for index in range(count):
        agent_id = f"{prefix}{index}"
        batch.append((
            "INSERT INTO agents (id, name, created_at, persona_name, human_name, options)"
            " VALUES (?,?,?,?,?,?)", (agent_id, "Sam", now, "sam", "basic", "{}"),
        ))
        batch += [(
            "INSERT INTO core_blocks (agent_id, label, value, char_limit, position, updated_at)"
            " VALUES (?,?,?,?,?,?)", (agent_id, b.label, b.value, b.limit, b.position, now),
        ) for b in blocks]
        tag = agent_tag(agent_id)
        for turn in range(messages // 3):
            when = START + timedelta(minutes=turn)
            batch += [(INSERT_MESSAGE, m.row(tag))
                      for m in _turn(engine, agent_id, rng, when, True)]
        if len(batch) >= BATCH:
            await engine.store.commit(batch)
            batch = []
    await engine.store.commit(batch)
    return Filled(count, time.perf_counter() - started)
