"""One process per data directory.

Two processes on one folder corrupt each other: each hands out message ids from its own counter
(UNIQUE constraint failures, lost turns) and each starts its own embedded Chroma on the same
files. So an engine holds an exclusive flock(2) on `<data_dir>/mnemocord.lock` for its lifetime.
The kernel drops the lock when the process ends, however it ends (kill -9 included), so a stale
lock file never blocks a restart. The file records who holds it, for the refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot import redact

LOCK_NAME = "mnemocord.lock"


class DataDirLocked(RuntimeError):
    """Another Mnemocord process (or engine) already uses this data directory."""


def _command() -> str:
    """How this process was started, as the person would recognise it."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    for index, part in enumerate(argv):  # `python -m bot chat` or the `mnemocord` script
        if part == "-m" and argv[index + 1:index + 2] == ["bot"]:
            return shlex.join(["mnemocord", *argv[index + 2:]])
        if Path(part).name == "mnemocord":
            return shlex.join(["mnemocord", *argv[index + 1:]])
    return shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else "python"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; DataDirLocked says who holds it and what to do."""
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Not inherited by child processes (Python opens files non-inheritable), so Chroma's
        # worker never keeps the lock alive after we end.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise DataDirLocked(
                f"the data directory {self.data_dir} is in use by another Mnemocord process"
                f" ({holder}); stop it first, or give this one its own folder with DATA_DIR"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        record = redact.redact(f"pid {os.getpid()}, `{_command()[:160]}`, since {started}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8", "replace") + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: deleting it could let two processes lock two
        different files of the same name)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # nobody holds it now
            os.close(fd)

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        # Empty while the holder is between taking the lock and writing its record.
        return text or "pid unknown"
