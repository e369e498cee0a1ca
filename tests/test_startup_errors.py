"""Startup problems give one clear line (no traceback) and never print a credential."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.discordbot.run import StartupError, check_llm
from bot.engine import Engine
from tests.conftest import REPO


@pytest.mark.parametrize("command", ["chat", "discord", "agents"])
async def test_a_timezone_typo_is_one_line_naming_the_setting(tmp_path: Path, command: str
                                                              ) -> None:
    env = {**os.environ, "TIMEZONE": "Europe/Berlinn", "DATA_DIR": str(tmp_path / "data"),
           "DISCORD_TOKEN": "unused", "LLM_BASE_URL": "http://127.0.0.1:9/v1",
           "EMBEDDING_PROVIDER": "openai", "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", command,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )
    _, err = await asyncio.wait_for(process.communicate(b"/exit\n"), 60)
    text = err.decode()
    lines = text.strip().splitlines()
    assert process.returncode == 2, text
    assert len(lines) == 1 and "Traceback" not in text, text
    assert "TIMEZONE" in lines[0] and "'Europe/Berlinn'" in lines[0], lines
    assert "Europe/Berlin" in lines[0].replace("'Europe/Berlinn'", ""), lines  # an example


@pytest.mark.parametrize("value",
                         ["Europe/Berlinn", "", "Europe", "../etc/passwd", "Mars/Olympus"])
def test_every_unusable_timezone_is_rejected_by_the_settings(value: str) -> None:
    with pytest.raises(ValueError, match=r"not a known time zone.*Europe/Berlin"):
        Settings(_env_file=None, timezone=value)
    assert Settings(_env_file=None, timezone="America/New_York").timezone == "America/New_York"


def _closed_port() -> int:
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("credentials", ["bob:hunter2hunter2@", "hunter2hunter2@", ""])
async def test_check_llm_never_prints_credentials_from_the_base_url(
    make_settings: Callable[..., Settings], credentials: str,
) -> None:
    # Userinfo in the URL (proxies with basic auth) and a key in the query string (Azure-style
    # gateways, Google's ?key=) are both credentials. Nothing listens on the port, or the client
    # refuses userinfo outright (aiohttp: "Cannot combine AUTHORIZATION header with ...
    # credentials encoded in URL"); either way startup stops with one line.
    port = _closed_port()
    url = f"http://{credentials}127.0.0.1:{port}/v1?api-key=q5ecretq5ecret&x=1"
    async with Engine(make_settings(llm_base_url=url)) as engine:
        with pytest.raises(StartupError) as refused:
            await check_llm(engine)
    text = str(refused.value)
    assert "LLM_BASE_URL" in text and f"127.0.0.1:{port}/v1" in text, text  # still says where
    assert "hunter2" not in text and "q5ecret" not in text, text
