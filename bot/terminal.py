"""The terminal chat: the MemGPT CLI experience on top of the same engine the Discord bot uses."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.agent import AgentEvent, TurnResult
from bot.commands import CommandError
from bot.engine import AgentSpec, Engine
from bot.messages import Message, unpack_tool_result

log = logging.getLogger(__name__)

ReadLine = Callable[[str], Awaitable[str | None]]
MAX_FILE_BYTES = 5_000_000
MAX_COUNT = 10_000  # for /dump n and /pop n

HELP = """\
[bold]Commands[/bold]
  /exit                 save and quit
  /save [name]          save a checkpoint (default: a timestamped name)
  /load [name]          restore a checkpoint (default: the latest)
  /dump [n]             show the last n messages (default 10)
  /memory               show core memory and recall/archival counts
  /pop [n]              undo the last n messages (default 3)
  /heartbeat            send a heartbeat so the agent takes a step
  /memorywarning        send a memory-pressure warning
  /retry                answer the last message again
  /rethink TEXT         replace the last inner monologue
  /rewrite TEXT         replace the last sent message
  /summarize            fold older messages into the summary now
  /attach FILE          store a text file in archival memory
  /tokens               show how the context window is used
  /help                 this help
Start a line with // to type several lines; end them with a line holding only //."""


class StdinLines:
    """Lines typed on standard input, read on the event loop.

    Not input() in a thread: a thread blocked in input() cannot be interrupted, and asyncio.run
    waits for it at exit, so Ctrl-C only ended the chat once Enter was pressed. Editing a line
    is the terminal's own (its canonical mode), as it was with input() without readline.
    """

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False

    async def readline(self, prompt: str) -> str | None:
        """The next line without its line ending; None at end of input."""
        sys.stdout.write(prompt)
        sys.stdout.flush()
        while b"\n" not in self._buffer and not self._eof:
            chunk = await self._read()
            self._buffer += chunk
            self._eof = not chunk
        if not self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace").removesuffix("\r")

    async def _read(self) -> bytes:
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        try:
            loop.add_reader(self.fd, lambda: readable.done() or readable.set_result(None))
        except (OSError, ValueError):
            # epoll refuses regular files and /dev/null (input redirected from a file): reading
            # those never waits, so a direct read is fine.
            return self._read_now()
        try:
            await readable
        finally:
            loop.remove_reader(self.fd)
        return self._read_now()

    def _read_now(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except OSError:  # a closed or hung-up terminal ends the input
            return b""


_stdin: StdinLines | None = None


async def read_stdin(prompt: str) -> str | None:
    global _stdin
    _stdin = _stdin or StdinLines()
    return await _stdin.readline(prompt)


def readable_arguments(raw: str) -> str:
    """Function arguments as name=value, without the bookkeeping ones (shown elsewhere)."""
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if not isinstance(arguments, dict):
        return raw
    hidden = ("inner_thoughts", "request_heartbeat")
    return ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}"
                     for key, value in arguments.items() if key not in hidden)


def read_text_file(path: Path) -> str:
    """A text file for /attach, with clear errors for what cannot be attached (a missing file,
    a folder or device, a name the OS rejects, no permission, a file too large or binary)."""
    shown = _clip(str(path))
    try:
        path = path.expanduser()
        if path.is_dir():
            raise CommandError(f"{shown} is a folder; attach a text file.")
        if not path.is_file():
            if path.exists():
                raise CommandError(f"{shown} is not a regular file; attach a text file.")
            raise CommandError(f"No such file: {shown}")
        with path.open("rb") as file:  # read at most the limit: /proc files claim size 0
            data = file.read(MAX_FILE_BYTES + 1)
    except (OSError, RuntimeError) as error:  # RuntimeError: "~nobody" has no home folder
        reason = getattr(error, "strerror", None) or str(error)
        raise CommandError(f"Cannot read {shown}: {reason}.") from None
    if len(data) > MAX_FILE_BYTES:
        raise CommandError(f"{shown} is larger than {MAX_FILE_BYTES // 1_000_000} MB.")
    if b"\x00" in data[:4096]:
        raise CommandError(f"{shown} looks like a binary file; attach a text file.")
    return data.decode("utf-8", errors="replace")


def _clip(text: str, limit: int = 80) -> str:
    """User input echoed in a message, kept short."""
    return text if len(text) <= limit else text[:limit] + "…"


class TerminalChat:
    def __init__(
        self,
        engine: Engine,
        agent_id: str,
        *,
        console: Console | None = None,
        read_line: ReadLine = read_stdin,
        user_name: str = "You",
    ) -> None:
        self.engine = engine
        self.agent_id = agent_id
        self.console = console or Console()
        self.read_line = read_line
        self.user_name = user_name

    # --- output -------------------------------------------------------------------------------

    def show(self, event: AgentEvent) -> None:
        text = escape(event.text)
        if event.kind == "thought":
            self.console.print(f"[dim italic]💭 {text}[/]")
        elif event.kind == "call":
            arguments = escape(readable_arguments(event.text))
            self.console.print(f"[yellow]⚡ {escape(event.name or '')}({arguments})[/]")
        elif event.kind == "result":
            status = "[green]OK[/]" if event.ok else "[red]Failed[/]"
            self.console.print(f"[yellow]⚡ {status}[/] [dim]{text}[/]")
        elif event.kind == "message":
            self.console.print(f"[bold cyan]🤖 {text}[/]")
        elif event.kind == "memory":
            self.console.print(f"[magenta]🧠 {text}[/]")
        else:
            self.console.print(f"[red]⚠ {text}[/]")

    def info(self, text: str) -> None:
        self.console.print(f"[green]{escape(text)}[/]")

    def error(self, text: str) -> None:
        self.console.print(f"[red]{escape(text)}[/]")

    # --- loop ---------------------------------------------------------------------------------

    async def start(self, spec: AgentSpec, *, first: bool) -> None:
        existed = await self.engine.exists(self.agent_id)
        await self.engine.agent(self.agent_id, spec)
        view = await self.engine.memory(self.agent_id)
        verb = "Resuming" if existed else "Created"
        self.info(f"{verb} agent '{self.agent_id.removeprefix('cli:')}' "
                  f"({view.recall_count} messages in recall, {view.archival_count} in archival)."
                  " Type /help for commands.")
        for agent_id in await self.engine.pending_agent_ids():
            if agent_id == self.agent_id:  # answer what a crash left unanswered
                await self.engine.resume(agent_id, self.show)
        if not first:
            last = "first login" if not existed else "returning after a break"
            await self.engine.event(self.agent_id, "login", f"The user logged in ({last}).",
                                    self.show)

    async def run(self) -> None:
        while True:
            line = await self.read_line("🧑 ")
            if line is None:
                break
            if line.strip() == "//":
                line = await self._multiline()
                if line is None:
                    break
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not await self.command(line):
                    break
                continue
            try:
                await self.engine.send(self.agent_id, line, sender_name=self.user_name,
                                       on_event=self.show)
            except Exception:  # the turn itself never raises; storing the message could
                log.exception("could not take a message for %s", self.agent_id)
                self.error("Your message could not be stored (details in the log); please"
                           " try again.")

    async def _multiline(self) -> str | None:
        lines: list[str] = []
        while True:
            line = await self.read_line("… ")
            if line is None:
                return None
            if line.strip() == "//":
                return "\n".join(lines)
            lines.append(line)

    async def command(self, line: str) -> bool:
        """Run a slash command; returns False when the chat should end."""
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        handler = getattr(self, f"cmd_{name.lower()}", None)
        if handler is None:
            self.error(f"Unknown command /{name}. Type /help for the list.")
            return True
        try:
            return await handler(rest) is not False
        except ValueError as error:  # CommandError, PersonaError, bad quoting
            self.error(str(error))
        except KeyError as error:
            self.error(str(error.args[0]) if error.args else "Unknown agent.")
        except Exception:  # e.g. the embedding service failing during /attach
            log.exception("/%s failed", _clip(name, 40))
            self.error(f"/{_clip(name, 40)} failed because of an internal error (details in the"
                       " log); nothing was changed.")
        return True

    # --- commands -------------------------------------------------------------------------------

    @staticmethod
    def _count(rest: str, default: int) -> int:
        if not rest:
            return default
        # isdecimal, not isdigit: "²" is a digit that int() rejects. The cap keeps SQLite's
        # LIMIT (a 64-bit integer) and the screen sane.
        if not rest.isdecimal() or len(rest) > 6 or not 1 <= int(rest) <= MAX_COUNT:
            raise CommandError(f"Expected a positive whole number (at most {MAX_COUNT:,}), got"
                               f" {_clip(rest, 20)!r}.")
        return int(rest)

    async def cmd_exit(self, rest: str) -> bool:
        self.info("Memory is saved. Bye!")
        return False

    async def cmd_help(self, rest: str) -> None:
        self.console.print(HELP)

    async def cmd_save(self, rest: str) -> None:
        name = rest or datetime.now().strftime("save-%Y%m%d-%H%M%S")
        await self.engine.save(self.agent_id, name)
        self.info(f"Saved checkpoint '{name}'.")

    async def cmd_load(self, rest: str) -> None:
        name = rest
        if not name:
            names = await self.engine.checkpoints(self.agent_id)
            if not names:
                raise CommandError("There are no checkpoints yet; use /save first.")
            name = names[-1]
        await self.engine.load(self.agent_id, name)
        self.info(f"Loaded checkpoint '{name}'.")

    async def cmd_dump(self, rest: str) -> None:
        for message in await self.engine.dump(self.agent_id, self._count(rest, 10)):
            self._show_stored(message)

    def _show_stored(self, message: Message) -> None:
        if message.kind == "user_message":
            self.console.print(f"🧑 {escape(message.sender_name or 'user')}: "
                               f"{escape(message.text or '')}")
        elif message.role == "user":
            self.console.print(f"[dim]⚙ {escape(message.content or '')}[/]")
        elif message.role == "assistant":
            if message.content:
                self.show(AgentEvent("thought", message.content))
            for call in message.tool_calls:
                if call.name == "send_message" and message.text:
                    self.show(AgentEvent("message", message.text))
                else:
                    self.show(AgentEvent("call", call.arguments, call.name))
        elif message.role == "tool":
            ok, report = unpack_tool_result(message.content)
            if message.tool_name == "send_message" and ok:
                return  # the message itself was shown with its call
            self.show(AgentEvent("result", report, message.tool_name, ok))

    async def cmd_memory(self, rest: str) -> None:
        view = await self.engine.memory(self.agent_id)
        for block in view.blocks:
            value = str(block["value"])
            self.console.print(f"[bold]{escape(str(block['label']))}[/] "
                               f"({len(value)}/{block['limit']} characters)")
            self.console.print(escape(value) or "[dim](empty)[/]")
        if view.summary:
            self.console.print(f"[bold]summary[/]\n{escape(view.summary)}")
        self.info(f"{view.in_context} messages in context, {view.recall_count} in recall"
                  f" memory, {view.archival_count} passages in archival memory.")

    async def cmd_pop(self, rest: str) -> None:
        removed = await self.engine.pop(self.agent_id, self._count(rest, 3))
        self.info(f"Popped {removed} messages.")

    async def _turn(self, result: TurnResult) -> None:
        if not result.replies and not result.notices:
            self.info("(the agent did not send a message)")

    async def cmd_heartbeat(self, rest: str) -> None:
        await self._turn(await self.engine.heartbeat(self.agent_id, self.show))

    async def cmd_memorywarning(self, rest: str) -> None:
        await self._turn(await self.engine.memory_warning(self.agent_id, self.show))

    async def cmd_retry(self, rest: str) -> None:
        await self._turn(await self.engine.retry(self.agent_id, self.show))

    async def cmd_rethink(self, rest: str) -> None:
        await self.engine.rethink(self.agent_id, rest)
        self.info("Replaced the last inner monologue.")

    async def cmd_rewrite(self, rest: str) -> None:
        await self.engine.rewrite(self.agent_id, rest)
        self.info("Replaced the last sent message.")

    async def cmd_summarize(self, rest: str) -> None:
        evicted = await self.engine.summarize(self.agent_id)
        self.info(f"Summarized {evicted} messages." if evicted else "Nothing to summarize yet.")

    async def cmd_attach(self, rest: str) -> None:
        if not rest:
            raise CommandError("Usage: /attach FILE")
        parts = shlex.split(rest) or [""]
        path = Path(parts[0])
        text = await asyncio.to_thread(read_text_file, path)
        count = await self.engine.attach(self.agent_id, text, source=path.name)
        self.info(f"Stored {path.name} in archival memory ({count} passages).")

    async def cmd_tokens(self, rest: str) -> None:
        report = await self.engine.tokens(self.agent_id)
        table = Table(title="Context window")
        table.add_column("part")
        table.add_column("tokens", justify="right")
        for key, value in report.items():
            table.add_row(key, f"{value:,}")
        self.console.print(table)
