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


# --- the doctor's quick checks before connecting (bot/doctor.py) ------------------------------


async def test_the_quick_checks_print_their_verdicts_before_connecting(
        make_settings, llm, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.discordbot.run import check_llm
    from bot.engine import Engine
    from tests.test_doctor import working_model

    llm.handler = working_model
    async with Engine(make_settings()) as engine:
        await check_llm(engine)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ reachable", "✓ key", "✓ model", "✓ tools"], lines
    assert llm.requests[-1]["tools"]  # the tools check sent the bot's functions


async def test_a_server_that_refuses_tools_stops_the_start_with_the_fix(
        make_settings, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.llm_server import ScriptedLLM
    from tests.test_doctor import _VLLMWithoutAutoToolChoice, working_model

    async with ScriptedLLM(provider=_VLLMWithoutAutoToolChoice()) as server:
        server.handler = working_model
        settings = make_settings(discord_token="x", llm_base_url=server.base_url,
                                 llm_model=server.model)
        # Stops before any connection to Discord (none could be made here: no emulator).
        with pytest.raises(StartupError, match=r"tools: .*--enable-auto-tool-choice"):
            await serve(settings)
        assert server.take_violations()
    printed = capsys.readouterr().out
    assert "✓ model" in printed and "✗ tools" in printed, printed


async def test_a_wrong_key_stops_the_start(make_settings) -> None:
    from tests.llm_server import ScriptedLLM

    async with ScriptedLLM(api_key="sk-the-right-one-9999") as server:
        settings = make_settings(discord_token="x", llm_base_url=server.base_url)
        with pytest.raises(StartupError, match="key: the server rejected LLM_API_KEY") as stop:
            await serve(settings)
    assert "sk-test-secret" not in str(stop.value)


async def test_the_cli_prints_the_verdicts_and_one_error_line(
        tmp_path: Path, local_model_dir: Path) -> None:
    from tests.llm_server import ScriptedLLM
    from tests.test_doctor import _OllamaModelWithoutTools, working_model

    async with ScriptedLLM(provider=_OllamaModelWithoutTools()) as server:
        server.handler = working_model
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_")}
        env.update({"PYTHONPATH": str(REPO), "DATA_DIR": str(tmp_path / "data"),
                    "DISCORD_TOKEN": "x", "LLM_BASE_URL": server.base_url,
                    "LLM_MODEL": server.model, "LOCAL_EMBEDDING_MODEL_DIR": str(local_model_dir)})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "discord", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        server.take_violations()
    assert process.returncode == 1, out + err
    assert b"\xe2\x9c\x97 tools" in out, out  # "✗ tools"
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("mnemocord: tools:") and "cannot call functions" in last, err
