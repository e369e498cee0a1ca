"""Wake-up primitive so tests wait on state changes instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Signal:
    """notify() is synchronous (callable from any handler); wait_for() re-checks a
    predicate after every notification. No lost wake-ups: the predicate is checked and
    the current Event captured without an await in between."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while True:
                    result = predicate()
                    if result is not None and result is not False:
                        return result
                    await self._event.wait()
        except TimeoutError:
            raise TimeoutError(f"emulator: timed out after {timeout}s waiting for {what}") from None
