"""LLM calls and prompt tokens per turn over the 200-turn script, and how much of each prompt is
a prefix the provider has already seen (what prompt caching can reuse)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.common import Section
from bench.driver import conversation, engine_on
from bench.llm_proc import LLMProcess
from bot.llm import RawJSON
from bot.tokens import TokenCounter


def _render(message: dict[str, Any]) -> str:
    """A message as a chat template lays it out: role, text, then any calls."""
    calls = json.dumps(message["tool_calls"]) if message.get("tool_calls") else ""
    return f"<|{message['role']}|>{message.get('content') or ''}{calls}<|end|>"


def _common(a: str, b: str) -> int:
    """Length of the common prefix of two strings (binary search on C-speed comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass
class Recorder:
    """Wraps the engine's LLM client: every chat call's prompt, rendered and counted."""

    counter: TokenCounter
    calls: list[tuple[int, int]] = field(default_factory=list)  # (prompt tokens, reusable)
    fixed: int = 0  # tokens every call starts with (tools + instructions), any agent
    _previous: list[str] = field(default_factory=list)
    _first: str | None = None
    _counts: dict[str, int] = field(default_factory=dict)

    def count(self, text: str) -> int:
        tokens = self._counts.get(text)
        if tokens is None:
            tokens = self._counts[text] = self.counter.count(text)
        return tokens

    def record(self, messages: list[Any], tools: list[dict[str, Any]] | None) -> None:
        parts = [json.dumps(tools or [], separators=(",", ":"))]
        parts += [_render(json.loads(m) if isinstance(m, RawJSON) else m) for m in messages]
        total = sum(self.count(p) for p in parts)
        reusable = 0
        for mine, theirs in zip(parts, self._previous, strict=False):
            if mine == theirs:
                reusable += self.count(mine)
                continue
            reusable += self.count(mine[:_common(mine, theirs)])
            break
        head = parts[0] + parts[1][:_common(parts[1], self._first or parts[1])]
        self._first = parts[1] if self._first is None else self._first
        self.fixed = self.count(head) if not self.calls else min(self.fixed, self.count(head))
        self.calls.append((total, reusable))
        self._previous = parts


async def run(quick: bool) -> Section:
    turns = 30 if quick else 200
    section = Section("LLM calls and prompt tokens", (
        f"{turns} turns of the 70/10/10/10 mix on one new agent, zero-latency LLM; tokens counted"
        " with the engine's tokenizer on the prompt as a chat template lays it out (tools, then"
        " messages); 'reusable' = the prefix identical to the same agent's previous call"))
    async with LLMProcess(0.0) as llm, engine_on(llm.base_url) as bench:
        recorder = Recorder(bench.engine.counter)
        client = bench.engine.llm
        chat = client.chat

        async def recording_chat(messages: Any, tools: Any = None, **options: Any) -> Any:
            recorder.record(list(messages), tools)
            return await chat(messages, tools, **options)

        client.chat = recording_chat  # type: ignore[method-assign]
        done = await conversation(bench, "cli:prompt", turns)
    per_turn: list[int] = []
    fresh_per_turn: list[int] = []
    index = 0
    for turn in done:
        mine = recorder.calls[index:index + turn.calls]
        index += turn.calls
        per_turn.append(sum(total for total, _ in mine))
        fresh_per_turn.append(sum(total - reused for total, reused in mine))
    totals = sum(t for t, _ in recorder.calls)
    reused = sum(r for _, r in recorder.calls[1:])
    plain = [t.calls for t in done if t.kind == "plain"]
    by_kind = {kind: statistics.mean(t.calls for t in done if t.kind == kind)
               for kind in ("plain", "core", "archive", "search")}
    figures = {
        "turns": turns, "calls": len(recorder.calls),
        "calls_per_plain_turn": statistics.mean(plain), "max_calls_plain": max(plain),
        "min_calls_plain": min(plain), "calls_by_kind": by_kind,
        "prompt_p50": statistics.median(per_turn), "prompt_first": per_turn[0],
        "prompt_last": per_turn[-1], "prompt_total": sum(per_turn),
        "fresh_p50": statistics.median(fresh_per_turn),
        "fixed_tokens": recorder.fixed,
        "fixed_share": recorder.fixed * len(recorder.calls) / totals,
        "reusable_share": reused / max(1, totals - recorder.calls[0][0]),
    }
    section.say(f"LLM calls: {len(recorder.calls)} for {turns} turns; per turn by kind: "
                + ", ".join(f"{k} {v:.2f}" for k, v in by_kind.items()))
    section.say(f"prompt tokens per turn: first {per_turn[0]}, p50 {figures['prompt_p50']:.0f},"
                f" last {per_turn[-1]}; total {sum(per_turn):,}")
    section.say(f"stable prefix: tools + instructions = {recorder.fixed} tokens"
                f" ({figures['fixed_share'] * 100:.0f}% of all prompt tokens)")
    section.say(f"reusable prefix (same as the agent's previous call):"
                f" {figures['reusable_share'] * 100:.1f}% of prompt tokens; tokens not reusable"
                f" per turn p50 {figures['fresh_p50']:.0f}")
    section.figures = figures
    return section
