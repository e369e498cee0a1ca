"""Whatever tool calls a model returns, the agent sends its history back in a form the API takes.

The model's answer is replayed on every later step and turn. A name the API refuses (OpenAI:
letters, digits, "_" and "-", at most 64; tests/openai_rules.py) or an id it refuses (longer than
40 characters, or one id for two calls) would make every later request of that agent fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.engine import Engine
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, Step, call, raw_body
from tests.openai_rules import validate_messages


def answer_with(*tool_calls: tuple[str | None, str]) -> Step:
    """A chat completion whose tool calls have exactly these (id, name) pairs."""
    listed: list[dict[str, Any]] = []
    for call_id, name in tool_calls:
        entry: dict[str, Any] = {"type": "function",
                                 "function": {"name": name, "arguments": "{}"}}
        if call_id is not None:
            entry["id"] = call_id
        listed.append(entry)
    message = {"role": "assistant", "content": None, "tool_calls": listed}
    return raw_body(json.dumps({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))


@pytest.mark.parametrize("tool_calls", [
    [("call_1", "🙂")],
    [("call_1", "")],
    [("call_1", "send message")],
    [("call_1", "x" * 80)],
    [("c" * 41, "noop")],
    [("dup", "noop"), ("dup", "pause")],
    [(None, "noop"), (None, "noop")],
], ids=["emoji-name", "empty-name", "space-in-name", "long-name", "long-id", "same-id",
        "no-ids"])
async def test_odd_calls_from_the_model_are_replayed_validly(
    engine: Engine, llm: ScriptedLLM, tool_calls: list[tuple[str | None, str]]
) -> None:
    llm.push(answer_with(*tool_calls), call("send_message", message="Sorry, fixed."))
    result = await engine.send("cli:a", "hi", spec=SPEC)
    rejected = llm.take_violations()
    agent = await engine.agent("cli:a")
    queue = [m.to_openai() for m in agent.queue]
    assert rejected == []
    assert result.replies == ["Sorry, fixed."], result.notices
    assert validate_messages(queue) == []
    # The model is told what it actually called.
    results = [m.content or "" for m in agent.queue if m.role == "tool"]
    assert all("no function named" in r for r in results[:len(tool_calls)])
