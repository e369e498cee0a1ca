"""One process per data directory: a second engine on the same folder is refused, in the same
process and from another process (`mnemocord chat` while another chat or the bot runs)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.engine import Engine
from tests.conftest import REPO
from tests.llm_server import ScriptedLLM, call


async def test_a_second_engine_on_the_same_folder_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    # flock(2) locks belong to an open file description, so two opens of the lock file in one
    # process conflict just like two processes do (Linux flock(2), "NOTES").
    from bot.datalock import DataDirLocked

    settings = make_settings()
    async with Engine(settings):
        with pytest.raises(DataDirLocked) as refused:
            await Engine(make_settings()).open()
        assert f"pid {os.getpid()}" in str(refused.value)
        assert "DATA_DIR" in str(refused.value)
        async with Engine(make_settings(data_dir=tmp_path / "elsewhere")):
            pass  # another folder is independent
    async with Engine(make_settings()):
        pass  # closing released the lock


async def _cli(env: dict[str, str], cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd,
    )


async def test_a_second_process_is_refused_with_one_line(llm: ScriptedLLM, tmp_path: Path
                                                         ) -> None:
    llm.push(call("send_message", message="First process here."))
    env = {
        **os.environ,
        "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "sk-lock-test-key", "LLM_MAX_RETRIES": "0",
        "EMBEDDING_PROVIDER": "openai", "DATA_DIR": str(tmp_path / "data"),
        "DISCORD_TOKEN": "unused", "PYTHONPATH": str(REPO),
    }
    first = await _cli(env, tmp_path, "chat", "--agent", "one", "--first")
    assert first.stdin is not None and first.stdout is not None
    first.stdin.write(b"hello\n")
    await first.stdin.drain()
    # The reply shows the first process holds the folder (it is now waiting at the prompt).
    seen = b""
    while b"First process here." not in seen:
        chunk = await asyncio.wait_for(first.stdout.read(4096), 60)
        assert chunk, "the first chat ended early"
        seen += chunk
    try:
        for command in (["chat", "--agent", "two"], ["discord"], ["agents"]):
            second = await _cli(env, tmp_path, *command)
            out, err = await asyncio.wait_for(second.communicate(b"hi\n/exit\n"), 60)
            lines = err.decode().strip().splitlines()
            assert second.returncode == 1, (command, out, err)
            assert len(lines) == 1, (command, lines)
            assert f"pid {first.pid}" in lines[0] and "mnemocord chat" in lines[0], lines
            assert "DATA_DIR" in lines[0] and "Traceback" not in err.decode()
    finally:
        first.stdin.write(b"/exit\n")
        await first.stdin.drain()
        await asyncio.wait_for(first.wait(), 60)
    assert first.returncode == 0
    again = await _cli(env, tmp_path, "agents")
    out, err = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0 and "cli:one" in out.decode(), err.decode()
