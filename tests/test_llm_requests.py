"""The requests each provider accepts, and errors that explain themselves.

Against the provider profiles of tests/providers/ (each cites what its rules come from), over real
HTTP with the real openai client, real SQLite: what the bot sends (parameters, ids, arguments, the
provider's own fields back), and what it does with each provider's refusals (retry, wait, rescue
the call, or one line that says what to change on the server).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.config import Settings
from bot.engine import Engine
from bot.llm import LLMClient, LLMError
from bot.llm_errors import ProviderError, classify, parse_error, wait_hint
from bot.messages import CALL_ID, Message, make_call_id, wire_call_id
from bot.store import MIGRATIONS, Store
from bot.tools import TOOL_SCHEMAS
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, Step, call, fail, raw_body, raw_call, say
from tests.openai_rules import Violation
from tests.providers import Provider, provider

USER = [{"role": "user", "content": "hi"}]


def client_for(llm: ScriptedLLM, **options: Any) -> LLMClient:
    values: dict[str, Any] = {"base_url": llm.base_url, "api_key": "sk-test", "model": llm.model,
                              "max_retries": 3, "retry_backoff": 0.0}
    values.update(options)
    return LLMClient(**values)


async def chat(llm: ScriptedLLM, **options: Any) -> Any:
    client = client_for(llm, **options)
    try:
        return await client.chat(USER, TOOL_SCHEMAS)
    finally:
        await client.aclose()


def answer(message: dict[str, Any], status: int = 200) -> Step:
    """A chat completion with exactly this assistant message (provider fields included)."""
    return raw_body(json.dumps({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", **message},
                     "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
        status=status)


def stored_rows(settings: Settings) -> list[sqlite3.Row]:
    with sqlite3.connect(settings.db_path) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM messages WHERE role='assistant' ORDER BY id").fetchall()


# -- 1. OpenAI reasoning models ---------------------------------------------------------------


@pytest.mark.provider("openai-reasoning")
async def test_reasoning_models_get_max_completion_tokens_and_no_temperature(
    llm: ScriptedLLM
) -> None:
    llm.push(call("send_message", message="hi"))
    completion = await chat(llm, temperature=0.7, max_response_tokens=500)
    request = llm.requests[0]
    assert "max_tokens" not in request and "temperature" not in request
    assert request["max_completion_tokens"] == 500 + 8192  # the answer plus room to reason
    assert completion.tool_calls[0].name == "send_message"


@pytest.mark.provider("openai-reasoning")
async def test_the_reasoning_profile_refuses_like_openai(llm: ScriptedLLM) -> None:
    client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError, match="Use 'max_completion_tokens' instead"):
            await client.chat.completions.create(model="o4-mini", messages=USER, max_tokens=9)
        with pytest.raises(openai.BadRequestError, match=re.escape(
                "'temperature' does not support 0.7 with this model. Only the default (1)")):
            await client.chat.completions.create(model="o4-mini", messages=USER,
                                                 temperature=0.7)
    finally:
        await client.close()
    assert [v.param for v in llm.take_violations()] == ["max_tokens", "temperature"]


@pytest.mark.provider("openai-reasoning")
async def test_without_room_for_reasoning_the_answer_is_empty(llm: ScriptedLLM) -> None:
    llm.push(call("send_message", message="hi"), call("send_message", message="hi"))
    starved = await chat(llm, reasoning_tokens=0)
    assert (starved.content, starved.tool_calls, starved.finish_reason) == (None, [], "length")
    assert (await chat(llm)).tool_calls  # the default room is enough


async def test_the_room_for_reasoning_leaves_most_of_a_small_window_to_the_conversation(
    llm: ScriptedLLM
) -> None:
    llm.push(call("send_message", message="a"))
    # A local R1 distill on Ollama's default 4,096-token window.
    await chat(llm, model="deepseek-r1:8b", context_window=4096, temperature=0.6)
    assert llm.requests[0]["max_tokens"] == 1024 + 4096 // 4
    assert llm.requests[0]["temperature"] == 0.6


class AzureReasoning(Provider):
    """An OpenAI reasoning model deployed under a name of the operator's choosing (Azure OpenAI
    deployments, proxy aliases): it refuses what o4-mini refuses, whatever it is called."""

    name = "azure-reasoning"
    model = "my-deployment"

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        renamed = {**body, "model": "o4-mini"}
        return [v for v in super().reject(renamed) if v.param in ("max_tokens", "temperature")]


async def test_a_reasoning_model_under_another_name_is_adapted_to_once() -> None:
    async with ScriptedLLM(provider=AzureReasoning()) as llm:
        llm.push(call("send_message", message="a"), call("send_message", message="b"))
        client = client_for(llm, temperature=0.7)
        try:
            await client.chat(USER, TOOL_SCHEMAS)
            await client.chat(USER, TOOL_SCHEMAS)
        finally:
            await client.aclose()
        # Both refused in the first request (the server answers the first); none after.
        assert [v.param for v in llm.take_violations()] == ["max_tokens", "temperature"]
        assert [sorted(k for k in r if "tokens" in k or k == "temperature")
                for r in llm.requests] == [["max_tokens", "temperature"],
                                           ["max_completion_tokens"], ["max_completion_tokens"]]


async def test_an_empty_temperature_is_not_sent(llm: ScriptedLLM,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TEMPERATURE", "")
    assert Settings(_env_file=None).llm_temperature is None
    monkeypatch.setenv("LLM_TEMPERATURE", "0.3")
    assert Settings(_env_file=None).llm_temperature == 0.3
    llm.push(call("send_message", message="a"), call("send_message", message="b"))
    await chat(llm, temperature=None)
    await chat(llm, temperature=0.3)
    assert "temperature" not in llm.requests[0] and llm.requests[1]["temperature"] == 0.3
    assert llm.requests[0]["max_tokens"] == 1024  # a chat model: no reasoning room


# -- 2. thinking models get their reasoning back ----------------------------------------------


async def _remember_then_answer(settings: Settings, llm: ScriptedLLM) -> None:
    """One turn that calls two functions (a memory edit, then the reply), on a fresh engine."""
    async with Engine(settings) as engine:
        llm.push(call("core_memory_append", label="human", content="Name: Ada",
                      request_heartbeat=True),
                 call("send_message", message="Nice to meet you, Ada!"))
        assert (await engine.send("cli:a", "I'm Ada", spec=SPEC)).replies == [
            "Nice to meet you, Ada!"]


@pytest.mark.provider("deepseek-thinking")
async def test_deepseek_gets_reasoning_content_back_also_after_a_restart(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    settings = make_settings()
    await _remember_then_answer(settings, llm)
    [first, second] = [json.loads(r["extra"]) for r in stored_rows(settings)]
    assert first["reasoning_content"] != second["reasoning_content"]
    async with Engine(settings) as engine:  # history comes back from SQLite
        llm.push(call("send_message", message="Hello again."))
        assert (await engine.send("cli:a", "hi", spec=SPEC)).replies == ["Hello again."]
    sent = [m for m in llm.requests[-1]["messages"] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in sent] == [first["reasoning_content"],
                                                      second["reasoning_content"]]


async def test_a_database_of_the_previous_schema_gains_the_provider_fields(
    tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # as the previous version left it: schema 5
        for script in MIGRATIONS[:5]:
            db.executescript(script)
        db.execute("PRAGMA user_version=5")
        db.execute("INSERT INTO messages (id, agent_id, agent_tag, role, kind, content,"
                   " tool_calls, created_at) VALUES (1, 'a', 't', 'assistant', 'assistant', NULL,"
                   " ?, '2026-01-01T00:00:00+00:00')", (json.dumps([{"id": "plain_1", "type":
                   "function", "function": {"name": "send_message", "arguments": "{}"}}]),))
    store = Store(path)
    await store.open()
    try:
        [row] = await store.fetchall("SELECT * FROM messages")
        message = Message.from_row(row)
        assert message.extra == {} and message.tool_calls[0].extra == {}
        assert CALL_ID.match(message.to_openai()["tool_calls"][0]["id"])
        assert (await store.fetchone("PRAGMA user_version"))[0] == len(MIGRATIONS)
    finally:
        await store.close()


def test_deepseek_refuses_a_tool_turn_without_its_reasoning() -> None:
    deepseek = provider("deepseek-thinking")
    body = {"model": "deepseek-v4-flash", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "ok"},
        {"role": "user", "content": "next"}]}
    [problem] = deepseek.reject(body)
    assert problem.message == ("The reasoning_content in the thinking mode must be passed back"
                               " to the API.")
    body["messages"][1]["reasoning_content"] = "thought"
    assert deepseek.reject(body) == []


@pytest.mark.provider("gemini3")
async def test_gemini_gets_each_thought_signature_back_in_place(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    settings = make_settings()
    await _remember_then_answer(settings, llm)
    [replayed] = [m for m in llm.requests[1]["messages"] if m["role"] == "assistant"]
    signature = replayed["tool_calls"][0]["extra_content"]["google"]["thought_signature"]
    assert signature in llm.provider.signatures  # type: ignore[attr-defined]
    stored = json.loads(stored_rows(settings)[0]["tool_calls"])
    assert stored[0]["extra_content"] == {"google": {"thought_signature": signature}}


def test_gemini_refuses_a_call_without_its_signature_in_the_current_turn() -> None:
    gemini = provider("gemini3")
    unsigned = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    body = {"model": "gemini-3-flash-preview", "messages": [
        {"role": "user", "content": "hi"}, unsigned,
        {"role": "tool", "tool_call_id": "a", "content": "ok"}]}
    [problem] = gemini.reject(body)
    assert problem.message.startswith("Function call is missing a thought_signature in"
                                      " functionCall parts.")
    assert isinstance(problem.error_body(), list)  # Gemini wraps its errors in a list
    body["messages"].append({"role": "user", "content": "a new turn"})
    assert gemini.reject(body) == []  # earlier turns are not checked


async def test_openrouter_reasoning_details_go_back_unchanged(engine: Engine,
                                                              llm: ScriptedLLM) -> None:
    details = [{"type": "reasoning.encrypted", "data": "opaque==", "id": "r1", "index": 0}]
    llm.push(answer({"content": None, "reasoning_details": details, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {
            "name": "core_memory_append",
            "arguments": '{"label": "human", "content": "x", "request_heartbeat": true}'}}]}),
        call("send_message", message="done"))
    assert (await engine.send("cli:a", "hi", spec=SPEC)).replies == ["done"]
    [replayed] = [m for m in llm.requests[1]["messages"] if m["role"] == "assistant"]
    assert replayed["reasoning_details"] == details


@pytest.mark.provider("openrouter")
async def test_openrouter_relays_the_upstream_reason_when_reasoning_details_are_missing(
    llm: ScriptedLLM
) -> None:
    unsigned = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "send_message",
                                                      "arguments": '{"message": "x"}'}}]}
    messages = [*USER, unsigned, {"role": "tool", "tool_call_id": "t1", "content": "ok"}]
    client = client_for(llm)
    try:
        with pytest.raises(LLMError, match="missing a thought_signature") as caught:
            await client.chat(messages, TOOL_SCHEMAS)
    finally:
        await client.aclose()
    assert caught.value.kind == "history" and "/pop" in str(caught.value)
    assert len(llm.take_violations()) == 1 and llm.chat_calls == 1


# -- 3. Mistral's nine-character ids ----------------------------------------------------------


def test_every_id_we_send_has_the_one_shape_all_providers_take() -> None:
    assert all(CALL_ID.match(make_call_id(p, n)) for p in "cp" for n in (1, 7, 10**12))
    assert make_call_id("c", 7) != make_call_id("p", 7) != make_call_id("c", 8)
    # Ids we stored before, in the old shapes: sent as the ids made now for the same message.
    assert [wire_call_id(i) for i in ("plain_7", "call_12", "call_0")] == [
        make_call_id("p", 7), make_call_id("c", 12), make_call_id("c", 0)]
    # A provider's own ids go back as they came.
    for own in ("call_Ab3xYz0123456789abcdEFGH", "toolu_01" + "A" * 22, "abcDEF123"):
        assert wire_call_id(own) == own


def test_mistral_refuses_other_ids_with_its_wording() -> None:
    mistral = provider("mistral")
    body = {"model": "mistral-small-latest", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "ok"}]}
    messages = [v.message for v in mistral.reject(body)]
    # Refused twice: in the call and in its result.
    assert messages == ["Tool call id was call_0 but must be a-z, A-Z, 0-9, with a length of 9."
                        ] * 2


@pytest.mark.provider("mistral")
async def test_plain_answers_and_fresh_ids_replay_on_mistral(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(say("Plain hello."))  # stored as a send_message call with an id we make
    assert (await engine.send("cli:a", "hi", spec=SPEC)).replies == ["Plain hello."]
    llm.push(answer({"content": None, "tool_calls": [  # calls without an id, or with one too long
        {"type": "function", "function": {"name": "core_memory_append", "arguments":
         '{"label": "human", "content": "x", "request_heartbeat": true}'}},
        {"id": "x" * 41, "type": "function",
         "function": {"name": "conversation_search", "arguments": '{"query": "x"}'}}]}),
        call("send_message", message="Done."))
    assert (await engine.send("cli:a", "more", spec=SPEC)).replies == ["Done."]
    sent = llm.requests[-1]["messages"]
    ids = [c["id"] for m in sent for c in m.get("tool_calls") or []]
    ids += [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    assert len(ids) == 6 and all(CALL_ID.match(i) for i in ids)
    assert llm.take_violations() == []


@pytest.mark.provider("mistral")
async def test_a_conversation_stored_with_the_old_ids_replays_on_mistral(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> None:
    settings = make_settings()
    async with Engine(settings) as engine:
        llm.push(say("Plain hello."), raw_call("core_memory_append", '{"label": "human",'
                                               ' "content": "x", "request_heartbeat": true}'),
                 call("send_message", message="ok"))
        await engine.send("cli:a", "hi", spec=SPEC)
        await engine.send("cli:a", "again", spec=SPEC)
    with sqlite3.connect(settings.db_path) as db:  # as the previous version stored them
        for message_id, calls in db.execute("SELECT id, tool_calls FROM messages WHERE"
                                            " tool_calls IS NOT NULL").fetchall():
            old = f"call_{message_id}" if "send_message" not in calls else f"plain_{message_id}"
            new = json.loads(calls)
            db.execute("UPDATE messages SET tool_call_id=? WHERE tool_call_id=?",
                       (old, new[0]["id"]))
            new[0]["id"] = old
            db.execute("UPDATE messages SET tool_calls=? WHERE id=?", (json.dumps(new),
                                                                       message_id))
    async with Engine(settings) as engine:
        llm.push(call("send_message", message="Still fine."))
        assert (await engine.send("cli:a", "later", spec=SPEC)).replies == ["Still fine."]
    assert llm.take_violations() == []


# -- 4. arguments replayed as valid JSON ------------------------------------------------------


@pytest.mark.provider("mistral")
async def test_broken_arguments_are_stored_repaired(make_settings: Callable[..., Settings],
                                                    llm: ScriptedLLM) -> None:
    settings = make_settings()
    async with Engine(settings) as engine:
        llm.push(raw_call("core_memory_append",
                          "{'label': 'human', 'content': 'Name: Ada', 'request_heartbeat': True,}"),
                 raw_call("archival_memory_insert", "{{{ not json"),
                 call("send_message", message="ok"))
        assert (await engine.send("cli:a", "I'm Ada", spec=SPEC)).replies == ["ok"]
        assert "Name: Ada" in (await engine.agent("cli:a")).core.render()
    replayed = [c["function"]["arguments"] for m in llm.requests[-1]["messages"]
                for c in m.get("tool_calls") or []]
    assert [json.loads(a) for a in replayed[:2]] == [
        {"label": "human", "content": "Name: Ada", "request_heartbeat": True}, {}]
    stored = [json.loads(r["tool_calls"])[0]["function"]["arguments"]
              for r in stored_rows(settings)]
    assert stored[:2] == replayed[:2]
    assert llm.take_violations() == []


def test_the_json_rule_refuses_unparsable_replayed_arguments() -> None:
    body = {"model": "mistral-small-latest", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "abcdefghi", "type": "function", "function": {"name": "f",
                                                                 "arguments": '{"a": 1'}}]},
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "ok"}]}
    [problem] = provider("mistral").reject(body)
    assert problem.message.startswith("Failed to parse tool call arguments as JSON")


# -- 5. a server set up wrong, explained in one line, not retried ------------------------------


@pytest.mark.parametrize(("status", "body", "says"), [
    # vLLM (older builds answer a bare {"object": "error", ...})
    (400, {"object": "error", "message": '"auto" tool choice requires --enable-auto-tool-choice'
           ' and --tool-call-parser to be set', "type": "BadRequestError", "param": None,
           "code": 400}, "restart it with --enable-auto-tool-choice --tool-call-parser"),
    (400, {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice and'
           ' --tool-call-parser to be set', "type": "BadRequestError", "code": 400}},
     "--enable-auto-tool-choice"),
    # llama.cpp: a 500, which must not be retried
    (500, {"error": {"code": 500, "message": "tools param requires --jinja flag",
                     "type": "server_error"}}, "restart llama-server with --jinja"),
    (500, {"error": {"code": 500, "message": "Unsupported param: tools",
                     "type": "server_error"}}, "start llama-server with --jinja"),
    # Ollama
    (400, {"error": {"message": "registry.ollama.ai/library/llama2:13b does not support tools",
                     "type": "api_error", "param": None, "code": None}}, "has no tool support"),
    # Groq: one request larger than the plan's whole minute
    (413, {"error": {"message": "Request too large for model `llama-3.3-70b-versatile` in"
                     " organization `org_01x` service tier `on_demand` on tokens per minute"
                     " (TPM): Limit 6000, Requested 14810, please reduce your message size and"
                     " try again.", "type": "tokens", "code": "rate_limit_exceeded"}},
     "larger than the plan's 6000 tokens per minute"),
], ids=["vllm-bare", "vllm", "llamacpp-jinja", "llamacpp-old", "ollama", "groq-413-too-big"])
async def test_misconfigured_servers_are_explained_at_once(
    llm: ScriptedLLM, status: int, body: dict[str, Any], says: str
) -> None:
    llm.push(raw_body(json.dumps(body), status=status))
    with pytest.raises(LLMError, match=re.escape(says)) as caught:
        await chat(llm, max_retries=3)
    assert caught.value.kind == "config" and llm.chat_calls == 1  # no useless retries
    assert "\n" not in str(caught.value) and f"({status})" not in str(caught.value)


GROQ_FAILED = {"message": "Failed to call a function. Please adjust your prompt. See"
               " 'failed_generation' for more details.", "type": "invalid_request_error",
               "code": "tool_use_failed"}


@pytest.mark.provider("groq")
async def test_groq_tool_use_failed_is_retried_once(llm: ScriptedLLM) -> None:
    llm.push(Step("error", status=400, error={**GROQ_FAILED, "failed_generation": ""}),
             call("send_message", message="second try"))
    completion = await chat(llm)
    assert json.loads(completion.tool_calls[0].arguments) == {"message": "second try"}
    assert llm.chat_calls == 2


@pytest.mark.provider("groq")
async def test_groq_failed_generation_is_rescued_into_a_real_call(llm: ScriptedLLM) -> None:
    written = '<function=send_message>{"message": "rescued",}</function>'
    failed = Step("error", status=400, error={**GROQ_FAILED, "failed_generation": written})
    llm.push(failed, failed)
    completion = await chat(llm)
    [rescued] = completion.tool_calls
    assert (rescued.name, json.loads(rescued.arguments)) == ("send_message",
                                                             {"message": "rescued"})
    assert llm.chat_calls == 2  # one retry, then the rescue: no third request
    llm.push(Step("error", status=400, error={**GROQ_FAILED, "failed_generation": "gibberish"}),
             Step("error", status=400, error={**GROQ_FAILED, "failed_generation": "gibberish"}))
    with pytest.raises(LLMError, match="could not read") as caught:
        await chat(llm)
    assert caught.value.kind == "tool_use_failed" and llm.chat_calls == 4


async def test_a_rate_limit_waits_as_long_as_the_server_says(
    llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    llm.push(fail(429, "Rate limit reached for model `m` on tokens per minute (TPM): Limit 6000,"
                  " Used 5034, Requested 1443. Please try again in 20ms.", "rate_limit_exceeded"),
             call("send_message", message="after the wait"))
    with caplog.at_level(logging.WARNING, logger="bot.llm"):
        completion = await chat(llm, retry_backoff=5.0)  # the server's hint, not the backoff
    assert completion.tool_calls and llm.chat_calls == 2
    assert "retrying in 0.0s" in caplog.text


async def test_replayed_arguments_a_server_cannot_parse_are_not_retried(
    llm: ScriptedLLM
) -> None:
    # llama.cpp answers every later request of that history with this 500.
    llm.push(raw_body(json.dumps({"error": {"code": 500, "type": "server_error", "message":
                                            "Failed to parse tool call arguments as JSON:"
                                            " [json.exception.parse_error.101]"}}), status=500))
    with pytest.raises(LLMError, match="/pop") as caught:
        await chat(llm)
    assert caught.value.kind == "history" and llm.chat_calls == 1


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, [{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}],
     ("bad", "400", "INVALID_ARGUMENT")),  # Gemini
    (400, {"error": "registry.ollama.ai/library/x does not support tools"},
     ("registry.ollama.ai/library/x does not support tools", "", "")),  # Ollama native
    (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "m"}},
     ("m", "", "invalid_request_error")),  # Anthropic
    (400, {"object": "error", "message": "v", "type": "BadRequestError", "code": 400},
     ("v", "400", "BadRequestError")),  # vLLM, older builds
    (502, "<html>Bad gateway</html>", ("<html>Bad gateway</html>", "", "")),
    (400, {"error": {"message": "Provider returned error", "code": 400, "metadata": {
        "raw": json.dumps({"error": {"message": "Invalid 'input'", "type":
                                     "invalid_request_error", "param": "input", "code": None}}),
        "provider_name": "OpenAI"}}},
     ("Invalid 'input' (upstream: OpenAI)", "", "invalid_request_error")),  # OpenRouter
])
def test_errors_are_read_in_every_shape(status: int, body: Any,
                                        expected: tuple[str, str, str]) -> None:
    raw = (body if isinstance(body, str) else json.dumps(body)).encode()
    error = parse_error(status, raw, {})
    assert (error.message, error.code, error.type) == expected


def test_wait_hints_in_every_form() -> None:
    def hint(message: str, retry_after: float | None = None) -> float | None:
        return wait_hint(ProviderError(429, message, retry_after=retry_after))

    assert hint("Please try again in 4.77s.") == pytest.approx(4.77)
    assert hint("Please try again in 1m2.5s.") == pytest.approx(62.5)
    assert hint("Please try again in 120ms") == pytest.approx(0.12)
    assert hint("try again in 9s", retry_after=3) == 3
    assert hint("slow down") is None
    # Groq's 413 with a wait hint is a rate limit, not a request too large for the plan.
    assert classify(ProviderError(413, "Limit 6000, Used 5900, Requested 900 on tokens per"
                                  " minute. Please try again in 2s.")).kind == "retry"


# -- 6. every error's reason reaches the operator --------------------------------------------


async def test_the_operator_gets_status_code_message_and_param(
    llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    llm.push(fail(400, "Invalid value for 'content': expected a string, got null. key"
                  " sk-proj-abcdefghijklmnop", "invalid_value", param="messages.[0].content"))
    with caplog.at_level(logging.WARNING, logger="bot.llm"), pytest.raises(LLMError) as caught:
        await chat(llm)
    [record] = [r for r in caplog.records if "refused" in r.getMessage()]
    logged = record.getMessage()
    assert record.levelno == logging.WARNING
    for part in ("HTTP 400", "code=invalid_value", "param=messages.[0].content",
                 "expected a string, got null"):
        assert part in logged
    assert "sk-proj-abcdefghijklmnop" not in logged  # redacted
    assert caught.value.kind == "history"
    assert "message 0 of the prompt (user: 'hi')" in str(caught.value)
    assert "/pop" in str(caught.value) and "sk-proj-abcdefghijklmnop" not in str(caught.value)


async def test_a_refused_history_names_the_message_and_loses_nothing(
    engine: Engine, llm: ScriptedLLM
) -> None:
    llm.push(call("send_message", message="first"))
    await engine.send("cli:a", "hello", spec=SPEC)
    index = len(llm.requests[0]["messages"])  # the first answer, in the next request
    llm.push(fail(400, f"Invalid 'messages[{index}].tool_calls[0].id': string too long.",
                  "string_above_max_length", param=f"messages[{index}].tool_calls[0].id"))
    result = await engine.send("cli:a", "second", spec=SPEC)
    [notice] = result.notices
    assert llm.requests[1]["messages"][index]["role"] == "assistant"
    assert f"It is message {index} of the prompt (assistant: 'calls send_message')" in notice
    assert "/pop" in notice and "Your message is saved" in notice
    assert llm.chat_calls == 2  # a refusal the same request would get again is not retried
    agent = await engine.agent("cli:a")
    assert any("second" in (m.content or "") for m in agent.queue)
