"""LLM faults: a scripted model that randomly fails in every way an OpenAI-compatible server or a
weak model does — 429s, 5xx, timeouts, dropped connections, truncated or invalid JSON bodies,
unknown functions, wrong argument types, broken arguments, empty choices, `finish_reason:
length`, context-overflow errors, empty replies, malformed fields, endless heartbeats — while
several agents talk at once.

Nothing may crash, no agent may be left stuck (no pending message at the end, every agent still
answers), every message ends in a reply or a short honest notice, and the step cap and the
overflow/summary retries always end a turn after a bounded number of calls.

Quick size by default; MNEMOCORD_FULL=1 injects at least 1,000 faults.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from bot.agent import OVERFLOW_RETRIES
from bot.config import Settings
from bot.engine import AgentSpec, Engine
from tests.llm_server import (
    ScriptedLLM,
    Step,
    call,
    context_overflow,
    empty_choices,
    fail,
    hang,
    raw_body,
    raw_call,
    reset_connection,
    say,
    truncated,
)
from tests.sizes import pick, report
from tests.turns import turn_inputs

FAULTS = pick(150, 1000)
AGENTS = 6
MAX_RETRIES = 2
TOKEN = re.compile(r"\bq\d{5}\b")
AGENT = re.compile(r"\bagent-(\d+)\b|companion \"Agent(\d+)\"")
FAULT_RATE = 0.55


def _completion(message: dict[str, Any], **extra: Any) -> str:
    body = {"id": "x", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    body.update(extra)
    return json.dumps(body)


# Each fault kind: how the server (or the model) misbehaves. Kinds marked "chat only" are model
# misbehaviour that only makes sense when functions are offered.
TRANSPORT: dict[str, Callable[[random.Random], Step]] = {
    "429": lambda r: fail(429, "Rate limit reached", headers={"Retry-After": "0"}),
    "5xx": lambda r: fail(r.choice((500, 502, 503, 504))),
    "timeout": lambda r: hang(),
    "connection_reset": lambda r: reset_connection(),
    "truncated_json": lambda r: raw_body('{"id": "x", "choices": [{"index": 0, "message": {"ro'),
    "invalid_json": lambda r: raw_body(r.choice(("<html><body>Bad gateway</body></html>",
                                                 "not json", "[]", "null", '{"choices": 5}'))),
    "empty_choices": lambda r: empty_choices(),
    "context_overflow": lambda r: context_overflow(limit=2000),
    "empty_reply": lambda r: say(""),
    "malformed_fields": lambda r: raw_body(_completion(
        {"role": "assistant", "content": 42, "tool_calls": "nope"},
        usage={"prompt_tokens": "lots", "completion_tokens": None})),
}
MODEL: dict[str, Callable[[random.Random], Step]] = {
    "unknown_function": lambda r: call(r.choice(("teleport", "", "send message", "🙂")),
                                       destination="moon", request_heartbeat=True),
    "wrong_argument_types": lambda r: raw_call(*r.choice((
        ("core_memory_append", '{"label": ["human"], "content": {"x": 1}}'),
        ("archival_memory_search", '{"query": "x", "page": "second"}'),
        ("conversation_search_date", '{"start_date": 20240101, "end_date": true}'),
        ("pause_heartbeats", '{"minutes": 1e9}'),
        ("send_message", '{"message": ["a", "list"]}'),
    ))),
    "broken_arguments": lambda r: raw_call("send_message", r.choice((
        '{"message": "half a sentence', "{{{", "]]", "null", '"just a string"', "",
        '{"message": "a", "message": 5}', "{'message': 'single quotes', }",
    ))),
    "finish_length": lambda r: truncated(r.choice((
        say("I was about to say something when"),
        raw_call("send_message", '{"message": "cut off in the mid'),
        raw_call("core_memory_append", '{"label": "hum'),
    ))),
    "arguments_as_object": lambda r: raw_body(_completion({
        "role": "assistant", "content": None, "tool_calls": [{
            "id": "c1", "type": "function",
            "function": {"name": "send_message", "arguments": {"message": "an object"}},
        }],
    })),
}


class FaultyModel:
    """Answers like a model, or misbehaves; counts what it injected, per kind and agent."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.faults: Counter[str] = Counter()
        self.endless_steps = 0
        self.summaries = 0
        self.requests_by_agent: Counter[int] = Counter()
        self.faulty = True
        self.looping: set[int] = set()  # agents whose current turn the model never answers

    def __call__(self, request: dict[str, Any]) -> Step:
        system = request["messages"][0]["content"] if request.get("messages") else ""
        found = AGENT.search(str(system))
        agent = int(found.group(1) or found.group(2)) if found else -1
        self.requests_by_agent[agent] += 1
        chat = "tools" in request
        if chat and agent in self.looping:
            self.endless_steps += 1  # the model never answers: the step cap must end it
            return call("conversation_search", query="loop", request_heartbeat=True)
        if self.faulty and self.rng.random() < FAULT_RATE:
            kinds = {**TRANSPORT, **(MODEL if chat else {})}
            kind = self.rng.choice(sorted(kinds))
            self.faults[kind] += 1
            return kinds[kind](self.rng)
        if not chat:
            self.summaries += 1
            return say("Summary: a chat with some trouble on the line.")
        said, called = turn_inputs(request["messages"])
        if not called and self.rng.random() < 0.3:
            return call(self.rng.choice(("archival_memory_insert", "core_memory_append")),
                        label="human", content="Noted: " + " ".join(said)[:80],
                        request_heartbeat=True)
        tokens = [t for s in said for t in TOKEN.findall(s)]
        return call("send_message", message="re: " + " ".join(tokens))


NOTICES = (
    "Sorry, I couldn't think just now:",
    "I went around in circles",
    "Something went wrong on my side",
)


def _settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(llm_timeout=0.25, llm_max_retries=MAX_RETRIES, llm_retry_backoff=0.0,
                         llm_context_window=6000)


async def test_random_llm_faults_never_crash_or_strand_a_message(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    model = FaultyModel(random.Random(4242))
    llm.handler = model
    settings = _settings(make_settings)
    outcomes: Counter[str] = Counter()
    notices: Counter[str] = Counter()
    calls_per_turn: list[int] = []
    count = 0
    async with Engine(settings) as engine:
        specs = [AgentSpec(name=f"Agent{i}", persona_text=f"I am agent-{i}.")
                 for i in range(AGENTS)]

        async def talk(i: int) -> None:
            nonlocal count
            while sum(model.faults.values()) < FAULTS:
                count += 1
                token = f"q{count:05d}"
                words = "please loop forever" if count % 11 == 0 else "hello there"
                before = model.requests_by_agent[i]
                if "loop" in words:
                    model.looping.add(i)
                result = await engine.send(f"cli:faults-{i}", f"{token} {words}",
                                           sender_name="Tester", spec=specs[i])
                model.looping.discard(i)
                calls_per_turn.append(model.requests_by_agent[i] - before)
                texts = result.texts
                assert texts, f"{token}: no reply and no notice"
                for text in result.notices:
                    assert len(text) < 300 and "Traceback" not in text, text
                    assert text.startswith(NOTICES), text
                    notices[re.sub(r"\(\d+\)|\d+ steps", "(n)", text)] += 1
                if "loop" in words:
                    assert any(n.startswith("I went around in circles") for n in result.notices)
                answered = any(token in reply for reply in result.replies)
                outcomes["replied" if answered else "notice" if result.notices
                         else "other reply"] += 1

        await asyncio.gather(*(talk(i) for i in range(AGENTS)))
        assert await engine.pending_agent_ids() == []
        model.faulty = False  # nobody is stuck: each agent answers normally again
        for i in range(AGENTS):
            result = await engine.send(f"cli:faults-{i}", "q99999 all good?",
                                       sender_name="Tester")
            assert len(result.replies) == 1 and "q99999" in result.replies[0], result
            assert not engine.slot(f"cli:faults-{i}").lock.locked()

    # A turn ends after a bounded number of calls: steps x (overflow retries + 1) x (retries
    # + 1) chat calls, plus summaries (each with its own retries).
    bound = settings.step_cap * (OVERFLOW_RETRIES + 1) * (MAX_RETRIES + 1) * 4
    assert max(calls_per_turn) <= bound
    report("llm_faults", {
        "faults_injected": sum(model.faults.values()),
        "faults_by_kind": dict(sorted(model.faults.items())),
        "messages": len(calls_per_turn),
        "outcomes": dict(outcomes),
        "notices": dict(notices),
        "llm_requests": llm.chat_calls,
        "endless_heartbeat_steps": model.endless_steps,
        "summaries_answered": model.summaries,
        "max_llm_calls_in_one_turn": max(calls_per_turn),
        "agents": AGENTS,
    })
