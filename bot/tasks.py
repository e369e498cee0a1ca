"""Background tasks whose failure is always seen.

A task nobody awaits that raises is reported by asyncio only when garbage-collected, as "Task
exception was never retrieved", without saying what the task was for, or never if a reference
lingers. Every fire-and-forget task goes through `observe`, which logs its failure the moment
it ends (and so retrieves the exception).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound="asyncio.Future[Any]")


def observe(task: T, what: str, logger: logging.Logger = log) -> T:
    """Log the task's exception (if any) when it ends; `what` says what failed."""

    def report(done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            logger.error("%s failed", what, exc_info=error)

    task.add_done_callback(report)
    return task
