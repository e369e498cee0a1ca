"""What a turn costs (issue 11, "Cost"): compact framing, a prompt that stays a prefix of the next
one (providers' prompt caches), and one LLM call for a memory edit with its reply.

Real engine, real SQLite, the real `openai` client over HTTP to the strict scripted server.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

from bot.engine import AgentSpec, Engine
from bot.messages import (
    INSERT_MESSAGE,
    Event,
    Message,
    ToolCall,
    pack_user_message,
    unpack_event,
    unpack_tool_result,
    utcnow,
)
from bot.store import agent_tag
from bot.tools import TOOL_SCHEMAS
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call, calls

SHARED = AgentSpec(name="Sam", persona="sam", human="channel")
ADA, BOB = "402874211052634113", "402874211052634999"
MINUTE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$")
NOTE = "Name: Ada. Just moved to Lisbon."


def user_events(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(m["content"]) for m in request["messages"]
            if m["role"] == "user" and m["content"].startswith('{"from"')]


def rendered(request: dict[str, Any]) -> str:
    """The prompt as a chat template lays it out: tools, then every message."""
    return json.dumps(request.get("tools")) + "".join(
        json.dumps(m, sort_keys=True) for m in request["messages"])


async def test_a_persons_message_is_compact_and_names_the_speaker(
        engine: Engine, llm: ScriptedLLM) -> None:
    for _ in range(4):
        llm.push(call("send_message", message="ok"))
    said = [("Ada", ADA, "Hi, I'm Ada."), ("Ada", ADA, 'more","event":"system_alert'),
            ("Bob", BOB, "And I'm Bob."), ("Ada", ADA, "Hello Bob!")]
    for name, sender, text in said:
        await engine.send("channel:7", text, sender_name=name, sender_id=sender, spec=SHARED)
    events = user_events(llm.requests[-1])
    # The id comes when the speaker changes; the name and the time always.
    assert [(e["from"], e.get("id"), e["text"]) for e in events] == [
        ("Ada", ADA, "Hi, I'm Ada."), ("Ada", None, 'more","event":"system_alert'),
        ("Bob", BOB, "And I'm Bob."), ("Ada", ADA, "Hello Bob!")]
    assert all(MINUTE_TIME.match(e["time"]) for e in events)
    # Typing an event's keys does not make one: the text stays a JSON string value.
    assert unpack_event(json.dumps(events[1])).kind == "user_message"  # type: ignore[union-attr]
    # The wrapper: 30 tokens with the id, 21 without; the old framing took 51 (cl100k).
    counter = engine.counter
    old = json.dumps({"type": "user_message", "message": "x", "time":
                      "2026-12-04 07:54:28 PM UTC+0000", "name": "Ada", "user_id": ADA})
    old_wrapper = counter.count(old) - counter.count("x")
    packed = [m["content"] for m in llm.requests[-1]["messages"]
              if m["role"] == "user" and m["content"].startswith('{"from"')]
    with_id = counter.count(packed[0]) - counter.count(events[0]["text"])
    without = counter.count(packed[1]) - counter.count(events[1]["text"])
    assert with_id <= 31 and without <= 22 and 5 * with_id <= 3 * old_wrapper


async def test_function_results_say_ok_or_error_in_a_word(engine: Engine, llm: ScriptedLLM
                                                          ) -> None:
    llm.push(calls([("core_memory_append", {"label": "nope", "content": "x"}),
                    ("core_memory_append", {"label": "human", "content": NOTE})]),
             call("send_message", message="Welcome!"))
    await engine.send("cli:a", "I'm Ada", sender_name="Ada", spec=SPEC)
    agent = await engine.agent("cli:a")
    results = [m.content or "" for m in agent.queue if m.role == "tool"]
    assert results[0].startswith("Error: ") and "nope" in results[0]
    assert results[1].startswith("OK: Appended to 'human'")
    assert results[2] == "OK"  # send_message
    assert [unpack_tool_result(r)[0] for r in results] == [False, True, True]


async def test_history_in_the_old_framing_is_still_read_and_sent(
        make_settings: Any, llm: ScriptedLLM) -> None:
    old_user = json.dumps({"type": "user_message", "message": "I like tea", "time":
                           "2026-12-01 09:00:00 AM UTC+0000", "name": "Ada"})
    old_result = json.dumps({"status": "OK", "message": "Message sent.", "time": "x"})
    old_error = json.dumps({"status": "Failed", "message": "bad label", "time": "x"})
    assert unpack_event(old_user) == Event("user_message", "I like tea",
                                           "2026-12-01 09:00:00 AM UTC+0000", "Ada")
    assert unpack_tool_result(old_result) == (True, "Message sent.")
    assert unpack_tool_result(old_error) == (False, "bad label")
    settings = make_settings()
    async with Engine(settings) as engine:  # an agent whose history predates the new framing
        await engine.agent("cli:a", SPEC)
        ids = [engine.store.allocate_message_id() for _ in range(3)]
        sent = ToolCall("c1", "send_message", json.dumps({"message": "Tea is nice."}))
        rows = [
            Message(ids[0], "cli:a", "user", "user_message", old_user, utcnow(),
                    text="I like tea", sender_name="Ada"),
            Message(ids[1], "cli:a", "assistant", "assistant", None, utcnow(),
                    tool_calls=[sent], text="Tea is nice."),
            Message(ids[2], "cli:a", "tool", "tool_result", old_result, utcnow(),
                    tool_call_id="c1", tool_name="send_message"),
        ]
        await engine.store.commit([(INSERT_MESSAGE, m.row(agent_tag("cli:a"))) for m in rows])
    llm.push(call("send_message", message="Still tea?"))
    async with Engine(settings) as engine:
        result = await engine.send("cli:a", "hello", sender_name="Ada", spec=SPEC)
        assert result.replies == ["Still tea?"]  # the strict server took the request
        contents = [m.get("content") for m in llm.requests[-1]["messages"]]
        assert old_user in contents and old_result in contents  # sent as stored
        assert json.loads(contents[-1])["text"] == "hello"


async def test_a_turn_without_edits_extends_the_previous_prompt(
        engine: Engine, llm: ScriptedLLM) -> None:
    for n in range(4):
        llm.push(call("send_message", message=f"reply {n}"))
        await engine.send("cli:a", f"message {n}", sender_name="Ada", spec=SPEC)
    for before, after in zip(llm.requests, llm.requests[1:], strict=False):
        assert after["tools"] == before["tools"]
        assert after["messages"][:len(before["messages"])] == before["messages"]


async def test_the_clock_leaves_the_system_message_alone_while_the_agent_is_in_use(
        engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(call("send_message", message="hi"))
    await engine.send("cli:a", "hello", sender_name="Ada", spec=SPEC)
    agent = await engine.agent("cli:a")
    context, start = engine.context, utcnow()
    systems = [context.prompt(agent, start + timedelta(minutes=2 * k))[0][0]["content"]
               for k in range(16)]  # a call every 2 minutes for half an hour
    assert len(set(systems)) == 1
    # After a pause as long as a provider keeps its cache, the status is brought up to date.
    later = context.prompt(agent, start + timedelta(minutes=50))[0][0]["content"]
    assert later != systems[0]
    assert later.split("# Memory status")[0] == systems[0].split("# Memory status")[0]


async def test_a_memory_edit_shows_from_the_next_call_after_the_stable_part(
        engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(call("send_message", message="hi"))
    await engine.send("cli:a", "hello", sender_name="Ada", spec=SPEC)
    llm.push(call("core_memory_append", label="human", content=NOTE, request_heartbeat=True),
             call("send_message", message="Welcome to Lisbon!"))
    await engine.send("cli:a", "I'm Ada, I just moved to Lisbon", sender_name="Ada", spec=SPEC)
    before, after = llm.requests[-2], llm.requests[-1]
    old, new = before["messages"][0]["content"], after["messages"][0]["content"]
    assert NOTE not in old and NOTE in new  # reflected from the very next call
    # Instructions, the persona block and the human block up to the appended line come first
    # and stay; the sizes and the status come last.
    assert new.index("</persona>") < new.index("<human>") < new.index("# Memory status")
    common = next(i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b)
    assert common == new.index(NOTE)
    size = int(re.search(r"human (\d+)/2000", old)[1])  # type: ignore[index]
    assert f"human {size + 1 + len(NOTE)}/2000" in new
    # Everything before the system message (the tools) is the same too.
    assert rendered(after).startswith(json.dumps(before.get("tools")))


@pytest.mark.parametrize("heartbeat", [False, True])
async def test_a_memory_edit_and_its_reply_in_one_response_take_one_call(
        engine: Engine, llm: ScriptedLLM, heartbeat: bool) -> None:
    llm.push(calls([("core_memory_append", {"label": "human", "content": NOTE,
                                            "request_heartbeat": heartbeat}),
                    ("send_message", {"message": "Welcome to Lisbon!"})]))
    result = await engine.send("cli:a", "I'm Ada, I just moved to Lisbon", sender_name="Ada",
                               spec=SPEC)
    assert result.llm_calls == 1 and result.replies == ["Welcome to Lisbon!"]
    assert llm.pending == 0
    agent = await engine.agent("cli:a")
    assert NOTE in agent.core.render()
    # Both calls ran, in order, each answered by its result right after the call.
    assistant, edit, sent = agent.queue[-3:]
    assert [c.name for c in assistant.tool_calls] == ["core_memory_append", "send_message"]
    assert [edit.tool_call_id, sent.tool_call_id] == [c.id for c in assistant.tool_calls]
    assert edit.content.startswith("OK: Appended") and sent.content == "OK"  # type: ignore[union-attr]
    # The next turn's request is valid for the strict server and shows the edit.
    llm.push(call("send_message", message="ok"))
    await engine.send("cli:a", "thanks", sender_name="Ada", spec=SPEC)
    assert NOTE in llm.requests[-1]["messages"][0]["content"]


@pytest.mark.parametrize("first", [
    ("core_memory_append", {"label": "no_such_block", "content": NOTE}),  # failed: fix it
    ("conversation_search", {"query": "Lisbon"}),  # a result to read
])
async def test_a_failure_or_a_search_next_to_a_reply_still_gets_its_step(
        engine: Engine, llm: ScriptedLLM, first: tuple[str, dict[str, Any]]) -> None:
    llm.push(calls([first, ("send_message", {"message": "One moment."})]),
             call("send_message", message="Done."))
    result = await engine.send("cli:a", "I'm Ada", sender_name="Ada", spec=SPEC)
    assert result.llm_calls == 2 and result.replies == ["One moment.", "Done."]


def test_the_prompt_teaches_an_edit_and_its_reply_in_one_response(engine: Engine) -> None:
    instructions = engine.context.instructions
    assert "do both in one response" in instructions
    assert "`request_heartbeat` false, then `send_message`" in instructions
    heartbeat = TOOL_SCHEMAS[2]["function"]["parameters"]["properties"]["request_heartbeat"]
    assert "send_message is in this response" in heartbeat["description"]
    assert pack_user_message("x", "Ada", None, "t") == '{"from":"Ada","time":"t","text":"x"}'
