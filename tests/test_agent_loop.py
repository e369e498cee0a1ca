"""The agent loop against the scripted LLM over real HTTP, with real SQLite (and Chroma)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.engine import Engine
from bot.messages import unpack_tool_result
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call, calls, fail, raw_call, say


def tool_results(request: dict) -> list[dict]:
    """Each function result as {"status": "OK" | "Failed", "message": its report}."""
    results = []
    for message in request["messages"]:
        if message["role"] == "tool":
            ok, report = unpack_tool_result(message["content"])
            results.append({"status": "OK" if ok else "Failed", "message": report})
    return results


async def test_send_message_reaches_the_user(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(call("send_message", thoughts="Greet them.", message="Hi Alice!"))
    result = await engine.send("cli:a", "hello", sender_name="Alice", spec=SPEC)
    assert result.replies == ["Hi Alice!"]
    assert result.llm_calls == 1
    request = llm.requests[0]
    system = request["messages"][0]["content"]
    assert "<persona>\nMy name is Sam" in system and "persona 437/2000" in system
    assert "earlier messages are in recall memory" in system
    user = json.loads(request["messages"][-1]["content"])
    assert user == {"from": "Alice", "time": user["time"], "text": "hello"}
    assert {t["function"]["name"] for t in request["tools"]} == {
        "send_message", "core_memory_append", "core_memory_replace", "conversation_search",
        "conversation_search_date", "archival_memory_insert", "archival_memory_search",
    }


async def test_heartbeat_chain_edits_core_memory(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(
        call("core_memory_append", label="human", content="Name: Alice. Loves climbing.",
             request_heartbeat=True, inner_thoughts="Save this."),
        call("send_message", message="Noted, climber!"),
    )
    events = []
    result = await engine.send("cli:a", "I'm Alice and I love climbing", spec=SPEC,
                               on_event=events.append)
    assert result.replies == ["Noted, climber!"]
    assert result.steps == 2
    assert [e.kind for e in events if e.kind in ("thought", "call", "result", "message")] == [
        "thought", "call", "result", "message"]
    view = await engine.memory("cli:a")
    human = next(b for b in view.blocks if b["label"] == "human")
    assert human["value"].endswith("Name: Alice. Loves climbing.")
    second_request = llm.requests[1]
    assert "Loves climbing" in second_request["messages"][0]["content"]
    assert tool_results(second_request)[0]["status"] == "OK"


async def test_failed_calls_come_back_as_errors_the_model_can_fix(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(
        call("send_mesage", message="typo"),
        raw_call("core_memory_append",
                 '{"label": "human", "content": "likes tea", "request_heartbeat": true,}'),
        call("core_memory_replace", label="human", old_content="not there", new_content="x",
             request_heartbeat=True),
        call("core_memory_append", label="nope", content="x", request_heartbeat=True),
        call("conversation_search", page="abc", request_heartbeat=True),
        raw_call("send_message", "this is not json at all"),
        call("send_message", message="Fixed it."),
    )
    result = await engine.send("cli:a", "hi", spec=SPEC)
    assert result.replies == ["Fixed it."]
    results = tool_results(llm.requests[-1])
    assert [r["status"] for r in results] == [
        "Failed", "OK", "Failed", "Failed", "Failed", "Failed"]
    messages = [r["message"] for r in results]
    assert "no function named 'send_mesage'" in messages[0]
    assert "not found" in messages[2]
    assert "no core memory block named 'nope'" in messages[3]
    assert "must be a integer" in messages[4] or "Missing required" in messages[4]
    assert "not valid JSON" in messages[5]
    # The repaired call (trailing comma) was applied.
    view = await engine.memory("cli:a")
    assert "likes tea" in next(b for b in view.blocks if b["label"] == "human")["value"]


async def test_core_memory_limit_is_enforced(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(
        call("core_memory_append", label="human", content="x" * 3000, request_heartbeat=True),
        call("send_message", message="ok"),
    )
    await engine.send("cli:a", "hi", spec=SPEC)
    [failure] = tool_results(llm.requests[-1])
    assert failure["status"] == "Failed" and "limit is 2000" in failure["message"]


async def test_step_cap_tells_the_user(make_settings, llm: ScriptedLLM) -> None:
    # A new query each step (the same one again would be stopped as a loop, test_model_answers).
    llm.handler = lambda req: call("conversation_search", query=f"anything {len(llm.requests)}",
                                   request_heartbeat=True)
    async with Engine(make_settings(step_cap=3)) as engine:
        result = await engine.send("cli:a", "hi", spec=SPEC)
    assert result.steps == 3 and llm.chat_calls == 3
    assert result.replies == []
    assert "3 steps" in result.notices[0]


async def test_plain_text_reply_reaches_user_and_is_stored_as_send_message(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(say("Just plain words."), call("send_message", message="again"))
    result = await engine.send("cli:a", "hi", spec=SPEC)
    assert result.replies == ["Just plain words."]
    await engine.send("cli:a", "more", spec=SPEC)
    history = llm.requests[-1]["messages"]
    synthesized = next(m for m in history if m["role"] == "assistant")
    assert synthesized["tool_calls"][0]["function"]["name"] == "send_message"


async def test_plain_text_can_be_treated_as_monologue(make_settings, llm: ScriptedLLM) -> None:
    llm.push(say("I wonder what they want."), call("send_message", message="Hi there!"))
    async with Engine(make_settings(plain_text_replies=False)) as engine:
        events = []
        result = await engine.send("cli:a", "hi", spec=SPEC, on_event=events.append)
    # The monologue is not sent; the person still gets an answer: the next step asks for it.
    assert events[0].kind == "thought" and events[0].text == "I wonder what they want."
    assert result.replies == ["Hi there!"]
    system = llm.requests[0]["messages"][0]["content"]
    assert "Text with no function call at all stays private too." in system


async def test_llm_errors_retry_then_fail_honestly(make_settings, llm: ScriptedLLM) -> None:
    llm.push(fail(429, headers={"retry-after": "0"}), call("send_message", message="made it"))
    async with Engine(make_settings(llm_max_retries=2)) as engine:
        result = await engine.send("cli:a", "hi", spec=SPEC)
        assert result.replies == ["made it"]
        llm.push(fail(500), fail(500), fail(500))
        result = await engine.send("cli:a", "are you there?", spec=SPEC)
        assert result.replies == [] and "couldn't think" in result.notices[0]
        dump = await engine.dump("cli:a", 10)
        assert dump[-1].text == "are you there?" and not dump[-1].pending


async def test_several_calls_in_one_step_and_inner_thoughts_argument(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(calls([
        ("archival_memory_insert", {"content": "Alice's cat is called Miso.",
                                    "request_heartbeat": False,
                                    "inner_thoughts": "Store the cat's name."}),
        ("send_message", {"message": "Miso is a great name!"}),
    ]))
    events = []
    result = await engine.send("cli:a", "my cat is Miso", spec=SPEC, on_event=events.append)
    assert result.replies == ["Miso is a great name!"]
    assert any(e.kind == "thought" and "cat's name" in e.text for e in events)
    view = await engine.memory("cli:a")
    assert view.archival_count == 1


async def test_output_truncation(make_settings, llm: ScriptedLLM) -> None:
    async with Engine(make_settings(tool_output_limit=200)) as engine:
        await engine.agent("cli:a", SPEC)
        for i in range(6):  # long messages so a search page overflows the limit
            llm.push(call("send_message", message=f"reply {i}"))
            await engine.send("cli:a", f"banana story {i} " + "words " * 100, spec=SPEC)
        today = datetime.now(UTC).date().isoformat()
        llm.push(call("conversation_search_date", start_date=today, end_date=today,
                      request_heartbeat=True),
                 call("send_message", message="found them"))
        result = await engine.send("cli:a", "what about bananas?", spec=SPEC)
        assert result.replies == ["found them"]
        [found] = tool_results(llm.requests[-1])[-1:]
        assert "[… output truncated:" in found["message"]
