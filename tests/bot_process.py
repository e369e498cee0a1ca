"""Test-side launcher: the real bot (`mnemocord discord`) in its own process, pointed at the
Discord emulator of the test that started it.

The product carries no test hooks, so the redirection happens here, before the bot starts:
discord.py's REST base and default gateway come from MNEMOCORD_TEST_DISCORD_API and
MNEMOCORD_TEST_DISCORD_GATEWAY. Everything else (settings from the environment, logging, signal
handling, `bot.discordbot.run.run_bot`) is exactly what `python -m bot discord` runs.

    python -m tests.bot_process              # one bot, configured by the environment
    python -m tests.bot_process --fork-server

The fork server imports everything once (about 3 s on 2 cores) and then forks one bot process
per JSON line on stdin ({"cwd", "env", "log"}), answering {"pid"} and, when a bot ends,
{"exit", "code"}. Crash tests restart the bot dozens of times; forking makes a restart cost
the bot's own startup only. Nothing is threaded before a fork.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
from typing import Any

import discord.gateway
import discord.http
import yarl

from bot.config import Settings
from bot.discordbot import run


def point_at_emulator() -> None:
    discord.http.Route.BASE = os.environ["MNEMOCORD_TEST_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        os.environ["MNEMOCORD_TEST_DISCORD_GATEWAY"])

    class QuickReady(run.Mnemocord):
        # discord.py waits 2 s after the last GUILD_CREATE before on_ready; the emulator sends
        # every guild at once, so waiting only slows restarts down.
        def __init__(self, *args: Any, **options: Any) -> None:
            super().__init__(*args, guild_ready_timeout=0.05, **options)

    run.Mnemocord = QuickReady  # type: ignore[misc]


def main() -> int:
    point_at_emulator()
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return run.run_bot(settings)


def _child(order: dict[str, Any], wakeup: tuple[int, int]) -> None:
    """In the forked process: become an ordinary bot process, then exit."""
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wakeup:
            os.close(fd)
        os.setsid()
        log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(order["cwd"])
        os.environ.clear()
        os.environ.update(order["env"])
        code = main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _say(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _preload() -> None:
    """What every bot start would otherwise import or load again."""
    import chromadb.config  # noqa: F401
    import httpx  # noqa: F401
    import openai  # noqa: F401

    from bot.engine import Engine  # noqa: F401
    from bot.tokens import load_encoding

    load_encoding("gpt-4o-mini")  # tiktoken keeps it; no thread is started


def fork_server() -> int:
    _preload()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    buffered = b""
    while True:
        for key, _ in selector.select():
            if key.fd == wake_read:
                os.read(wake_read, 4096)
                _reap()
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return 0  # the test closed our stdin
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    _child(json.loads(line), (wake_read, wake_write))
                _say({"pid": pid})


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.exit(fork_server() if "--fork-server" in sys.argv else main())
