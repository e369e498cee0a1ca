"""Starting and stopping the bot: clear one-line errors, clean shutdown that finishes turns."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.config import Settings
from bot.discordbot.run import StartupError, serve
from tests.conftest import REPO
from tests.discord_emulator import DiscordEmulator
from tests.discord_world import World, reply_with


async def test_missing_token(make_settings) -> None:
    with pytest.raises(StartupError, match="DISCORD_TOKEN is not set"):
        await serve(make_settings(discord_token=""))


async def test_unreachable_llm(make_settings) -> None:
    settings = make_settings(discord_token="x", llm_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(StartupError, match="cannot reach the LLM server"):
        await serve(settings)


async def test_invalid_token_and_missing_intent(make_settings) -> None:
    async with DiscordEmulator() as emu:
        with emu.patched():
            with pytest.raises(StartupError, match="rejected DISCORD_TOKEN"):
                await serve(make_settings(discord_token="not-the-token"), check=False)
            emu.privileged_intents_enabled = False
            with pytest.raises(StartupError, match="Message Content intent"):
                await serve(make_settings(discord_token=emu.token), check=False)


async def test_shutdown_finishes_in_flight_turns(world: World, bot) -> None:
    release = asyncio.Event()

    async def slow(request):
        await release.wait()
        return reply_with("finished before shutdown")

    world.llm.handler = slow
    await world.emu.user_sends_dm(world.alice, "answer me")
    await world.llm.wait_for_requests(1)
    closing = asyncio.create_task(bot.close())
    release.set()
    await closing
    replies = [m.content for m in world.emu.bot_messages(world.emu.dm_channel(world.alice))]
    assert replies == ["finished before shutdown"]


def test_cli_reports_a_missing_token_in_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env.update({"PYTHONPATH": str(REPO), "DATA_DIR": str(tmp_path)})
    done = subprocess.run([sys.executable, "-m", "bot", "discord"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mnemocord: DISCORD_TOKEN is not set (see .env.example)"]


def test_settings_never_show_secrets() -> None:
    settings = Settings(_env_file=None, llm_api_key="sk-very-secret", discord_token="tok-secret")
    assert "sk-very-secret" not in repr(settings) and "tok-secret" not in str(settings)
