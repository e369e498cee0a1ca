"""Engine commands (the MemGPT CLI set) and persistence across engine restarts."""

from __future__ import annotations

import json

import pytest

from bot.commands import CommandError
from bot.engine import Engine
from bot.messages import unpack_event
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call, calls, say


async def chat(engine: Engine, llm: ScriptedLLM, text: str, reply: str) -> None:
    llm.push(call("send_message", thoughts=f"thinking about {text}", message=reply))
    result = await engine.send("cli:a", text, sender_name="Alice", spec=SPEC)
    assert result.replies == [reply]


async def test_pop_removes_whole_call_groups(engine: Engine, llm: ScriptedLLM) -> None:
    await chat(engine, llm, "one", "reply one")
    await chat(engine, llm, "two", "reply two")
    before = (await engine.memory("cli:a")).recall_count
    removed = await engine.pop("cli:a", 1)  # would split call/result: takes the whole group
    assert removed == 2
    view = await engine.memory("cli:a")
    assert view.recall_count == before - 2
    assert (await engine.dump("cli:a", 1))[0].text == "two"
    with pytest.raises(CommandError):
        await engine.pop("cli:a", 0)


async def test_save_and_load_checkpoints(engine: Engine, llm: ScriptedLLM) -> None:
    await chat(engine, llm, "one", "reply one")
    await engine.save("cli:a", "before")
    llm.push(
        call("core_memory_append", label="human", content="Has a cat.", request_heartbeat=True),
        call("send_message", message="cats!"),
    )
    await engine.send("cli:a", "I have a cat", spec=SPEC)
    assert "Has a cat." in (await engine.memory("cli:a")).blocks[1]["value"]
    await engine.load("cli:a", "before")
    view = await engine.memory("cli:a")
    assert "Has a cat." not in view.blocks[1]["value"]
    assert view.in_context == 3 and view.checkpoints == ["before"]
    # The later messages stay in recall memory.
    assert (await engine.search_recall("cli:a", "cat")).total >= 1
    with pytest.raises(CommandError, match="no checkpoint"):
        await engine.load("cli:a", "missing")
    with pytest.raises(CommandError, match="not a valid name"):
        await engine.save("cli:a", "../../etc/passwd")


async def test_retry_rethink_rewrite(engine: Engine, llm: ScriptedLLM) -> None:
    await chat(engine, llm, "tell me a joke", "bad joke")
    llm.push(call("send_message", message="better joke"))
    result = await engine.retry("cli:a")
    assert result.replies == ["better joke"]
    dump = await engine.dump("cli:a", 10)
    assert [m.text for m in dump if m.text] == ["tell me a joke", "better joke"]
    await engine.rewrite("cli:a", "the best joke")
    await engine.rethink("cli:a", "I should be funnier")
    llm.push(call("send_message", message="ok"))
    await engine.send("cli:a", "next", spec=SPEC)
    history = llm.requests[-1]["messages"]
    assistant = [m for m in history if m["role"] == "assistant"][-1]
    assert assistant["content"] == "I should be funnier"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"])["message"] == (
        "the best joke")
    found = await engine.search_recall("cli:a", "best")
    assert found.items[0].text == "the best joke"  # the turns around it follow, as context
    assert "better joke" not in [m.text for m in found.items]


async def test_heartbeat_and_memory_warning_events(engine: Engine, llm: ScriptedLLM) -> None:
    await engine.agent("cli:a", SPEC)
    llm.push(call("send_message", message="just checking in"))
    result = await engine.heartbeat("cli:a")
    assert result.replies == ["just checking in"]
    event = unpack_event(llm.requests[-1]["messages"][-1]["content"])
    assert event is not None and event.kind == "heartbeat"
    llm.push(call("archival_memory_insert", content="Important: Alice likes tea."))
    await engine.memory_warning("cli:a")
    event = unpack_event(llm.requests[-1]["messages"][-1]["content"])
    assert event is not None and event.kind == "system_alert" and "Memory pressure" in event.text
    assert (await engine.memory("cli:a")).archival_count == 1


async def test_summarize_attach_tokens_export_reset(engine: Engine, llm: ScriptedLLM) -> None:
    for i in range(5):
        await chat(engine, llm, f"message {i}", f"reply {i}")
    llm.push(say("We said hello five times."))
    assert await engine.summarize("cli:a") > 0
    view = await engine.memory("cli:a")
    assert view.summary == "We said hello five times." and view.in_context <= 6
    count = await engine.attach("cli:a", "The manual. " * 400, source="manual.txt")
    assert count >= 2
    with pytest.raises(CommandError):
        await engine.attach("cli:a", "   ", source="empty.txt")
    tokens = await engine.tokens("cli:a")
    assert tokens["total"] >= tokens["tools"] + tokens["system"] + tokens["summary"]
    exported = await engine.export("cli:a")
    assert exported["agent"]["summary"] == "We said hello five times."
    assert len(exported["archival"]) == count
    assert any(m["text"] == "message 0" for m in exported["messages"])
    assert "sk-test-secret" not in json.dumps(exported)
    await engine.reset("cli:a")
    assert not await engine.exists("cli:a")
    assert await engine.vectors.count("cli:a") == 0
    assert (await engine.store.scalar("SELECT COUNT(*) FROM messages")) == 0


async def test_restart_resumes_every_agent_exactly(make_settings, llm: ScriptedLLM) -> None:
    async with Engine(make_settings()) as engine:
        llm.push(calls([
            ("core_memory_append", {"label": "human", "content": "Likes jazz.",
                                    "request_heartbeat": False}),
            ("send_message", {"message": "jazz noted"}),
        ]))
        await engine.send("cli:a", "I like jazz", spec=SPEC)
        llm.push(call("send_message", message="hello b"))
        await engine.send("cli:b", "hi", spec=SPEC)
        before = llm.requests[-1]["messages"][1:]
        state_a = await engine.memory("cli:a")
    async with Engine(make_settings()) as engine:
        assert await engine.memory("cli:a") == state_a
        llm.push(call("send_message", message="welcome back"))
        await engine.send("cli:b", "again", spec=SPEC)
        after = llm.requests[-1]["messages"][1:]
        assert after[: len(before)] == before  # the same queue, message for message


async def test_message_accepted_before_a_crash_is_answered_after_restart(
    make_settings, llm: ScriptedLLM
) -> None:
    async with Engine(make_settings()) as engine:
        await engine.accept("cli:a", "did you get this?", sender_name="Alice", spec=SPEC)
        # The process dies here: nothing answered the message.
    async with Engine(make_settings()) as engine:
        assert await engine.pending_agent_ids() == ["cli:a"]
        llm.push(call("send_message", message="yes I did"))
        result = await engine.resume("cli:a")
        assert result.replies == ["yes I did"]
        assert await engine.pending_agent_ids() == []
        assert (await engine.resume("cli:a")).replies == []  # answered at most once
