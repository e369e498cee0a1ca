"""Context window management: pressure warning, eviction, recursive summary, overflow, clipping."""

from __future__ import annotations

from typing import Any

from bot.engine import Engine
from bot.messages import unpack_event
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call, context_overflow, fail, say

SMALL_WINDOW = {"llm_context_window": 6000, "llm_max_response_tokens": 200}


def is_summary_request(request: dict[str, Any]) -> bool:
    return "tools" not in request


def alerts(request: dict[str, Any]) -> list[str]:
    found = []
    for message in request["messages"][1:]:
        if message["role"] == "user" and message["content"].startswith("{"):  # not the summary
            event = unpack_event(message["content"])
            if event is not None and event.kind == "system_alert":
                found.append(event.text)
    return found


def assert_calls_paired(request: dict[str, Any]) -> None:
    """Every tool result in a request follows the assistant call that produced it."""
    open_ids: set[str] = set()
    for message in request["messages"]:
        if message["role"] == "assistant":
            open_ids = {c["id"] for c in message.get("tool_calls") or []}
        elif message["role"] == "tool":
            assert message["tool_call_id"] in open_ids, "tool result without its call"


def scripted_companion(summaries: list[str]):
    def handler(request: dict[str, Any]):
        if is_summary_request(request):
            summaries.append(request["messages"][0]["content"])
            return say(f"SUMMARY-{len(summaries)}: Alice talked about her garden.")
        return call("send_message", message="Tell me more about it.")
    return handler


async def test_warning_then_eviction_with_recursive_summary(make_settings, llm: ScriptedLLM):
    summaries: list[str] = []
    llm.handler = scripted_companion(summaries)
    async with Engine(make_settings(**SMALL_WINDOW)) as engine:
        for turn in range(40):
            text = f"Garden note {turn}: " + "tomatoes basil compost " * 60
            await engine.send("cli:a", text, sender_name="Alice", spec=SPEC)
            if len(summaries) >= 2:
                break
        chat_requests = [r for r in llm.requests if not is_summary_request(r)]
        warned = [r for r in chat_requests if any("Memory pressure" in a for a in alerts(r))]
        assert warned, "the memory-pressure alert never reached the model"
        first_warning = chat_requests.index(warned[0])
        assert len(summaries) == 2
        # The second summary folds in the first (recursive summary).
        assert "SUMMARY-1" in summaries[1]
        last = chat_requests[-1]
        assert "SUMMARY-2" in last["messages"][1]["content"]
        for request in chat_requests:
            assert_calls_paired(request)
        # Warning is sent once until the next summarization.
        between = chat_requests[first_warning:]
        distinct_warnings = {a for r in between for a in alerts(r) if "Memory pressure" in a}
        assert 1 <= len(distinct_warnings) <= 3
        report = await engine.tokens("cli:a")
        assert report["total"] < report["flush_at"]
        # Evicted messages remain in recall memory and are searchable.
        page = await engine.search_recall("cli:a", "Garden note 0")
        assert page.total >= 1 and any("Garden note 0:" in (m.text or "") for m in page.items)
        view = await engine.memory("cli:a")
        assert view.recall_count > view.in_context


async def test_api_overflow_summarizes_and_retries(make_settings, llm: ScriptedLLM):
    async with Engine(make_settings()) as engine:
        for i in range(6):
            llm.push(call("send_message", message=f"reply {i}"))
            await engine.send("cli:a", f"message {i}", spec=SPEC)
        llm.push(context_overflow(), say("SUMMARY: we chatted."),
                 call("send_message", message="still here"))
        result = await engine.send("cli:a", "hello again", spec=SPEC)
        assert result.replies == ["still here"]
        assert "SUMMARY: we chatted." in llm.requests[-1]["messages"][1]["content"]


async def test_overflow_retries_are_bounded(make_settings, llm: ScriptedLLM):
    def handler(request: dict[str, Any]):
        return say("SUMMARY") if is_summary_request(request) else context_overflow()

    async with Engine(make_settings()) as engine:
        for i in range(6):
            llm.push(call("send_message", message=f"reply {i}"))
            await engine.send("cli:a", f"message {i}", spec=SPEC)
        llm.handler = handler
        before = llm.chat_calls
        result = await engine.send("cli:a", "one more", spec=SPEC)
        assert result.replies == [] and "does not fit" in result.notices[0]
        assert llm.chat_calls - before <= 6


async def test_huge_message_is_clipped_in_context_but_whole_in_recall(make_settings, llm):
    huge = "A" * 10 + " lorem ipsum dolor" * 5000 + " THE-END"
    llm.push(call("send_message", message="that's long"))
    async with Engine(make_settings(**SMALL_WINDOW)) as engine:
        result = await engine.send("cli:a", huge, spec=SPEC)
        assert result.replies == ["that's long"]
        sent = llm.requests[-1]["messages"][-1]["content"]
        assert "clipped here" in sent and "THE-END" not in sent
        [stored] = [m for m in await engine.dump("cli:a", 5) if m.kind == "user_message"]
        assert stored.text == huge


async def test_summarizer_failure_falls_back_to_a_note(make_settings, llm: ScriptedLLM):
    async with Engine(make_settings()) as engine:
        for i in range(6):
            llm.push(call("send_message", message=f"reply {i}"))
            await engine.send("cli:a", f"message {i}", spec=SPEC)
        llm.push(fail(500))
        assert await engine.summarize("cli:a") > 0
        view = await engine.memory("cli:a")
        assert "without a summary" in view.summary and "conversation_search" in view.summary
