"""`mnemocord doctor` against a real llama.cpp `llama-server` (opt-in: MNEMOCORD_LLAMACPP=DIR, a
folder made by `scripts/llamacpp.sh build DIR`). The model there is a 270M base model whose
answers are nonsense: what is checked is what the server itself accepts, refuses and reports."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.doctor import FAIL, OK
from tests.conftest import REPO

FOLDER = os.environ.get("MNEMOCORD_LLAMACPP")
pytestmark = pytest.mark.skipif(not FOLDER, reason="set MNEMOCORD_LLAMACPP to a folder made by"
                                " scripts/llamacpp.sh build")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _server(*flags: str) -> AsyncIterator[str]:
    folder = Path(FOLDER or "")
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        str(folder / "llama-server"), "-m", str(folder / "gemma3-270m-q4_k_m.gguf"),
        "--host", "127.0.0.1", "--port", str(port), "-c", "8192", "-t", "2", *flags,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    try:
        # Logged once the model is loaded and the port answers ("llama_server: listening on
        # http://..." in 0.6.0-dev; "server is listening on http://..." in older builds).
        while b"listening on http" not in await asyncio.wait_for(
                process.stderr.readline(), 120):
            pass
        drain = asyncio.create_task(process.stderr.read())  # keep the pipe from filling
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        await process.wait()
    drain.cancel()


@pytest.fixture
async def jinja() -> AsyncIterator[str]:
    async for url in _server("--jinja"):
        yield url


@pytest.fixture
async def no_jinja() -> AsyncIterator[str]:
    async for url in _server("--no-jinja"):
        yield url


async def _doctor(url: str, tmp_path: Path, local_model_dir: Path) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "EMBEDDING_"))}
    env.update({"LLM_BASE_URL": url, "LLM_MODEL": "gemma-3-270m", "LLM_TIMEOUT": "120",
                "LLM_MAX_RESPONSE_TOKENS": "64", "DATA_DIR": str(tmp_path / "data"),
                "LOCAL_EMBEDDING_MODEL_DIR": str(local_model_dir), "PYTHONPATH": str(REPO)})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "doctor", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path)
    out, err = await asyncio.wait_for(process.communicate(), 600)
    assert b"Traceback" not in err, err.decode()
    assert process.returncode is not None
    print(out.decode())  # the verdicts, for docs/providers.md
    return process.returncode, out.decode().splitlines()


def _line(lines: list[str], check: str) -> str:
    return next(line for line in lines if line[2:].startswith(f"{check}:"))


async def test_the_doctor_against_llama_server(jinja: str, tmp_path: Path,
                                               local_model_dir: Path) -> None:
    code, lines = await _doctor(jinja, tmp_path, local_model_dir)
    for check in ("reachable", "key", "model", "streaming", "embeddings"):
        assert _line(lines, check).startswith(OK), lines
    # With --jinja the server takes the tools, but Gemma 3's own template has none: /props says
    # so (chat_template_caps.supports_tools false) and the functions would be dropped.
    tools = _line(lines, "tools")
    assert tools.startswith(FAIL) and "chat template" in tools, lines
    assert code == 1


@pytest.fixture
async def tools_template() -> AsyncIterator[str]:
    async for url in _server("--jinja", "--chat-template-file",
                             str(Path(FOLDER or "") / "tools-template.jinja")):
        yield url


async def test_with_a_tools_template_the_trial_runs_against_the_real_server(
        tools_template: str, tmp_path: Path, local_model_dir: Path) -> None:
    # The functions reach the model now; the trial turns (the bot's real prompt, history with
    # tool calls and results) are requests llama.cpp must accept, whatever the model answers.
    code, lines = await _doctor(tools_template, tmp_path, local_model_dir)
    assert _line(lines, "tools").startswith(OK), lines
    for check in ("send_message", "memory"):
        line = _line(lines, check)
        assert "not checked" not in line and "trial conversation failed" not in line, lines
    # Not asserted: that no request of the trial is refused. This model's calls are random, and
    # one cut off at max_tokens, replayed as it came, gets llama.cpp's 500 "Failed to parse tool
    # call arguments as JSON" (docs/providers.md): the doctor shows it in the memory line.
    assert code in (0, 1)  # whether a 270M base model calls the functions is up to it


async def test_llama_server_without_jinja_gets_the_jinja_fix(no_jinja: str, tmp_path: Path,
                                                             local_model_dir: Path) -> None:
    code, lines = await _doctor(no_jinja, tmp_path, local_model_dir)
    assert code == 1
    tools = _line(lines, "tools")
    assert tools.startswith(FAIL) and "--jinja" in tools, lines
