"""What a turn costs (issue 11, "Cost"): how much of an exchange is framing, how much of each
prompt the provider has seen before (its prompt cache), and LLM calls per memory-edit turn.

The engine is the real one on the scripted server (in this process: the figures are tokens, not
times). The scripted model answers from a per-turn plan, so every run replays the same exchange:

- the typical exchange: a person introduces themselves, the model saves it to core memory and
  answers; either in two steps (the edit with `request_heartbeat`, then `send_message`: what the
  old prompt taught), or in one response holding both calls (what bot/prompts/system.txt teaches
  now), with `request_heartbeat` false or, as weaker models still write it, true;
- the history: plain chat turns (one `send_message` each) with a two-step edit every fifth turn.

Tokens are counted with the engine's tokenizer. A message costs what `TokenCounter` charges it
(text, calls and 4 tokens of framing); the "words" of an exchange are what the person said,
the note saved, the reply and the model's thoughts, and everything else is wrapper. The stable
prefix is the prompt, laid out as a chat template does (tools, then messages), that is identical
to the same agent's previous call: what a provider's prompt cache (or a local server's KV cache)
can reuse.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from bench.common import SPEC, Section
from bench.driver import Bench, engine_on
from bench.prompt import _common, _render
from bench.words import sentence
from bot import agent as agent_module
from bot import engine as engine_module
from bot.tokens import PER_REPLY_PRIMING, TokenCounter
from tests.llm_server import ScriptedLLM, Step, call, calls, say

AGENT = "dm:402874211052634113"
PERSON = {"sender_name": "Ada", "sender_id": "402874211052634113"}
INTRO = "Hi! I'm Ada, by the way. I just moved to Lisbon and I'm learning Portuguese."
NOTE = "Name: Ada. Just moved to Lisbon; learning Portuguese."
REPLY = "Welcome to Lisbon, Ada! How is the Portuguese going so far?"
THOUGHT = "New person: remember her name and city."
WORD_ARGS = ("inner_thoughts", "content", "new_content", "message", "query")


class Model:
    """The scripted model: each turn's planned steps, then `send_message` if asked again."""

    def __init__(self) -> None:
        self.plan: list[Step] = []
        self.extra = 0  # steps nobody planned (the agent asked for more than the model meant)

    def __call__(self, body: dict[str, Any]) -> Step:
        if not body.get("tools"):
            return say("They chatted about their week; nothing else stood out.")
        if self.plan:
            return self.plan.pop(0)
        self.extra += 1
        return call("send_message", message="(again) " + REPLY)


class Clock:
    """The engine's clock, moved forward on demand (every module that reads the time for a
    turn reads it through its own `utcnow` name)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._real = agent_module.utcnow

    def now(self) -> datetime:
        return self._real() + self.offset

    @contextmanager
    def installed(self) -> Iterator[Clock]:
        saved = agent_module.utcnow, engine_module.utcnow
        agent_module.utcnow = engine_module.utcnow = self.now  # type: ignore[assignment]
        try:
            yield self
        finally:
            agent_module.utcnow, engine_module.utcnow = saved


def _rendered(body: dict[str, Any]) -> str:
    tools = json.dumps(body.get("tools") or [], separators=(",", ":"))
    return tools + "".join(_render(m) for m in body["messages"])


def prompt_tokens(counter: TokenCounter, body: dict[str, Any]) -> int:
    """A request's prompt as the engine estimates it: tools, messages, reply priming."""
    tokens = counter.count_tools(body.get("tools") or []) + PER_REPLY_PRIMING
    return tokens + sum(counter.count_message(m) for m in body["messages"])


def stable_prefix(counter: TokenCounter, before: dict[str, Any], after: dict[str, Any]
                  ) -> tuple[int, int, bool]:
    """Tokens at the start of `after` identical to the start of `before`, tokens of `after`
    (both as rendered), and whether all of `before` is a prefix of `after`."""
    a, b = _rendered(before), _rendered(after)
    common = _common(a, b)
    return counter.count(b[:common]), counter.count(b), common == len(a)


def words(counter: TokenCounter, message: dict[str, Any], said: dict[str, str]) -> int:
    """The tokens of a message that are words (see the module docstring), not wrapper."""
    if message["role"] == "user":
        content = message.get("content") or ""
        return counter.count(said.get(content, ""))
    if message["role"] != "assistant":
        return 0  # a function's result: its status and report are framing here
    total = counter.count(message.get("content") or "")  # monologue as plain text
    for tool_call in message.get("tool_calls") or []:
        try:
            arguments = json.loads(tool_call["function"]["arguments"])
        except ValueError:
            continue
        total += sum(counter.count(str(arguments[k])) for k in WORD_ARGS if arguments.get(k))
    return total


class Run:
    def __init__(self, bench: Bench, llm: ScriptedLLM, model: Model, clock: Clock,
                 agent_id: str = AGENT) -> None:
        self.bench, self.llm, self.model, self.clock = bench, llm, model, clock
        self.agent_id = agent_id
        self.counter = bench.engine.counter
        self.said: dict[str, str] = {}  # packed content -> the words the person said
        self.rng = random.Random(11)

    async def turn(self, text: str, *plan: Step, minutes: float = 0.5) -> tuple[int, int]:
        """One turn; returns (index of its first request, LLM calls)."""
        self.clock.offset += timedelta(minutes=minutes)
        self.model.plan = list(plan)
        first = len(self.llm.requests)
        result = await self.bench.engine.send(self.agent_id, text, spec=SPEC, **PERSON)
        self.model.plan = []
        agent = await self.bench.engine.agent(self.agent_id, SPEC)
        for message in agent.queue:
            if message.kind == "user_message" and message.content:
                self.said[message.content] = message.text or ""
        return first, result.llm_calls

    async def plain(self, minutes: float = 0.5) -> tuple[int, int]:
        reply = sentence(self.rng, 10)
        return await self.turn(sentence(self.rng, 14),
                               call("send_message", message=reply, inner_thoughts="Answer."),
                               minutes=minutes)

    async def edit_two_steps(self, text: str = INTRO) -> tuple[int, int]:
        return await self.turn(
            text,
            call("core_memory_append", label="human", content=NOTE, request_heartbeat=True,
                 inner_thoughts=THOUGHT),
            call("send_message", message=REPLY))

    async def edit_one_response(self, heartbeat: bool, text: str = INTRO) -> tuple[int, int]:
        return await self.turn(text, calls([
            ("core_memory_append", {"inner_thoughts": THOUGHT, "label": "human",
                                    "content": NOTE, "request_heartbeat": heartbeat}),
            ("send_message", {"message": REPLY})]))

    async def history(self, messages: int) -> None:
        """Grow the context to at least `messages` messages of past turns."""
        agent = await self.bench.engine.agent(self.agent_id, SPEC)
        done = 0
        while len(agent.queue) < messages:
            if done % 5 == 4:
                await self.edit_two_steps(sentence(self.rng, 12) + " " + INTRO)
            else:
                await self.plain()
            done += 1
            agent = await self.bench.engine.agent(self.agent_id, SPEC)

    def tokens(self, body: list[dict[str, Any]]) -> tuple[int, int]:
        total = sum(self.counter.count_message(m) for m in body)
        return total, sum(words(self.counter, m, self.said) for m in body)

    async def turn_messages(self, first: int) -> list[dict[str, Any]]:
        """Every message the turn added, as the next call will send them."""
        agent = await self.bench.engine.agent(self.agent_id, SPEC)
        context = self.bench.engine.context
        start = len(self.llm.requests[first]["messages"]) - 2  # -1 system, -1 the new input
        queue = agent.queue
        summary = 1 if agent.summary else 0
        return [context.clipped(m) for m in queue[start - summary:]]


async def _scenario(quick: bool) -> dict[str, Any]:
    llm = ScriptedLLM(strict=True)
    model = Model()
    llm.handler = model
    clock = Clock()
    figures: dict[str, Any] = {}
    async with llm, engine_on(llm.base_url) as bench:
        counter = bench.engine.counter
        await counter.ready()
        run = Run(bench, llm, model, clock)
        with clock.installed():
            await run.plain()
            # The typical exchange, as the old prompt taught it and as the new one does.
            two_first, two_calls = await run.edit_two_steps()
            two = run.tokens(await run.turn_messages(two_first))
            plain_first, _ = await run.plain()
            plain = run.tokens(await run.turn_messages(plain_first))
            one_first, one_calls = await run.edit_one_response(heartbeat=False)
            one = run.tokens(await run.turn_messages(one_first))
            extra_before = model.extra
            _, hb_calls = await run.edit_one_response(heartbeat=True)
            figures["exchange"] = {
                "two_steps": {"tokens": two[0], "words": two[1], "calls": two_calls},
                "one_response": {"tokens": one[0], "words": one[1], "calls": one_calls},
                "one_response_heartbeat": {"calls": hb_calls,
                                           "unplanned_steps": model.extra - extra_before},
                "plain": {"tokens": plain[0], "words": plain[1]},
            }
            # Stable prefix across a memory edit (the edit's next call vs its own call) and
            # across a plain turn.
            requests = llm.requests
            edit = stable_prefix(counter, requests[two_first], requests[two_first + 1])
            after_one, _ = await run.plain()
            one = stable_prefix(counter, requests[one_first], requests[after_one])
            plain_before = len(requests) - 1
            after_plain, _ = await run.plain()
            plain = stable_prefix(counter, requests[plain_before], requests[after_plain])
            figures["prefix"] = {
                name: {"prefix": found[0], "prompt": found[1], "whole_previous": found[2]}
                for name, found in (("after_edit_two_steps", edit),
                                    ("after_edit_one_response", one), ("plain", plain))}
            # The clock: a message every 2 minutes for 30 minutes.
            broken, reused, total = 0, 0, 0
            for _ in range(15):
                before = len(requests) - 1
                first, _ = await run.plain(minutes=2)
                prefix, tokens, whole = stable_prefix(counter, requests[before], requests[first])
                broken += not whole
                reused += prefix
                total += tokens
            figures["clock"] = {"turns": 15, "prefix_broken": broken,
                                "reused_share": reused / total}
        # Prompt tokens per turn at 10 and 100 messages of history (a new agent each).
        sizes: dict[str, Any] = {}
        for size in (10, 40) if quick else (10, 100):
            sizes[str(size)] = await _at_size(bench, llm, model, size, counter)
        figures["sizes"] = sizes
    return figures


async def _at_size(bench: Bench, llm: ScriptedLLM, model: Model, size: int,
                   counter: TokenCounter) -> dict[str, Any]:
    clock = Clock()
    run = Run(bench, llm, model, clock, f"dm:{size}000")
    with clock.installed():
        await run.history(size)
        in_context = len((await bench.engine.agent(run.agent_id, SPEC)).queue)
        first, _ = await run.plain()
        history = run.tokens(llm.requests[first]["messages"][1:-1])
        plain = prompt_tokens(counter, llm.requests[first])
        first, calls_two = await run.edit_two_steps()
        two = sum(prompt_tokens(counter, r) for r in llm.requests[first:])
        first, calls_one = await run.edit_one_response(heartbeat=False)
        one = sum(prompt_tokens(counter, r) for r in llm.requests[first:])
    return {"messages": in_context, "plain_turn": plain, "edit_two_steps": two,
            "edit_two_steps_calls": calls_two, "edit_one_response": one,
            "edit_one_response_calls": calls_one, "history_tokens": history[0],
            "history_words": history[1]}


async def run(quick: bool) -> Section:
    section = Section("What a turn costs: framing, prompt cache, calls per memory edit", (
        "real engine on the scripted server in-process (strict OpenAI rules), DM agent, one"
        " person with an 18-digit id; tokens with the engine's tokenizer; 'words' = what the"
        " person said, the note saved, the reply and the thoughts; stable prefix = tokens of the"
        " rendered prompt (tools, then messages) identical to the agent's previous call"))
    f = await _scenario(quick)
    ex = f["exchange"]
    for key, label in (("two_steps", "user + edit call + result + send call + result"),
                       ("one_response", "user + one response with edit and send + 2 results"),
                       ("plain", "user + send call + result")):
        tokens, said = ex[key]["tokens"], ex[key]["words"]
        ex[key]["wrapper_share"] = 1 - said / tokens
        section.say(f"exchange ({label}): {tokens} tokens, {said} of them words: wrapper"
                    f" {100 * (1 - said / tokens):.0f}%")
    section.say(f"LLM calls per memory-edit turn: two steps {ex['two_steps']['calls']},"
                f" one response {ex['one_response']['calls']}, one response with"
                f" request_heartbeat true {ex['one_response_heartbeat']['calls']} (unplanned"
                f" extra steps: {ex['one_response_heartbeat']['unplanned_steps']})")
    p = f["prefix"]
    section.say("stable prefix (tokens identical to the previous call's start, of the prompt):"
                + "; ".join(f" {label} {p[key]['prefix']} of {p[key]['prompt']}" for key, label in (
                    ("after_edit_two_steps", "the call after a memory edit (same turn)"),
                    ("after_edit_one_response", "the turn after a one-response edit"),
                    ("plain", "a plain turn after a plain turn"))))
    c = f["clock"]
    section.say(f"a message every 2 minutes for 30 minutes: the previous prompt was not a prefix"
                f" {c['prefix_broken']} times in {c['turns']}; reusable share"
                f" {100 * c['reused_share']:.1f}%")
    for size, s in f["sizes"].items():
        section.say(
            f"[{size} messages of history: {s['messages']} in context, {s['history_tokens']}"
            f" tokens, wrapper {100 * (1 - s['history_words'] / s['history_tokens']):.0f}%]"
            f" prompt tokens per turn: plain {s['plain_turn']}; memory edit in two steps"
            f" {s['edit_two_steps']} ({s['edit_two_steps_calls']} calls), in one response"
            f" {s['edit_one_response']} ({s['edit_one_response_calls']} call)")
    section.figures = f
    return section
