"""The emulator's own clock: real monotonic time plus an offset tests can push forward.

Time-bound rules (the nonce window, the 3-second and 15-minute interaction limits, rate-limit
buckets) read this clock, so a test can jump past a limit with `advance()` instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class EmuClock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        """Seconds on the emulator's monotonic timeline."""
        return time.monotonic() + self._offset

    def wall(self) -> float:
        """Unix time as the emulator reports it (X-RateLimit-Reset is epoch seconds)."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward; listeners re-check whatever deadlines just passed."""
        self._offset += seconds
        for listener in list(self._listeners):
            listener()

    def on_advance(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
