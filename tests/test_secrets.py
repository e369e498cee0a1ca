"""Secrets: the LLM key, the embedding key and the Discord token never appear in logs (captured
at DEBUG, from every library), exports, dumps, replies, error messages, CLI output, the SQLite
files or the Chroma directory — even when servers echo the key back in their errors (masked
like OpenAI does, or whole like some proxies do).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from bot import redact
from bot.config import Settings
from bot.discordbot.bot import Mnemocord
from bot.engine import AgentSpec, Engine
from bot.terminal import TerminalChat
from tests.bot_harness import BotProcesses, WiredEmulator
from tests.conftest import SCRIPTED_EMBEDDINGS
from tests.discord_emulator import run_client
from tests.llm_server import ScriptedLLM, call, fail, say

# Keys no generic pattern in bot/redact.py recognises (not `sk-…`, not token-shaped; many
# providers' keys look like this), so they are redacted only because the configured secrets are
# registered: the tests fail if registration stops. (`test_the_keys_are_not_key_shaped` keeps
# it so; the emulator's token, `<id>.emu.<random>`, is not Discord-shaped either.)
LLM_KEY = "LEAKCHECKllm1f3a9c7e5b2d4f60"
EMBEDDING_KEY = "LEAKCHECKemb8e6d4c2b0a9f7e51"
NOISY = ("", "discord", "openai", "httpx", "httpx2", "httpcore", "httpcore2", "aiohttp",
         "chromadb", "aiosqlite", "asyncio", "bot")


def test_the_keys_are_not_key_shaped() -> None:
    emu_token = WiredEmulator(bot_name="Mnemocord").token
    for secret in needles(LLM_KEY, EMBEDDING_KEY, emu_token, emu_token.rsplit(".", 1)[-1]):
        for echo in (secret, masked(secret), f"Received API Key = {secret}"):
            assert not any(pattern.search(echo) for pattern in redact._GENERIC), echo


def masked(key: str) -> str:
    """How OpenAI echoes a wrong key: the first 8 and last 4 characters."""
    return f"{key[:8]}{'*' * 24}{key[-4:]}"


def needles(*secrets: str) -> list[str]:
    """The secrets, pieces long enough to identify one (the start, the secret end), and the
    start of a masked echo (what OpenAI sends back)."""
    found = []
    for secret in secrets:
        found += [secret, secret[:12], secret[-12:], secret[:8] + "*"]
    return found


def leaks(text: str | bytes, secrets: list[str]) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [s for s in secrets if s.encode() in data]


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything every library logs at DEBUG, formatted with tracebacks, as a file would be."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    levels = {name: logging.getLogger(name).level for name in NOISY}
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    yield sink
    logging.getLogger().removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def echoing_errors(llm: ScriptedLLM) -> None:
    """The next chat calls fail with the key in the error, masked and whole; embeddings too."""
    llm.push(fail(401, f"Incorrect API key provided: {masked(LLM_KEY)}. You can find your key"),
             fail(500, f"Upstream rejected: Received API Key = {LLM_KEY}"),
             fail(403, f"Forbidden for Authorization: Bearer {LLM_KEY}"))
    llm.push_embedding_failure(401, f"Incorrect API key provided: {masked(EMBEDDING_KEY)}.")
    llm.push_embedding_failure(401, f"Invalid key {EMBEDDING_KEY}")


async def test_keys_and_token_never_leave_the_process(
    tmp_path: Path, llm: ScriptedLLM, make_settings: Callable[..., Settings],
    debug_log: io.StringIO,
) -> None:
    emu = WiredEmulator(bot_name="Mnemocord")
    await emu.start()
    secrets = needles(LLM_KEY, EMBEDDING_KEY, emu.token, emu.token.rsplit(".", 1)[-1])
    settings = make_settings(llm_api_key=LLM_KEY, embedding_api_key=EMBEDDING_KEY,
                             discord_token=emu.token, log_level="DEBUG", **SCRIPTED_EMBEDDINGS)
    shown: list[str] = []
    try:
        guild = emu.create_guild("Secret Guild")
        alice = emu.create_user("alice", global_name="Alice")
        emu.add_member(guild, alice)
        dm = emu.dm_channel(alice)
        async with Engine(settings) as engine, run_client(emu, Mnemocord(engine, settings)):
            echoing_errors(llm)
            for text in ("hello", "again", "and again"):
                sent = await emu.user_sends_dm(alice, text)
                await emu.wait_for_bot_message(dm, lambda m, s=sent: bool(m.reference) and int(
                    m.reference["message_id"]) == s.id, after=sent.id)
            llm.push(call("archival_memory_insert", content="Alice likes tea.",
                          request_heartbeat=True), call("send_message", message="Saved?"),
                     call("archival_memory_insert", content="Tea again.",
                          request_heartbeat=True), call("send_message", message="Saved!"))
            for text in ("remember tea", "remember tea again"):
                sent = await emu.user_sends_dm(alice, text)
                await emu.wait_for_bot_message(dm, lambda m, s=sent: bool(m.reference) and int(
                    m.reference["message_id"]) == s.id, after=sent.id)
            llm.push_embedding_failure(401, f"bad key {EMBEDDING_KEY}")
            for name, options in (("search", {"where": "archival", "query": "tea"}),
                                  ("memory", {}), ("dump", {"n": 50}), ("export", {})):
                done = await (await emu.invoke_slash(alice, dm, name, options)).wait_done()
                shown += [m.content for m in done.all_messages]
                shown += [data.decode() for data in done.files.values()]
            shown += [m.content for m in emu.bot_messages()]

            out = io.StringIO()
            notes = tmp_path / "notes.txt"
            notes.write_text("Some notes worth keeping.")
            lines = iter(["hi from the terminal", f"/attach {notes}", "/dump 20", "/memory",
                          "/tokens", "/save cp", "/load cp"])

            async def read_line(prompt: str) -> str | None:
                return next(lines, None)

            chat = TerminalChat(engine, "cli:secret", console=Console(file=out, width=200),
                                read_line=read_line)
            echoing_errors(llm)
            llm.handler = lambda req: say("Summary.") if "tools" not in req else call(
                "send_message", message="Hello from the terminal agent.")
            await chat.start(AgentSpec(name="Sam"), first=False)
            await chat.run()
            shown.append(out.getvalue())
            assert "could not" in out.getvalue() or "failed" in out.getvalue()
    finally:
        await emu.stop()

    assert "Incorrect API key provided" in debug_log.getvalue() or "EmbeddingError" in (
        debug_log.getvalue())  # the errors were logged...
    assert leaks(debug_log.getvalue(), secrets) == []  # ...without the keys
    assert leaks("\n".join(shown), secrets) == []
    for path in sorted(settings.data_dir.rglob("*")):
        if path.is_file():
            assert leaks(path.read_bytes(), secrets) == [], path


async def test_the_real_bot_process_logs_no_secret_at_debug(tmp_path: Path) -> None:
    async with ScriptedLLM() as llm:
        emu = WiredEmulator(bot_name="Mnemocord")
        await emu.start()
        procs = BotProcesses(emu, llm, tmp_path / "sandbox", env={
            "LLM_API_KEY": LLM_KEY, "EMBEDDING_API_KEY": EMBEDDING_KEY, "LOG_LEVEL": "DEBUG"})
        try:
            alice = emu.create_user("alice", global_name="Alice")
            emu.add_member(emu.create_guild("Secret Guild"), alice)
            llm.handler = lambda req: call("archival_memory_insert", content="a note",
                                           request_heartbeat=True) if not any(
                m["role"] == "tool" for m in req["messages"]) else call(
                "send_message", message="done")
            assert await procs.start(), procs.logs()
            # After the start-up check (which would stop the bot at a refused key): the errors
            # come in the middle of the conversation, where the bot goes on.
            echoing_errors(llm)
            dm = emu.dm_channel(alice)
            for text in ("one", "two", "three", "four", "five"):
                sent = await emu.user_sends_dm(alice, text)
                await emu.wait_for_bot_message(dm, lambda m, s=sent: bool(m.reference) and int(
                    m.reference["message_id"]) == s.id, after=sent.id, timeout=60)
            assert await procs.stop() == 0
            logs = procs.logs()
            secrets = needles(LLM_KEY, EMBEDDING_KEY, emu.token, emu.token.rsplit(".", 1)[-1])
        finally:
            await procs.aclose()
            await emu.stop()
    assert "DEBUG" in logs and "Incorrect API key" in logs.replace("[redacted]", "")
    assert leaks(logs, secrets) == []
    for path in sorted(procs.data_dir.rglob("*")):
        if path.is_file():
            assert leaks(path.read_bytes(), secrets) == [], path
