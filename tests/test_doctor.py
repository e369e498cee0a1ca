"""`mnemocord doctor` against the scripted provider profiles: all ✓ where the model works, and
the clear ✗ line with its fix where a real server or model would break the bot."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.doctor import FAIL, OK, SKIP, WARN, Doctor, Verdict
from tests import providers
from tests.conftest import REPO, SCRIPTED_EMBEDDINGS
from tests.llm_server import ScriptedLLM, Step, call, say
from tests.openai_rules import Violation
from tests.providers import Provider

KEY = "sk-test-secret-key-123"  # what make_settings sends
WINDOWS_MODULE = importlib.util.find_spec("bot.windows") is not None


def working_model(req: dict[str, Any]) -> Step:
    """A model that does what the bot asks: answers through send_message, stores a fact it is
    told to remember, and says something when asked without tools."""
    if not req.get("tools"):
        return say("OK, one two three four five.")
    messages = req["messages"]
    if messages[-1].get("role") == "tool":
        return call("send_message", message="Noted: teal it is.")
    # What arrived since the model last spoke (the bot may add its own alerts after the person).
    since = []
    for message in reversed(messages):
        if message.get("role") != "user":
            break
        since.append(json.dumps(message.get("content")))
    if any("favourite colour" in text for text in since):
        return call("core_memory_append", label="human", content="Favourite colour: teal",
                    request_heartbeat=True)
    return call("send_message", message="Hello Ada, nice to meet you too!")


def plain_text_model(req: dict[str, Any]) -> Step:
    return say("Hello! I will remember that.")


async def run_doctor(settings: Settings) -> tuple[bool, dict[str, Verdict], list[str]]:
    lines: list[str] = []
    async with Doctor(settings, report=lambda v: lines.append(v.line())) as doctor:
        passed = await doctor.full()
    return passed, {v.check: v for v in doctor.verdicts}, lines


CHECKS = ["reachable", "key", "model", "tools", "send_message", "memory", "context window",
          "streaming", "embeddings"]


async def test_a_working_openai_endpoint_passes_every_check(
        llm: ScriptedLLM, make_settings: Callable[..., Settings]) -> None:
    llm.handler = working_model
    passed, verdicts, lines = await run_doctor(make_settings())
    assert passed, lines
    assert list(verdicts) == CHECKS, lines
    window = verdicts.pop("context window")
    assert all(v.mark == OK for v in verdicts.values()), lines
    if WINDOWS_MODULE:
        # gpt-4o-mini's window is known; the scripted OpenAI, like the real one, does not
        # report it.
        assert window.mark == OK and "128000" in window.detail, window
    else:  # the server cannot be asked yet: the assumed window is only a warning
        assert window.mark == WARN and "cannot ask the server" in window.detail, window
    assert "send_message" in verdicts["send_message"].detail
    assert "core_memory_append" in verdicts["memory"].detail
    assert "chunks" in verdicts["streaming"].detail
    assert "384 dimensions" in verdicts["embeddings"].detail  # the local all-MiniLM-L6-v2
    # The trial ran the bot's real prompt and tools: the system message and every function.
    trial = [r for r in llm.requests if r.get("tools") and len(r["messages"]) > 1]
    assert trial and "send_message" in json.dumps(trial[0]["tools"])
    assert trial[0]["messages"][0]["role"] == "system"
    assert all(KEY not in line for line in lines)


async def test_the_trial_agent_writes_nothing_to_the_data_folder(
        llm: ScriptedLLM, make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    llm.handler = working_model
    settings = make_settings(data_dir=tmp_path / "user-data")
    passed, _, lines = await run_doctor(settings)
    assert passed, lines
    assert not (tmp_path / "user-data").exists()


async def test_a_wrong_key_is_one_clear_line_and_stops_the_dependent_checks(
        make_settings: Callable[..., Settings]) -> None:
    async with ScriptedLLM(api_key="sk-the-right-key-0000") as server:
        settings = make_settings(llm_base_url=server.base_url)
        passed, verdicts, lines = await run_doctor(settings)
    assert not passed
    assert verdicts["reachable"].mark == OK
    key = verdicts["key"]
    assert key.mark == FAIL and "rejected LLM_API_KEY (401" in key.detail, lines
    assert "LLM_API_KEY" in key.fix
    assert verdicts["model"].mark == SKIP and verdicts["tools"].mark == SKIP
    assert all(KEY not in line and "-123" not in line for line in lines), lines  # nor its echo


async def test_an_unreachable_server(make_settings: Callable[..., Settings]) -> None:
    async with ScriptedLLM() as server:
        url = server.base_url  # stopped on leaving: nothing listens there any more
    passed, verdicts, lines = await run_doctor(make_settings(llm_base_url=url))
    assert not passed
    assert verdicts["reachable"].mark == FAIL and "cannot reach" in lines[0], lines
    assert "LLM_BASE_URL" in verdicts["reachable"].fix
    assert verdicts["streaming"].mark == SKIP


class _KnowsOneModel(Provider):
    """OpenAI's answer to a model it does not serve: 404 model_not_found, "The model `x` does
    not exist or you do not have access to it." (rd-1-2022/ai-openai-helloworld#9)."""

    name = "doctor-one-model"

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        assert self.server is not None
        if body.get("model") != self.server.model:
            message = (f"The model `{body.get('model')}` does not exist or you do not have"
                       " access to it.")
            return [Violation(message, None, "model_not_found", status=404)]
        return super().reject(body)


async def test_an_unknown_model_names_the_ones_served(
        make_settings: Callable[..., Settings]) -> None:
    async with ScriptedLLM(provider=_KnowsOneModel()) as server:
        passed, verdicts, lines = await run_doctor(make_settings(
            llm_base_url=server.base_url, llm_model="gpt-4o-mni"))
        assert len(server.take_violations()) == 1  # expected: the typo was refused
    assert not passed
    model = verdicts["model"]
    assert model.mark == FAIL and "'gpt-4o-mni' is not served here (404" in model.detail, lines
    assert "gpt-4o-mini" in model.fix, model  # from GET /models
    assert verdicts["tools"].mark == SKIP


class _VLLMWithoutAutoToolChoice(Provider):
    """vLLM started without --enable-auto-tool-choice: 400 '"auto" tool choice requires
    --enable-auto-tool-choice and --tool-call-parser to be set', body {"object": "error",
    "message", "type": "BadRequestError", "param": null, "code": 400}
    (langchain4j/langchain4j#3475; vllm serving_chat.py as quoted in vllm-project/vllm-omni#810)."""

    name = "doctor-vllm-no-tools"
    model = "Qwen/Qwen2.5-7B-Instruct"

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        if body.get("tools") and body.get("tool_choice", "auto") == "auto":
            message = ('"auto" tool choice requires --enable-auto-tool-choice and'
                       " --tool-call-parser to be set")
            return [Violation(message, status=400, body={
                "object": "error", "message": message, "type": "BadRequestError",
                "param": None, "code": 400})]
        return super().reject(body)


class _OllamaModelWithoutTools(Provider):
    """An Ollama model whose template has no tools: 400 {"error": {"message":
    "registry.ollama.ai/library/gemma3:4b does not support tools", "type": "api_error"}}
    (louisho5/picobot#6, ollama/ollama#6027)."""

    name = "doctor-ollama-no-tools"
    model = "gemma3:4b"

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        if body.get("tools"):
            message = f"registry.ollama.ai/library/{body['model']} does not support tools"
            return [Violation(message, status=400, body={"error": {
                "message": message, "type": "api_error", "param": None, "code": None}})]
        return super().reject(body)


class _LlamaCppWithoutJinja(Provider):
    """llama-server --no-jinja given tools: 500 {"error": {"code": 500, "message": "tools
    param requires --jinja flag", "type": "server_error"}} (observed, ../shared/PROVIDERS.md)."""

    name = "doctor-llamacpp-no-jinja"
    model = "gemma-3-270m"

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        if body.get("tools"):
            return [Violation("tools param requires --jinja flag", status=500, body={"error": {
                "code": 500, "message": "tools param requires --jinja flag",
                "type": "server_error"}})]
        return super().reject(body)


@pytest.mark.parametrize(("profile", "hint"), [
    (_VLLMWithoutAutoToolChoice, "--enable-auto-tool-choice --tool-call-parser"),
    (_OllamaModelWithoutTools, "cannot call functions"),
    (_LlamaCppWithoutJinja, "--jinja"),
])
async def test_a_server_that_rejects_tools_says_what_to_change(
        make_settings: Callable[..., Settings], profile: type[Provider], hint: str) -> None:
    async with ScriptedLLM(provider=profile()) as server:
        server.handler = working_model
        passed, verdicts, lines = await run_doctor(make_settings(
            llm_base_url=server.base_url, llm_model=server.model))
        assert server.take_violations()  # the refusal the test is about
    assert not passed
    assert [verdicts[c].mark for c in ("reachable", "key", "model")] == [OK, OK, OK], lines
    tools = verdicts["tools"]
    assert tools.mark == FAIL and "was refused" in tools.detail, lines
    assert hint in tools.fix, tools
    assert verdicts["send_message"].mark == SKIP and verdicts["memory"].mark == SKIP


async def test_a_model_that_only_writes_plain_text_fails_the_memory_check(
        llm: ScriptedLLM, make_settings: Callable[..., Settings]) -> None:
    llm.handler = plain_text_model
    passed, verdicts, lines = await run_doctor(make_settings())
    assert not passed
    assert verdicts["tools"].mark == OK  # the server takes tools; the model ignores them
    # The bot still answers (PLAIN_TEXT_REPLIES), which the line says; memory would never work.
    assert verdicts["send_message"].mark == WARN and "plain text" in verdicts["send_message"].detail
    memory = verdicts["memory"]
    assert memory.mark == FAIL and "called no function" in memory.detail, lines
    assert "calls functions" in memory.fix


async def test_without_plain_text_replies_a_plain_answer_is_no_reply(
        llm: ScriptedLLM, make_settings: Callable[..., Settings]) -> None:
    llm.handler = plain_text_model
    passed, verdicts, lines = await run_doctor(make_settings(plain_text_replies=False))
    assert not passed
    assert verdicts["send_message"].mark == FAIL, lines


class _NoStreaming(Provider):
    name = "doctor-no-streaming"
    streams = False


async def test_no_streaming_is_a_note_not_a_failure(
        make_settings: Callable[..., Settings]) -> None:
    async with ScriptedLLM(provider=_NoStreaming()) as server:
        server.handler = working_model
        passed, verdicts, lines = await run_doctor(make_settings(llm_base_url=server.base_url))
    streaming = verdicts["streaming"]
    assert streaming.mark == WARN and "stream=true was refused (400" in streaming.detail, lines
    assert passed, lines  # Mnemocord itself does not stream


async def test_an_embeddings_endpoint_that_is_missing(
        llm: ScriptedLLM, make_settings: Callable[..., Settings]) -> None:
    llm.handler = working_model
    # An endpoint with chat but no /embeddings (aiohttp's own 404 for an unknown path).
    settings = make_settings(**SCRIPTED_EMBEDDINGS,
                             embedding_base_url=llm.base_url.removesuffix("/v1") + "/chat-only")
    passed, verdicts, lines = await run_doctor(settings)
    assert not passed
    embeddings = verdicts["embeddings"]
    assert embeddings.mark == FAIL and "404" in embeddings.detail, lines
    assert "EMBEDDING_BASE_URL" in embeddings.fix and "EMBEDDING_PROVIDER=local" in embeddings.fix


async def test_the_scripted_embeddings_endpoint_passes(
        llm: ScriptedLLM, make_settings: Callable[..., Settings]) -> None:
    llm.handler = working_model
    passed, verdicts, lines = await run_doctor(make_settings(**SCRIPTED_EMBEDDINGS))
    assert passed, lines
    assert "openai:scripted-embedding" in verdicts["embeddings"].detail
    assert llm.embedding_requests  # it really asked the endpoint


async def test_a_window_nobody_knows_is_a_warning(
        llm: ScriptedLLM, make_settings: Callable[..., Settings]) -> None:
    llm.handler = working_model
    # Not in the built-in table, and the scripted OpenAI (like the real one) reports none.
    _, verdicts, lines = await run_doctor(make_settings(llm_model="my-own-finetune"))
    window = verdicts["context window"]
    assert window.mark == WARN and "assumes 8192 tokens" in window.detail, lines
    assert "LLM_CONTEXT_WINDOW" in window.fix


def _doctor_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "EMBEDDING_"))}
    env.update({"DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO), **values})
    return env


async def _cli(env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "doctor", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_prints_one_line_per_check_and_exits_0(
        llm: ScriptedLLM, tmp_path: Path, local_model_dir: Path) -> None:
    llm.handler = working_model
    env = _doctor_env(tmp_path, LLM_BASE_URL=llm.base_url, LLM_API_KEY=KEY,
                      LLM_MODEL=llm.model, LOCAL_EMBEDDING_MODEL_DIR=str(local_model_dir))
    code, out, err = await _cli(env, tmp_path)
    assert code == 0, out + err
    lines = out.strip().splitlines()
    verdicts = [line for line in lines if line[:2] in {f"{m} " for m in (OK, FAIL, WARN, SKIP)}]
    assert [line.split(":")[0][2:] for line in verdicts] == CHECKS, out
    # Every line ✓ (the window a warning while the server cannot be asked).
    assert all(line.startswith(OK) or (line.startswith(f"{WARN} context window")
                                       and not WINDOWS_MODULE) for line in verdicts), out
    assert "All required checks passed." in out
    assert "Traceback" not in err and KEY not in out + err


async def test_the_cli_exits_1_on_a_failure_and_never_prints_the_key(
        tmp_path: Path, local_model_dir: Path) -> None:
    wrong = "sk-proj-wrongwrongwrong-4242"
    async with ScriptedLLM(api_key="sk-right-right-right-0000") as server:
        env = _doctor_env(tmp_path, LLM_BASE_URL=server.base_url, LLM_API_KEY=wrong,
                          LLM_MODEL=server.model, LOCAL_EMBEDDING_MODEL_DIR=str(local_model_dir))
        code, out, err = await _cli(env, tmp_path)
    assert code == 1, out + err
    assert f"{FAIL} key: the server rejected LLM_API_KEY (401" in out, out
    assert "wrongwrong" not in out + err and "4242" not in out + err, out + err
    assert "Traceback" not in err


@pytest.mark.parametrize("profile", providers.names())
async def test_every_profile_gets_a_verdict_per_check_and_every_failure_a_fix(
        make_settings: Callable[..., Settings], profile: str) -> None:
    # Profiles other helpers add (tests/providers/) play real servers and models; whatever they
    # refuse or write, the doctor ends with one line per check, and a ✗ always says what to do.
    async with ScriptedLLM(provider=profile) as server:
        server.handler = working_model
        _, verdicts, lines = await run_doctor(make_settings(
            llm_base_url=server.base_url, llm_model=server.model))
        server.take_violations()  # what a profile refuses is the doctor's to report
    assert list(verdicts) == CHECKS, lines
    assert all(v.fix for v in verdicts.values() if v.mark == FAIL), lines
    assert verdicts["reachable"].mark == OK and verdicts["key"].mark == OK, lines


def test_the_readme_provider_table_lists_what_each_profile_sets() -> None:
    # A profile's `settings` are what a user sets for that provider; the table must say the same.
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("### Providers"):]
    for name in providers.names():
        for key, value in providers.provider(name).settings.items():
            if key in ("LLM_BASE_URL", "LLM_MODEL") and isinstance(value, str):
                assert f"`{value}`" in table, f"{name}: {key}={value} is not in the README table"
    for url in ("https://api.openai.com/v1", "http://localhost:11434/v1",
                "http://localhost:8000/v1", "http://localhost:8080/v1"):
        assert f"`{url}`" in table
    assert "mnemocord doctor" in readme[:readme.index("### Providers")]  # in the setup steps


@pytest.mark.parametrize(("status", "body"), [
    (404, '{"error": {"message": "The model `gpt-4o-mni` does not exist or you do not have access'
          ' to it.", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}'),
    (400, '{"error": {"message": "The requested model \'gpt-4-1106-preview\' does not exist.",'
          ' "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}'),
    (404, '{"object": "error", "message": "The model `qwen` does not exist.",'
          ' "type": "NotFoundError", "param": null, "code": 404}'),
    (404, '{"error": {"message": "models/gemini-9 is not found for API version v1beta"}}'),
    (404, '{"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}}'),
    (400, '{"object": "error", "message": "Invalid model: mistral-hyper", "type":'
          ' "invalid_model", "param": null, "code": "1500"}'),
])
def test_every_wording_of_an_unknown_model_is_recognised(status: int, body: str) -> None:
    from bot.doctor_hints import model_missing

    assert model_missing(status, body)


def test_an_unpulled_ollama_model_gets_the_pull_command() -> None:
    from bot.doctor_hints import model_fix, model_missing

    text = ('{"error": {"message": "model \\"qwen2.5:14b\\" not found, try pulling it first",'
            ' "type": "api_error", "param": null, "code": null}}')
    assert model_missing(404, text)
    assert "ollama pull qwen2.5:14b" in model_fix("qwen2.5:14b", ["llama3.1:latest"], text)
    assert not model_missing(400, '{"error": {"message": "messages: field required"}}')


async def test_a_server_that_echoes_the_whole_key_never_gets_it_printed(
        llm: ScriptedLLM, make_settings: Callable[..., Settings]) -> None:
    from tests.llm_server import fail

    # Some proxies put the key they were given into their error text.
    llm.push(fail(500, f"Upstream rejected: Received API Key = {KEY}"))
    llm.handler = working_model
    passed, verdicts, lines = await run_doctor(make_settings())
    assert not passed
    model = verdicts["model"]
    assert model.mark == FAIL and "(500: Upstream rejected" in model.line(), lines
    assert all(KEY not in line and "secret-key" not in line for line in lines), lines
    assert KEY not in model.detail  # nor in what a caller of the doctor gets


class _HermesTextCalls(Provider):
    """A server without a tool-call parser passing Qwen/Hermes calls through as text:
    `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Qwen2.5's chat template,
    tokenizer_config.json; NousResearch Hermes-2-Pro model card)."""

    name = "doctor-hermes-text"

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if not step.tool_calls:
            return step
        text = "".join(f'<tool_call>{{"name": "{c.name}", "arguments": {c.arguments}}}'
                       "</tool_call>" for c in step.tool_calls)
        return dataclasses.replace(step, content=text, tool_calls=())


@pytest.mark.skipif(importlib.util.find_spec("bot.textcalls") is None,
                    reason="this version reads tool_calls only (bot/textcalls.py, issue 11)")
async def test_calls_written_as_text_count_as_calls(
        make_settings: Callable[..., Settings]) -> None:
    # The agent reads and runs them like tool_calls: so does the doctor's verdict.
    async with ScriptedLLM(provider=_HermesTextCalls()) as server:
        server.handler = working_model
        _, verdicts, lines = await run_doctor(make_settings(llm_base_url=server.base_url))
    assert verdicts["send_message"].mark == OK, lines
    assert verdicts["memory"].mark == OK and "core_memory_append" in verdicts["memory"].detail
