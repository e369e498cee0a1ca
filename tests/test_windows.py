"""Context windows that are true: asked of the server, learned from its errors, calibrated.

Every server here is a provider profile (tests/providers/) on 127.0.0.1, reached through the
real openai client (chat) and aiohttp (the native endpoints).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.agent import AgentEvent
from bot.config import Settings
from bot.context import Budget
from bot.engine import Engine
from bot.llm_errors import is_context_overflow
from bot.window_state import WindowState
from bot.windows import WindowInfo, overflow_limit, server_root, server_window
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, Step, call, say
from tests.providers import Provider, estimate_tokens
from tests.providers._counting import cl100k, template_tokens
from tests.providers.llamacpp import LlamaCpp
from tests.providers.lmstudio import LmStudio
from tests.providers.ollama import Ollama
from tests.providers.vllm import AUTO_TOOL_CHOICE, Vllm

AGENT = "cli:w"
FILLER = "Filler about my day and the weather, part {n}. " * 8


def chatty(body: dict[str, Any]) -> Step:
    if not body.get("tools"):
        return say("They chatted about their day.")
    return call("send_message", message="Nice.")


async def talk(engine: Engine, turns: int, events: list[AgentEvent] | None = None) -> None:
    for n in range(turns):
        result = await engine.send(AGENT, FILLER.format(n=n), sender_name="Ada", spec=SPEC,
                                   on_event=events.append if events is not None else None)
        assert result.replies == ["Nice."], result.notices


# --- 1. asking the server -------------------------------------------------------------------


def test_server_root_drops_v1() -> None:
    assert server_root("http://localhost:11434/v1") == "http://localhost:11434"
    assert server_root("http://h:8080/v1/") == "http://h:8080"
    assert server_root("http://h:1234") == "http://h:1234"


async def test_ollama_window_before_and_after_the_model_loads() -> None:
    profile = Ollama(num_ctx=4096)
    async with ScriptedLLM(provider=profile) as llm:
        # Not loaded: /api/ps lists nothing, /api/show has no num_ctx -> Ollama's default.
        info = await server_window(llm.base_url, "ollama", llm.model)
        assert info == WindowInfo(4096, "ollama default num_ctx (model not loaded yet)")
        profile.loaded = True
        profile.num_ctx = 16384  # OLLAMA_CONTEXT_LENGTH=16384: only /api/ps can tell
        info = await server_window(llm.base_url, "ollama", llm.model)
        assert info == WindowInfo(16384, "ollama /api/ps context_length")


async def test_ollama_modelfile_num_ctx_is_read_from_api_show() -> None:
    async with ScriptedLLM(provider=Ollama(num_ctx=8192, modelfile_num_ctx=True)) as llm:
        info = await server_window(llm.base_url, "", llm.model)
        assert info == WindowInfo(8192, "ollama /api/show num_ctx")


@pytest.mark.parametrize(("profile", "expected"), [
    (LlamaCpp(n_ctx=3072), WindowInfo(3072, "llama.cpp /props n_ctx")),
    (Vllm(max_model_len=12288), WindowInfo(12288, "vllm /v1/models max_model_len")),
    (LmStudio(loaded_context=4096), WindowInfo(
        4096, "lmstudio default context (model not loaded yet)")),
])
async def test_each_server_reports_its_window(profile: Provider, expected: WindowInfo) -> None:
    async with ScriptedLLM(provider=profile) as llm:
        assert await server_window(llm.base_url, "key", llm.model) == expected


async def test_lmstudio_reports_the_loaded_context() -> None:
    profile = LmStudio(loaded_context=6144)
    profile.loaded = True
    async with ScriptedLLM(provider=profile) as llm:
        assert await server_window(llm.base_url, "", llm.model) == WindowInfo(
            6144, "lmstudio /api/v0/models loaded_context_length")


async def test_a_server_that_says_nothing_or_cannot_be_reached_gives_none() -> None:
    async with ScriptedLLM() as llm:  # OpenAI: no window anywhere
        assert await server_window(llm.base_url, "sk-x", llm.model) is None
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await server_window(f"http://127.0.0.1:{port}/v1", "", "m", timeout=1.0) is None


async def test_a_server_that_never_answers_gives_none_after_the_timeout() -> None:
    stop = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await stop.wait()  # released when the client gives up (or at cleanup)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert await server_window(f"http://127.0.0.1:{port}/v1", "", "m", timeout=0.3) is None
    finally:
        stop.set()
        await runner.cleanup()


async def test_engine_uses_the_smaller_of_server_and_setting(
        make_settings: Callable[..., Settings]) -> None:
    async with ScriptedLLM(provider=Ollama(num_ctx=4096)) as llm:
        settings = make_settings(llm_base_url=llm.base_url, llm_model=llm.model,
                                 llm_context_window=16000)
        async with Engine(settings) as engine:
            assert engine.context.budget.window == 4096
            assert engine.windows.source.startswith("ollama")
            assert engine.windows.describe().startswith("4096 tokens (ollama default num_ctx")
        small = make_settings(llm_base_url=llm.base_url, llm_model=llm.model,
                              llm_context_window=3000)
        async with Engine(small) as engine:
            assert engine.context.budget.window == 3000


async def test_unset_setting_takes_the_servers_window(
        make_settings: Callable[..., Settings]) -> None:
    async with ScriptedLLM(provider=Vllm(max_model_len=20000)) as llm, Engine(make_settings(
            llm_base_url=llm.base_url, llm_model=llm.model, llm_context_window=None)) as engine:
        assert engine.context.budget.window == 20000  # not the 32768 known for Qwen2.5


async def test_the_server_is_asked_again_once_ollama_loaded_the_model(
        make_settings: Callable[..., Settings]) -> None:
    profile = Ollama(num_ctx=8192)  # OLLAMA_CONTEXT_LENGTH=8192: invisible until loaded
    async with ScriptedLLM(provider=profile) as llm:
        llm.handler = chatty
        settings = make_settings(llm_base_url=llm.base_url, llm_model=llm.model,
                                 llm_context_window=16000)
        async with Engine(settings) as engine:
            assert engine.context.budget.window == 4096  # the default, assumed
            await talk(engine, 1)  # the first call loads the model; then /api/ps tells
            assert engine.context.budget.window == 8192
            assert engine.windows.source == "ollama /api/ps context_length"
            profile.num_ctx = 12288  # restarted with more; an agent load notices
            await engine.reload(AGENT)
            assert engine.context.budget.window == 8192  # asked a moment ago: not again
            engine.windows._asked_at = None  # as if REFRESH_SECONDS had passed
            await engine.reload(AGENT)
            assert engine.context.budget.window == 12288


async def test_unreachable_server_keeps_the_setting(make_settings: Callable[..., Settings]
                                                    ) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(llm_base_url=f"http://127.0.0.1:{port}/v1",
                             llm_context_window=7000)
    async with Engine(settings) as engine:
        assert engine.context.budget.window == 7000


# --- 2. the ollama profile ------------------------------------------------------------------


def test_ollama_truncates_from_the_front_keeping_system_and_the_last_message() -> None:
    profile = Ollama(num_ctx=60)
    big = "word " * 40
    messages = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": big},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "user", "content": "last"},
    ]
    seen = profile.visible({"model": "m", "messages": messages})["messages"]
    # The big user message goes; the call and its result stay together (toolBlockStartIndex).
    assert [m["role"] for m in seen] == ["system", "assistant", "tool", "user"]
    tiny = Ollama(num_ctx=5)
    seen = tiny.visible({"model": "m", "messages": messages})["messages"]
    assert [m["role"] for m in seen] == ["system", "user"]  # always the last message
    assert seen[-1]["content"] == "last"


async def test_ollama_ignores_tool_choice_and_returns_reasoning() -> None:
    assert Ollama.honours_tool_choice is False
    async with ScriptedLLM(provider=Ollama(thinking=True)) as llm:
        llm.push(call("send_message", message="hi"))
        _, answer = await _post(llm, {
            "model": llm.model, "messages": [{"role": "user", "content": "hi"}],
            "tools": TOOLS, "tool_choice": "required"})
        message = answer["choices"][0]["message"]
        assert message["reasoning"] and message["content"] == ""


# --- 3. silent truncation -------------------------------------------------------------------


async def test_silent_truncation_is_detected_once_and_the_window_lowered(
        make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    profile = Ollama(num_ctx=3000, native_api=False)  # behind a proxy: /api/* unreachable
    async with ScriptedLLM(provider=profile) as llm:
        llm.handler = chatty
        settings = make_settings(llm_base_url=llm.base_url, llm_model=llm.model,
                                 llm_context_window=16000, llm_max_response_tokens=200)
        events: list[AgentEvent] = []
        caplog.set_level(logging.WARNING, logger="bot.window_state")
        async with Engine(settings) as engine:
            for _ in range(60):
                await talk(engine, 1, events)
                if engine.windows.truncation_warned:
                    break
            assert any(profile.truncated), "the profile never truncated"
            await talk(engine, 15, events)
            warnings = [r for r in caplog.records if "OLLAMA_CONTEXT_LENGTH" in r.getMessage()]
            assert len(warnings) == 1
            notices = [e.text for e in events if e.kind == "notice"]
            assert len(notices) == 1 and "OLLAMA_CONTEXT_LENGTH=32768" in notices[0]
            assert engine.windows.notices == notices
            assert engine.context.budget.window <= 3000
            assert not any(profile.truncated[-10:]), "still truncating after the warning"


# --- 4. overflow errors ---------------------------------------------------------------------


@pytest.mark.parametrize(("message", "limit"), [
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in"
     " 9001 tokens. Please reduce the length of the messages.", 8192),
    ("This model's maximum context length is 4096 tokens. However, your request has 4176 input"
     " tokens. Please reduce the length of the input messages.", 4096),
    ("'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context"
     " length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778).",
     4096),
    ("prompt is too long: 208310 tokens > 200000 maximum", 200000),
    ("request (4284 tokens) exceeds the available context size (4096 tokens), try increasing"
     " it", 4096),
    ("The input token count (1196265) exceeds the maximum number of tokens allowed (1048575).",
     1048575),
    ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000"
     " `inputs` tokens and 200 `max_new_tokens`", 4096),
])
def test_every_overflow_wording_is_read(message: str, limit: int) -> None:
    assert overflow_limit(message) == limit
    assert is_context_overflow(400, "", message)


def test_llamacpp_n_ctx_field_is_read_when_the_message_has_no_number() -> None:
    body = {"error": {"code": 400, "message": "the request exceeds the available context size",
                      "type": "exceed_context_size_error", "n_prompt_tokens": 5000,
                      "n_ctx": 4096}}
    assert overflow_limit(body["error"]["message"], body) == 4096
    assert is_context_overflow(400, "400 exceed_context_size_error", "context")


async def test_overflow_lowers_the_window_for_good(make_settings: Callable[..., Settings]
                                                   ) -> None:
    profile = LlamaCpp(n_ctx=4000, advertise=False)  # only its errors tell the window
    async with ScriptedLLM(provider=profile) as llm:
        llm.handler = chatty
        settings = make_settings(llm_base_url=llm.base_url, llm_model=llm.model,
                                 llm_context_window=16000, llm_max_response_tokens=200)

        def overflows() -> int:
            return sum(profile.count(r) > profile.n_ctx for r in llm.requests)

        async with Engine(settings) as engine:
            for _ in range(60):
                await talk(engine, 1)
                if overflows():
                    break
            assert overflows() == 1
            assert engine.context.budget.window == 4000
            await talk(engine, 20)
            assert overflows() == 1, "overflowed again after learning the window"
        async with Engine(settings) as engine:  # a restart remembers it
            assert engine.context.budget.window == 4000
            assert engine.windows.source == "learned from the server's errors"
            await talk(engine, 10)
            assert overflows() == 1


# --- 5. calibration -------------------------------------------------------------------------


class Counts13(Provider):
    """A server whose tokenizer counts 1.3x what cl100k counts (unregistered)."""

    name = "counts-1.3x"

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return template_tokens(body["messages"], body.get("tools"), factor=1.3, per_message=4,
                               split_digits=False)


def _has_pressure_alert(body: dict[str, Any]) -> bool:
    return any("Memory pressure" in (m.get("content") or "") for m in body["messages"]
               if m.get("role") == "user")


async def test_calibrated_warning_fires_at_the_real_fraction(
        make_settings: Callable[..., Settings]) -> None:
    profile = Counts13()
    window, reserve = 8000, 200
    async with ScriptedLLM(provider=profile) as llm:
        llm.handler = chatty
        settings = make_settings(llm_base_url=llm.base_url, llm_model=llm.model,
                                 llm_context_window=window, llm_max_response_tokens=reserve)
        async with Engine(settings) as engine:
            for _ in range(80):
                await talk(engine, 1)
                if any(map(_has_pressure_alert, llm.requests)):
                    break
            chat = [r for r in llm.requests if r.get("tools")]
            first = next(i for i, r in enumerate(chat) if _has_pressure_alert(r))
            before = profile.prompt_tokens(chat[first - 1]) / (window - reserve)
            at = profile.prompt_tokens(chat[first]) / (window - reserve)
            # 75% of the real window, as the server counts it (uncalibrated: ~97%)
            assert before < 0.75 <= at + 0.03, (before, at)
            assert at < 0.85
            assert 1.25 < engine.windows.ratio < 1.35
            ratio = engine.windows.ratio
        async with Engine(settings) as engine:  # persisted
            assert engine.windows.ratio == pytest.approx(ratio, abs=0.03)


async def test_ratio_is_smoothed_and_bounded() -> None:
    budget = Budget(window=10000, response_reserve=0, warning_fraction=0.75,
                    flush_fraction=0.9, target_fraction=0.5, keep_last=4)
    state = WindowState(budget, base_url="http://x/v1", api_key="", model="m",
                        configured=10000, explicit=True, cap=None)
    await state.observe(1000, 1300)
    assert state.ratio == pytest.approx(1.3) and budget.usable == int(10000 / 1.3)
    await state.observe(1000, 1000)  # smoothed: one sample moves it part of the way
    assert 1.0 < state.ratio < 1.3
    for _ in range(30):  # absurd counts: held at the bound
        await state.observe(1000, 9000)
    assert 2.49 < state.ratio <= 2.5


# --- 6. the working-context cap -------------------------------------------------------------


async def test_working_context_caps_a_1m_window(make_settings: Callable[..., Settings],
                                                llm: ScriptedLLM) -> None:
    capped = make_settings(llm_model="gpt-4.1")
    assert capped.context_window == 1_047_576
    async with Engine(capped) as engine:
        assert engine.context.budget.window == 32000
        assert engine.windows.source == "LLM_WORKING_CONTEXT"
    async with Engine(make_settings(llm_model="gpt-4.1", llm_working_context=0)) as engine:
        assert engine.context.budget.window == 1_047_576
    async with Engine(make_settings(llm_model="gpt-4.1", llm_working_context=16000)) as engine:
        assert engine.context.budget.window == 16000
        assert engine.context.budget.flush_at < 16000


# --- 7. misconfigured servers, as the profiles play them -------------------------------------


async def _post(llm: ScriptedLLM, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{llm.base_url}/chat/completions", json=body) as response:
        return response.status, await response.json()


TOOLS = [{"type": "function", "function": {"name": "send_message",
                                           "parameters": {"type": "object"}}}]


def _replay(arguments: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "send_message", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]


async def test_vllm_without_auto_tool_choice() -> None:
    async with ScriptedLLM(provider=Vllm(auto_tool_choice=False)) as llm:
        status, body = await _post(llm, {"model": llm.model, "tools": TOOLS,
                                         "messages": [{"role": "user", "content": "hi"}]})
        assert status == 400 and body["error"]["message"] == AUTO_TOOL_CHOICE
        assert body["error"]["code"] == 400 and body["error"]["type"] == "BadRequestError"
        llm.push(say("ok"))  # a named function needs no flag
        status, _ = await _post(llm, {"model": llm.model, "tools": TOOLS, "tool_choice": {
            "type": "function", "function": {"name": "send_message"}},
            "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200
        status, body = await _post(llm, {"model": llm.model, "messages": _replay('{"a": ')})
        assert status == 400
        assert len(llm.take_violations()) == 2


async def test_llamacpp_misconfigurations() -> None:
    async with ScriptedLLM(provider=LlamaCpp(jinja=False)) as llm:
        status, body = await _post(llm, {"model": llm.model, "tools": TOOLS,
                                         "messages": [{"role": "user", "content": "hi"}]})
        assert (status, body) == (500, {"error": {
            "code": 500, "message": "tools param requires --jinja flag", "type": "server_error"}})
        llm.take_violations()
    async with ScriptedLLM(provider=LlamaCpp()) as llm:
        status, body = await _post(llm, {"model": llm.model, "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant"},
            {"role": "user", "content": "again"}]})
        assert status == 400
        assert body["error"]["message"] == (
            "Assistant message must contain either 'content' or 'tool_calls'!")
        status, body = await _post(llm, {"model": llm.model, "messages": _replay('{"a": ')})
        assert status == 500
        assert body["error"]["message"].startswith("Failed to parse tool call arguments as JSON")
        llm.take_violations()


async def test_llamacpp_overflow_has_its_real_shape() -> None:
    async with ScriptedLLM(provider=LlamaCpp(n_ctx=600)) as llm:
        status, body = await _post(llm, {"model": llm.model, "messages": [
            {"role": "user", "content": "word " * 800}]})
        assert status == 400
        error = body["error"]
        assert error["type"] == "exceed_context_size_error" and error["code"] == 400
        assert error["n_ctx"] == 600 and error["n_prompt_tokens"] > 600
        assert overflow_limit(error["message"], body) == 600
        assert llm.pending == 0 and llm.violations == []


def test_profiles_count_more_than_the_scripted_default() -> None:
    body = {"messages": [{"role": "user", "content": "id 123456789012345678 at 2026-12-04"}]}
    assert Ollama().prompt_tokens(body) > cl100k(body["messages"][0]["content"])
    assert estimate_tokens(body["messages"]) > 0


async def test_a_hosted_api_never_counts_as_truncating() -> None:
    budget = Budget(window=10000, response_reserve=0, warning_fraction=0.75,
                    flush_fraction=0.9, target_fraction=0.5, keep_last=4)
    state = WindowState(budget, base_url="https://api.openai.com/v1", api_key="", model="m",
                        configured=10000, explicit=True, cap=None)
    assert await state.observe(5000, 1000) is None  # e.g. a count without cached tokens
    assert state.learned is None and state.notices == [] and state.samples == 0
    local = WindowState(budget, base_url="http://127.0.0.1:8080/v1", api_key="", model="m",
                        configured=10000, explicit=True, cap=None)
    notice = await local.observe(5000, 1000)
    assert notice and "LLM_CONTEXT_WINDOW" in notice and local.learned == 1000
    assert await local.observe(5000, 1000) is None  # once


@pytest.mark.parametrize("message", [
    "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3.",
    "Unsupported parameter: 'max_tokens' is not supported with this model.",
    "tools param requires --jinja flag",
])
def test_other_errors_are_not_overflows(message: str) -> None:
    assert overflow_limit(message) is None
    assert not is_context_overflow(400, "invalid_request_error", message)


async def test_ollama_refuses_what_its_request_parser_refuses() -> None:
    async with ScriptedLLM(provider=Ollama()) as llm:
        status, body = await _post(llm, {"model": llm.model, "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": None},
            {"role": "user", "content": "again"}]})
        assert (status, body["error"]["message"]) == (400, "invalid message content type: <nil>")
        status, body = await _post(llm, {"model": llm.model, "messages": _replay('{"a": ')})
        assert (status, body["error"]["message"]) == (400, "invalid tool call arguments")
        llm.take_violations()


def test_native_answers_are_read_in_their_real_shapes() -> None:
    from bot.windows import _from_models, _from_ollama_show

    llamacpp = {"object": "list", "data": [{"id": "m.gguf", "object": "model",
                                             "owned_by": "llamacpp",
                                             "meta": {"n_ctx": 8192, "n_ctx_train": 131072}}]}
    assert _from_models(llamacpp, "m.gguf") == WindowInfo(8192, "llama.cpp /v1/models meta.n_ctx")
    assert _from_models(llamacpp, "other") is None
    # A Modelfile num_ctx above what the model was trained for: the trained length holds.
    show = {"parameters": "num_ctx                        65536\nstop \"<|im_end|>\"",
            "model_info": {"general.architecture": "llama", "llama.context_length": 8192}}
    assert _from_ollama_show(show) == WindowInfo(8192, "ollama /api/show context_length")
    assert _from_ollama_show({"error": "model 'x' not found"}) is None
