"""Answers from real models, against the behaviour profiles of tests/providers/.

Each profile rewrites the scripted answer the way a kind of model or server writes it (calls as
text, <think> blocks, a reasoning field, content parts, a dropped request_heartbeat, a repeated
call, plain text for send_message); the agent must act on what was meant and show the person
only what was said to them. The strict OpenAI rules still check every request, so the history
the agent replays after each of these answers is one the API accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bot.agent import AgentEvent
from bot.completion import read_content
from bot.config import Settings
from bot.engine import Engine
from bot.messages import unpack_event, unpack_tool_result
from bot.steps import CUT_OFF_NOTE, FORCE_REPLY
from bot.textcalls import extract
from bot.tokens import TokenCounter
from bot.tools import TOOL_SCHEMAS, TOOLS, Param, ToolSpec
from tests.conftest import SPEC
from tests.llm_server import (
    ScriptedLLM,
    call,
    calls,
    context_overflow,
    fail,
    raw_body,
    raw_call,
    say,
    truncated,
)
from tests.providers.content_parts import THOUGHT as PARTS_THOUGHT
from tests.providers.reasoning_field import REASONING
from tests.providers.think_tags import THINKING

AGENT = "cli:answers"
RAW_MARKERS = ("<tool_call>", "[TOOL_CALLS]", '"name"', "<think>", "</think>", "[ARGS]")


async def talk(engine: Engine, text: str, events: list[AgentEvent] | None = None,
               ) -> tuple[list[str], list[str]]:
    result = await engine.send(AGENT, text, sender_name="Ada", spec=SPEC,
                               on_event=events.append if events is not None else None)
    return result.replies, result.notices


def thoughts(events: list[AgentEvent]) -> list[str]:
    return [e.text for e in events if e.kind == "thought"]


def human_block(engine: Engine) -> str:
    return engine._agents[AGENT].core.get("human").value


def tool_results(request: dict[str, Any]) -> list[str]:
    """The reports of the function results the request carries."""
    return [unpack_tool_result(m["content"])[1] for m in request["messages"]
            if m["role"] == "tool"]


def alerts(request: dict[str, Any]) -> list[str]:
    events = [unpack_event(m["content"]) for m in request["messages"] if m["role"] == "user"]
    return [e.text for e in events if e is not None and e.kind == "system_alert"]


# --- 1. tool calls written as text ----------------------------------------------------------


@pytest.mark.parametrize("profile", ["hermes-text-calls", "llama-text-calls",
                                     "mistral-text-calls"])
async def test_text_tool_calls_run_and_are_never_shown(
    profile: str, make_settings: Callable[..., Settings]
) -> None:
    async with ScriptedLLM(provider=profile) as llm:
        llm.push(
            call("core_memory_append", label="human", content="Name: Ada.",
                 request_heartbeat=True),
            call("send_message", message="Nice to meet you, Ada!"),
            call("archival_memory_insert", content="Ada's locker code is 4521.",
                 request_heartbeat=True),
            call("send_message", message="Saved."),
        )
        async with Engine(make_settings(llm_base_url=llm.base_url, llm_model=llm.model)
                          ) as engine:
            events: list[AgentEvent] = []
            assert await talk(engine, "Hi, I'm Ada", events) == (["Nice to meet you, Ada!"], [])
            assert human_block(engine).endswith("Name: Ada.")
            assert await talk(engine, "my locker code is 4521", events) == (["Saved."], [])
            assert (await engine.memory(AGENT)).archival_count == 1
        # The server really answered with text, and the person never saw any of it.
        first = llm.requests[0]
        assert "tools" in first
        shown = [e.text for e in events if e.kind in ("message", "notice", "thought")]
        assert not any(marker in text for text in shown for marker in RAW_MARKERS), shown
        # Replayed as real calls with ids, each answered by its tool result (OpenAI's rules,
        # checked on every request by the strict profile: no violations at exit).
        history = llm.requests[-1]["messages"]
        replayed = [m for m in history if m["role"] == "assistant" and m.get("tool_calls")]
        names = [c["function"]["name"] for m in replayed for c in m["tool_calls"]]
        assert names == ["core_memory_append", "send_message", "archival_memory_insert"]
        assert all(not (m.get("content") or "").count("{") for m in replayed)


@pytest.mark.provider("hermes-text-calls")
async def test_text_beside_a_text_call_is_a_thought(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(call("send_message", thoughts="She greeted me; greet back.", message="Hello!"))
    events: list[AgentEvent] = []
    assert await talk(engine, "hello", events) == (["Hello!"], [])
    assert thoughts(events) == ["She greeted me; greet back."]


@pytest.mark.provider("llama-text-calls")
async def test_json_for_an_unknown_function_stays_text(engine: Engine, llm: ScriptedLLM) -> None:
    # A JSON example in an answer is no call: only the agent's own functions are taken.
    example = '{"name": "Bob", "parameters": {"age": 3}}'
    llm.push(say(example))
    assert await talk(engine, "show me a JSON example") == ([example], [])


def test_text_call_formats_are_read() -> None:
    known = set(TOOLS)
    hermes = extract('Saving.\n<tool_call>\n{"name": "core_memory_append", "arguments": '
                     '{"label": "human", "content": "x",}}\n</tool_call>', known)
    assert hermes.text == "Saving." and [c.name for c in hermes.calls] == ["core_memory_append"]
    assert json.loads(hermes.calls[0].arguments) == {"label": "human", "content": "x"}
    cut = extract('<tool_call>\n{"name": "send_message", "arguments": {"message": "Hi', known)
    assert [c.name for c in cut.calls] == ["send_message"] and cut.text is None
    llama = extract('<|python_tag|>{"name": "send_message", "parameters": {"message": "a"}}; '
                    '{"name": "send_message", "parameters": {"message": "b"}}', known)
    assert [json.loads(c.arguments)["message"] for c in llama.calls] == ["a", "b"]
    fenced = extract('```json\n{"name": "send_message", "parameters": {"message": "f"}}\n```',
                     known)
    assert [c.name for c in fenced.calls] == ["send_message"]
    mistral = extract('[TOOL_CALLS]send_message[ARGS]{"message": "v11"}', known)
    assert [(c.name, c.arguments) for c in mistral.calls] == [
        ("send_message", '{"message": "v11"}')]
    listed = extract('[TOOL_CALLS] [{"name": "send_message", "arguments": {"message": "v3"}}]',
                     known)
    assert json.loads(listed.calls[0].arguments) == {"message": "v3"}
    for text in ('<tool_call>{"name": "teleport", "arguments": {}}</tool_call>',
                 '[TOOL_CALLS][{"name": "teleport", "arguments": {}}]',
                 '{"name": "send_message", "parameters": {}} and more words',
                 "Just words, {not json}."):
        assert extract(text, known).calls == [] and extract(text, known).text == text


# --- 2. reasoning: <think> blocks, reasoning fields, thinking parts ---------------------------


@pytest.mark.provider("think-tags")
async def test_think_blocks_are_thoughts_never_sent(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(say("Hello Ada!"), say("Still here."),  # opened by the model, then by the template
             call("send_message", message="And a call."))
    events: list[AgentEvent] = []
    assert await talk(engine, "hi", events) == (["Hello Ada!"], [])
    assert await talk(engine, "hi again", events) == (["Still here."], [])
    assert await talk(engine, "once more", events) == (["And a call."], [])
    assert thoughts(events) == [THINKING] * 3
    # Not replayed: the model's template drops old reasoning too, and it would cost tokens.
    assert THINKING not in json.dumps(llm.requests[-1]["messages"])


@pytest.mark.provider("think-tags")
async def test_a_thinking_summarizer_leaves_no_think_block_in_the_summary(
    engine: Engine, llm: ScriptedLLM
) -> None:
    for n in range(3):
        llm.push(call("send_message", message=f"reply {n}"))
        await talk(engine, f"message {n}")
    llm.push(say("Ada said three things."))
    assert await engine.summarize(AGENT) > 0
    assert (await engine.agent(AGENT)).summary == "Ada said three things."


@pytest.mark.provider("reasoning-field")
async def test_reasoning_field_is_a_thought_never_sent(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(call("send_message", message="Hi!"), say("Plain words."))
    events: list[AgentEvent] = []
    assert await talk(engine, "hi", events) == (["Hi!"], [])
    assert await talk(engine, "and?", events) == (["Plain words."], [])
    assert thoughts(events) == [REASONING, REASONING]


async def test_ollama_reasoning_field_with_empty_content(engine: Engine, llm: ScriptedLLM
                                                         ) -> None:
    # Ollama's /v1 puts a thinking model's thoughts in `reasoning`, content may be empty.
    body = {"id": "x", "object": "chat.completion", "model": "qwen3", "choices": [{
        "index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "", "reasoning": "Only thinking."}}]}
    llm.push(raw_body(json.dumps(body)), call("send_message", message="Now I answer."))
    events: list[AgentEvent] = []
    assert await talk(engine, "hi", events) == (["Now I answer."], [])
    assert thoughts(events) == ["Only thinking."]


def test_content_and_reasoning_are_read_in_every_shape() -> None:
    assert read_content("<think>\nhmm\n</think>\n\nHello") == ("Hello", "hmm")
    assert read_content("hmm</think>Hello") == ("Hello", "hmm")  # opened by the template
    assert read_content("<think>cut off mid-thought") == (None, "cut off mid-thought")
    assert read_content([{"type": "thinking", "thinking": [{"type": "text", "text": "t"}]},
                         {"type": "text", "text": "He"}, {"type": "text", "text": "llo"}]
                        ) == ("Hello", "t")
    assert read_content(42) == (None, None) and read_content([]) == (None, None)


# --- 7. content as a list of parts ---------------------------------------------------------


@pytest.mark.provider("content-parts")
async def test_content_parts_are_read(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(say("Hello there, Ada."), call("send_message", message="A call too."))
    events: list[AgentEvent] = []
    assert await talk(engine, "hi", events) == (["Hello there, Ada."], [])
    assert await talk(engine, "hi", events) == (["A call too."], [])
    assert thoughts(events) == [PARTS_THOUGHT, PARTS_THOUGHT]


# --- 3. plain text after a reply or a function result is monologue --------------------------


async def test_plain_text_after_send_message_is_not_a_second_message(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(  # a search next to the reply still gets its step (its result must be read)
        calls([("send_message", {"message": "Tea, lovely!"}),
               ("conversation_search", {"query": "tea", "request_heartbeat": True})]),
        say("I told her I like it too."),
    )
    events: list[AgentEvent] = []
    assert await talk(engine, "I like tea", events) == (["Tea, lovely!"], [])
    assert "I told her I like it too." in thoughts(events)
    assert llm.chat_calls == 2


async def test_plain_text_after_a_function_result_is_monologue(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(
        call("conversation_search", query="birthday", request_heartbeat=True),
        say("Nothing about a birthday. I should say so."),
        call("send_message", message="I don't remember a birthday, sorry."),
    )
    events: list[AgentEvent] = []
    assert await talk(engine, "when is my birthday?", events) == (
        ["I don't remember a birthday, sorry."], [])
    assert "Nothing about a birthday. I should say so." in thoughts(events)
    assert llm.requests[2]["tool_choice"] == FORCE_REPLY
    system = llm.requests[0]["messages"][0]["content"]
    assert "sent as your reply only when it is your first answer" in system
    assert "{plain_text}" not in system


async def test_plain_text_after_a_heartbeat_is_monologue(engine: Engine, llm: ScriptedLLM
                                                         ) -> None:
    await engine.agent(AGENT, SPEC)
    llm.push(say("A quiet moment; nothing to do."))
    events: list[AgentEvent] = []
    result = await engine.event(AGENT, "heartbeat", "timer", on_event=events.append)
    assert result.replies == [] and result.notices == []
    assert thoughts(events) == ["A quiet moment; nothing to do."]
    assert llm.chat_calls == 1  # nobody waits: no request for a reply


# --- 4. a person's turn that ends without a reply -------------------------------------------


@pytest.mark.provider("missing-heartbeat")
async def test_missing_heartbeat_after_a_memory_edit_still_answers(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(call("core_memory_append", label="human", content="Name: Ada.",
                  request_heartbeat=True),  # the profile drops request_heartbeat
             call("send_message", message="Nice to meet you, Ada!"))
    assert await talk(engine, "I'm Ada") == (["Nice to meet you, Ada!"], [])
    _, asked = llm.requests
    edit = json.loads(asked["messages"][-3]["tool_calls"][0]["function"]["arguments"])
    assert "request_heartbeat" not in edit
    assert asked["tool_choice"] == FORCE_REPLY
    assert "Reply to the person now with send_message" in alerts(asked)[-1]


@pytest.mark.provider("hermes-text-calls")
async def test_asking_works_where_tool_choice_is_ignored(engine: Engine, llm: ScriptedLLM
                                                         ) -> None:
    # This server's model writes calls as text whatever tool_choice says: the words ask.
    llm.push(call("archival_memory_insert", content="Ada likes tea.", request_heartbeat=False),
             call("send_message", message="Noted."))
    assert await talk(engine, "remember I like tea") == (["Noted."], [])
    assert llm.chat_calls == 2


async def test_a_server_refusing_the_forced_choice_is_asked_without_it(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(call("core_memory_append", label="human", content="Ada.", request_heartbeat=False),
             fail(400, "tool_choice function is not supported", param="tool_choice"),
             call("send_message", message="Hi Ada."))
    assert await talk(engine, "I'm Ada") == (["Hi Ada."], [])
    assert llm.requests[1]["tool_choice"] == FORCE_REPLY
    assert llm.requests[2]["tool_choice"] == "auto"
    # Not tried again on later turns: the server said no.
    llm.push(call("core_memory_append", label="human", content="Tea.", request_heartbeat=False),
             call("send_message", message="Tea."))
    assert await talk(engine, "I like tea") == (["Tea."], [])
    assert llm.requests[4]["tool_choice"] == "auto" and llm.chat_calls == 5


async def test_no_reply_is_forced_when_nobody_waits(engine: Engine, llm: ScriptedLLM) -> None:
    await engine.agent(AGENT, SPEC)
    llm.push(call("core_memory_append", label="persona", content="I rest at night.",
                  request_heartbeat=False))
    result = await engine.event(AGENT, "heartbeat", "timer")
    assert result.replies == [] and result.notices == [] and llm.chat_calls == 1


# --- 5. answers cut off at the output limit -------------------------------------------------


@pytest.mark.provider("reasoning-field")
async def test_reasoning_that_ate_the_budget_gets_one_larger_budget(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    llm.push(truncated(say("")), call("send_message", message="Here you go."))
    async with Engine(make_settings(llm_max_response_tokens=300)) as engine:
        assert await talk(engine, "hi") == (["Here you go."], [])
    # The answer's budget doubles once; a thinking model's reasoning room comes on top of both.
    first, second = (r["max_tokens"] for r in llm.requests)
    assert second - first == 300


async def test_reasoning_that_ate_the_larger_budget_stops_with_a_reason(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    llm.push(truncated(say("")), truncated(say("")))
    async with Engine(make_settings(llm_max_response_tokens=300)) as engine:
        replies, notices = await talk(engine, "hi")
        assert replies == [] and llm.chat_calls == 2  # not the step cap's 10
        assert "600 tokens" in notices[0] and "LLM_MAX_RESPONSE_TOKENS" in notices[0]
        dump = await engine.dump(AGENT, 5)
        assert dump[-1].text == "hi" and not dump[-1].pending  # the message is kept


async def test_cut_off_text_is_completed_or_marked(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(truncated(say("The answer is")), say("The answer is 42."))
    assert await talk(engine, "what is it?") == (["The answer is 42."], [])
    llm.push(truncated(say("It is a long story and")), truncated(say("It is a long story, so")))
    [reply], _ = await talk(engine, "tell me")
    assert reply == "It is a long story, so" + CUT_OFF_NOTE
    llm.push(truncated(raw_call("send_message", '{"message": "Half a sen')),
             truncated(raw_call("send_message", '{"message": "Half a sentence')))
    [reply], _ = await talk(engine, "and then?")
    assert reply == "Half a sentence" + CUT_OFF_NOTE


async def test_a_raised_budget_that_does_not_fit_keeps_the_cut_answer(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(truncated(say("Partly said")), context_overflow())
    assert await talk(engine, "hi") == (["Partly said" + CUT_OFF_NOTE], [])
    assert not (await engine.agent(AGENT)).summary  # no eviction for a budget we raised


# --- 6. the same call again -----------------------------------------------------------------


async def test_a_repeated_call_is_not_run_again_and_the_reply_is_forced(
    engine: Engine, llm: ScriptedLLM
) -> None:
    edit = {"label": "human", "content": "Likes tea.", "request_heartbeat": True}
    llm.push(calls([("core_memory_append", edit)]),
             calls([("core_memory_append", {**edit, "inner_thoughts": "Save it again?"})]),
             call("send_message", message="Tea noted!"))
    assert await talk(engine, "I like tea") == (["Tea noted!"], [])
    assert human_block(engine).count("Likes tea.") == 1
    third = llm.requests[2]
    assert third["tool_choice"] == FORCE_REPLY
    assert "Not run again" in tool_results(third)[-1]


async def test_a_looping_model_is_stopped_early(engine: Engine, llm: ScriptedLLM) -> None:
    llm.handler = lambda request: call("conversation_search", query="loop",
                                       request_heartbeat=True)
    replies, notices = await talk(engine, "hi")
    assert replies == [] and notices[0].startswith("I went around in circles")
    assert llm.chat_calls == 3  # the call, its repeat, the request for a reply; not STEP_CAP


@pytest.mark.provider("repeats")
async def test_repeats_profile(engine: Engine, llm: ScriptedLLM) -> None:
    llm.push(call("archival_memory_insert", content="Ada's code is 4521.",
                  request_heartbeat=True),
             say("(replaced by the repeat)"), call("send_message", message="Saved once."))
    assert await talk(engine, "my code is 4521") == (["Saved once."], [])
    assert (await engine.memory(AGENT)).archival_count == 1


# --- 8. pause_heartbeats --------------------------------------------------------------------


def test_pause_heartbeats_is_not_offered_and_its_cost_is_saved() -> None:
    old = ToolSpec("pause_heartbeats",
                   "Pause automatic heartbeats (timed wake-ups) for some minutes.",
                   [Param("minutes", "integer", "Minutes to pause, at most 360.")],
                   TOOLS["send_message"].run, heartbeat=False).schema()
    assert "pause_heartbeats" not in {t["function"]["name"] for t in TOOL_SCHEMAS}
    counter = TokenCounter("gpt-4o-mini")
    saved = counter.count_tools([*TOOL_SCHEMAS, old]) - counter.count_tools(TOOL_SCHEMAS)
    print(f"pause_heartbeats cost {saved} tokens a call")  # reported in docs/benchmarks.md
    assert saved >= 50


async def test_an_old_pause_heartbeats_call_is_harmless(engine: Engine, llm: ScriptedLLM
                                                        ) -> None:
    llm.push(call("pause_heartbeats", minutes=30), call("send_message", message="Sure."),
             call("send_message", message="Still fine."))
    assert await talk(engine, "take a break") == (["Sure."], [])
    assert "no timed heartbeats" in tool_results(llm.requests[1])[-1]
    # The stored call is replayed in the next request, which the strict profile accepts.
    assert await talk(engine, "hello?") == (["Still fine."], [])
    assert "pause_heartbeats" in json.dumps(llm.requests[-1]["messages"])
