"""The terminal chat: every slash command, resuming an agent, and the real CLI process."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console

from bot.engine import AgentSpec, Engine
from bot.terminal import TerminalChat
from tests.conftest import REPO
from tests.llm_server import ScriptedLLM, call, say


def scripted_input(lines: Iterable[str]):
    pending = list(lines)

    async def read_line(prompt: str) -> str | None:
        return pending.pop(0) if pending else None

    return read_line


async def run_chat(engine: Engine, lines: list[str], *, first: bool = True) -> str:
    out = io.StringIO()
    chat = TerminalChat(engine, "cli:sam", console=Console(file=out, width=200),
                        read_line=scripted_input(lines), user_name="Alice")
    await chat.start(AgentSpec(name="Sam", persona="sam"), first=first)
    await chat.run()
    return out.getvalue()


async def test_every_command(engine: Engine, llm: ScriptedLLM, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Alice's birthday is on 4 July. She likes lemon cake.")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02" * 10)
    llm.push(
        call("send_message", thoughts="Say hi.", message="Hello Alice!"),
        call("core_memory_append", label="human", content="Name: Alice",
             request_heartbeat=True),
        call("send_message", message="Nice to meet you."),
        call("send_message", message="Heartbeat reply."),
        call("send_message", message="Warning handled."),
        call("send_message", message="Retried reply."),
        say("A summary of our chat."),
        call("send_message", message="Two lines received."),
    )
    output = await run_chat(engine, [
        "hi there",
        "I'm Alice",
        "/memory",
        "/save first",
        "/dump 4",
        "/heartbeat",
        "/memorywarning",
        "/retry",
        "/summarize",
        "/memory",
        "/rethink Thinking again.",
        "/rewrite Rewritten reply.",
        "/pop 2",
        "/load first",
        f"/attach {notes}",
        f"/attach {binary}",
        "/attach /no/such/file.txt",
        "/tokens",
        "/pop abc",
        "/load missing",
        "/frobnicate",
        "/help",
        "//",
        "line one",
        "line two",
        "//",
        "/exit",
        "never read",
    ])
    for expected in [
        "💭 Say hi.", "🤖 Hello Alice!", "⚡ core_memory_append", "🤖 Nice to meet you.",
        "Name: Alice", "messages in context", "Saved checkpoint 'first'.",
        "🤖 Heartbeat reply.", "🤖 Warning handled.", "🤖 Retried reply.",
        "Replaced the last inner monologue.", "Replaced the last sent message.", "Popped",
        "Loaded checkpoint 'first'.", "Stored notes.txt in archival memory (1 passages).",
        "looks like a binary file", "No such file", "Context window", "Summarized",
        "A summary of our chat.", "🤖 Two lines received.",
        "Expected a positive whole number", "no checkpoint named 'missing'",
        "Unknown command /frobnicate", "/memorywarning", "Memory is saved. Bye!",
    ]:
        assert expected in output, expected
    assert "never read" not in output
    multi = [r for r in llm.requests if "line one\\nline two" in r["messages"][-1]["content"]]
    assert multi, "the // multi-line message did not reach the model"


async def test_coming_back_resumes_the_same_agent(make_settings, llm: ScriptedLLM) -> None:
    llm.push(call("send_message", message="Welcome!"),
             call("send_message", message="I remember you."))
    async with Engine(make_settings()) as engine:
        first = await run_chat(engine, ["/exit"], first=False)
    assert "Created agent 'sam'" in first and "🤖 Welcome!" in first
    async with Engine(make_settings()) as engine:
        again = await run_chat(engine, ["/exit"], first=False)
    assert "Resuming agent 'sam' (3 messages in recall" in again
    assert "I remember you." in again


async def test_the_real_cli_process(llm: ScriptedLLM, tmp_path: Path) -> None:
    llm.push(call("send_message", message="Hi from the CLI!"))
    env = {
        **os.environ,
        "LLM_BASE_URL": llm.base_url,
        "LLM_API_KEY": "sk-cli-secret",
        "LLM_MAX_RETRIES": "0",
        "EMBEDDING_PROVIDER": "openai",
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--agent", "cli-test", "--first",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )
    out, err = await asyncio.wait_for(process.communicate(b"hello\n/memory\n/exit\n"), 60)
    text = out.decode()
    assert process.returncode == 0, err.decode()
    assert "Hi from the CLI!" in text and "Memory is saved" in text
    log = (tmp_path / "data" / "mnemocord.log").read_text()
    assert "sk-cli-secret" not in log + text + err.decode()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--persona", "../etc/passwd",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )
    out, err = await asyncio.wait_for(process.communicate(b""), 60)
    assert process.returncode == 1 and "not a valid name" in err.decode()


async def test_ctrl_c_at_the_prompt_ends_the_chat_without_enter(llm: ScriptedLLM,
                                                                tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) while the chat waits for a line ends it at once, with everything saved.
    stdin and stdout are a pseudo-terminal, as in a real terminal."""
    llm.push(call("send_message", message="Hi over the tty!"))
    env = {
        **os.environ,
        "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "sk-cli-secret", "LLM_MAX_RETRIES": "0",
        "EMBEDDING_PROVIDER": "openai", "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    master, slave = os.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--agent", "tty", "--first",
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path, start_new_session=True,
    )
    os.close(slave)
    seen = b""

    async def read_until(wanted: bytes, start: int = 0) -> None:
        nonlocal seen
        while wanted not in seen[start:]:
            chunk = await asyncio.to_thread(os.read, master, 4096)
            assert chunk, seen.decode(errors="replace")
            seen += chunk

    try:
        await asyncio.wait_for(read_until("🧑".encode()), 60)
        os.write(master, b"hello from the tty\n")
        await asyncio.wait_for(read_until(b"Hi over the tty!"), 60)
        await asyncio.wait_for(read_until("🧑".encode(), seen.index(b"Hi over the tty!")), 60)
        process.send_signal(signal.SIGINT)  # at the prompt; no Enter follows
        try:
            await asyncio.wait_for(process.wait(), 30)  # a guard: it returns at once when fixed
        except TimeoutError:
            raise AssertionError("Ctrl-C did not end the chat while it waited for a line"
                                 ) from None
        while True:  # what it printed on the way out
            try:
                chunk = await asyncio.to_thread(os.read, master, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
    shown = seen.decode(errors="replace")
    assert process.returncode == 130 and "Traceback" not in shown, shown
    assert "Interrupted. Memory is saved." in shown
    with sqlite3.connect(tmp_path / "data" / "mnemocord.db") as db:
        said = [row[0] for row in db.execute("SELECT text FROM messages WHERE text IS NOT NULL"
                                             " ORDER BY id")]
    assert said == ["hello from the tty", "Hi over the tty!"]
