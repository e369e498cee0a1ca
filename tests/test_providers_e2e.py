"""One conversation, end to end, against every provider profile (tests/providers/).

The scripted model here reads each request as a model would (what it was told, what its tools
returned) and decides what to do; the profile then plays the provider: what it rejects, what it
drops from the prompt, how it writes the answer (ids, text tool calls, think tags, ...). The same
conversation must work on every one: learn a name, store and find an archival passage, survive
an eviction with a summary, and answer after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Settings
from bot.engine import Engine
from tests import providers
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, Step, call, say

AGENT = "cli:e2e"
FILLER = "Here is some filler chat about the weather and my day, number {n}. " * 6


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _called_after(messages: list[dict[str, Any]], start: int) -> list[str]:
    """Names of the functions called after message `start`: in tool_calls, or, for a server
    that gets text tool calls replayed as text, the tool results' own names."""
    names: list[str] = []
    for message in messages[start + 1:]:
        for tool_call in message.get("tool_calls") or []:
            names.append(tool_call.get("function", {}).get("name", ""))
        if message.get("role") == "tool" and message.get("name"):
            names.append(message["name"])
    return names


# What the person says (a phrase the model recognises) -> the function it uses first, its
# arguments, and how it answers from what came back.
RULES: list[tuple[str, str | None, dict[str, Any], Callable[[str, str], str]]] = [
    ("I'm Ada", "core_memory_append", {"label": "human", "content": "Name: Ada"},
     lambda results, system: "Nice to meet you, Ada!"),
    ("my locker code is 4521", "archival_memory_insert",
     {"content": "Ada's locker code is 4521."}, lambda results, system: "Saved it."),
    ("What is my locker code", "archival_memory_search", {"query": "locker code"},
     lambda results, system: "It is 4521." if "4521" in results else "I can't find it."),
    ("What is my name", None, {},
     lambda results, system: "You are Ada." if "Ada" in system else "I don't know yet."),
    ("filler chat", None, {}, lambda results, system: "Sounds like a nice day."),
]


def companion(body: dict[str, Any]) -> Step:
    """The scripted model: acts on the latest thing a person said that it recognises."""
    messages = body.get("messages") or []
    if not body.get("tools"):  # the summarizer
        return say("Ada introduced herself and stored her locker code; then small talk.")
    system = " ".join(_text(m) for m in messages if m.get("role") in ("system", "developer"))
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") != "user":
            continue
        said = _text(message)
        for phrase, tool, arguments, answer in RULES:
            if phrase not in said:
                continue
            done = _called_after(messages, index)
            if tool and tool not in done:
                return call(tool, **arguments, request_heartbeat=True)
            results = " ".join(_text(m) for m in messages[index + 1:]
                               if m.get("role") in ("tool", "user"))
            return call("send_message", message=answer(results, system))
    return call("send_message", message="Hello!")


@pytest.mark.parametrize("profile", providers.names())
async def test_the_same_conversation_works_on_every_provider(
    profile: str, make_settings: Callable[..., Settings]
) -> None:
    async with ScriptedLLM(provider=profile) as llm:
        llm.handler = companion
        settings = make_settings(llm_base_url=llm.base_url, llm_model=llm.model,
                                 llm_context_window=6000, llm_max_response_tokens=200,
                                 **llm.provider.settings)

        async def say_to(engine: Engine, text: str) -> list[str]:
            result = await engine.send(AGENT, text, sender_name="Ada", spec=SPEC)
            assert result.notices == [], (profile, text, result.notices)
            return result.replies

        async with Engine(settings) as engine:
            assert await say_to(engine, "Hi, I'm Ada.") == ["Nice to meet you, Ada!"]
            agent = await engine.agent(AGENT)
            assert "Name: Ada" in agent.core.render()
            assert await say_to(engine, "Please remember: my locker code is 4521.") == [
                "Saved it."]
            assert await say_to(engine, "What is my locker code?") == ["It is 4521."]
            for n in range(80):
                assert await say_to(engine, FILLER.format(n=n)) == ["Sounds like a nice day."]
                if (await engine.agent(AGENT)).summary:
                    break
            agent = await engine.agent(AGENT)
            assert agent.summary, "no eviction happened"
            assert not any("4521" in (m.content or "") for m in agent.queue), "not evicted"
            assert await say_to(engine, "What is my locker code?") == ["It is 4521."]

        async with Engine(settings) as engine:  # a restart
            assert await say_to(engine, "What is my name?") == ["You are Ada."]
