"""The window and token ratio in force for the configured model (what bot/windows.py finds).

The window the budget uses is the smallest of: what the server reports, what an overflow error
said or a silent truncation showed (persisted), the configured LLM_CONTEXT_WINDOW and the
working-context cap LLM_WORKING_CONTEXT. tiktoken counts differently from the server's tokenizer
and chat template, so a per-model ratio learned from `usage.prompt_tokens` scales the budget.
Both survive a restart (table `model_windows`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.messages import iso, utcnow
from bot.windows import WindowInfo, is_hosted, probe

if TYPE_CHECKING:
    from bot.context import Budget
    from bot.store import Store

log = logging.getLogger(__name__)

RATIO_BOUNDS = (0.5, 2.5)
SMOOTHING = 0.3  # weight of a new sample in the running ratio
TRUNCATION_FRACTION = 0.6  # the server saw less than this share of our prompt: it dropped some
MIN_WINDOW = 512
REFRESH_SECONDS = 60.0  # an agent load asks the server again at most this often

OLLAMA_FIX = ("Ollama is cutting the conversation to fit its context ({window} tokens): set"
              " OLLAMA_CONTEXT_LENGTH=32768 in the environment of `ollama serve` (or PARAMETER"
              " num_ctx 32768 in the model's Modelfile) and restart it.")


class WindowState:
    """The window and token ratio of one model on one server, shared by every agent's budget.

    `configured` is LLM_CONTEXT_WINDOW (or the known size of the model when not set, with
    `explicit` False: then the server's own number wins); `cap` is LLM_WORKING_CONTEXT.
    """

    def __init__(self, budget: Budget, *, base_url: str, api_key: str, model: str,
                 configured: int, explicit: bool, cap: int | None, timeout: float = 5.0) -> None:
        self.budget = budget
        self.base_url, self.model = base_url.rstrip("/"), model
        self._api_key = api_key
        self.configured, self.explicit, self.cap = configured, explicit, cap
        self.timeout = timeout
        self.server: WindowInfo | None = None
        self.kind: str | None = None  # "ollama", "llama.cpp", "vllm", "lmstudio" when known
        self.learned: int | None = None  # lowered by overflow errors and silent truncation
        self.ratio = 1.0
        self.samples = 0
        self._saved_ratio = 1.0
        # What the server reported when `learned` was learned: a different answer later means
        # the server was reconfigured (say, OLLAMA_CONTEXT_LENGTH raised), and the lesson is old.
        self._learned_with: int | None = None
        self._asked_at: float | None = None
        self._asking = asyncio.Lock()
        self._rechecked = False  # asked again after the first call (which loads the model)
        self.truncation_warned = False
        self.notices: list[str] = []  # for the operator (doctor, /tokens, start-up check)
        self._store: Store | None = None
        self.hosted = is_hosted(base_url)
        self.apply()

    @property
    def model_window(self) -> int:
        """The model's window as far as we know (before the working-context cap)."""
        window = self.configured
        if self.server is not None:
            window = min(window, self.server.tokens) if self.explicit else self.server.tokens
        if self.learned is not None:
            window = min(window, self.learned)
        return max(MIN_WINDOW, window)

    @property
    def window(self) -> int:
        return min(self.model_window, self.cap) if self.cap else self.model_window

    @property
    def source(self) -> str:
        if self.cap and self.cap < self.model_window:
            return "LLM_WORKING_CONTEXT"
        if self.learned is not None and self.learned <= self.model_window:
            return "learned from the server's errors"
        if self.server is not None and self.server.tokens == self.model_window:
            return self.server.source
        return "LLM_CONTEXT_WINDOW" if self.explicit else "known size of the model"

    def describe(self) -> str:
        """One line for the operator (doctor, start-up check)."""
        line = f"{self.window} tokens ({self.source})"
        if self.samples:
            line += f"; the server counts {self.ratio:.2f} tokens per tiktoken token"
        return line

    def apply(self) -> None:
        self.budget.window = self.window
        self.budget.ratio = self.ratio

    # --- persistence (table model_windows) ---

    async def load(self, store: Store) -> None:
        self._store = store
        row = await store.fetchone(
            "SELECT learned_window, server_window, token_ratio, samples FROM model_windows"
            " WHERE base_url=? AND model=?", (self.base_url, self.model))
        if row is not None:
            self.learned = row["learned_window"]
            self._learned_with = row["server_window"]
            self.ratio = self._saved_ratio = _bounded(row["token_ratio"])
            self.samples = row["samples"]
        self.apply()

    async def _save(self) -> None:
        if self._store is None:
            return
        self._saved_ratio = self.ratio
        await self._store.commit([(
            "INSERT INTO model_windows (base_url, model, learned_window, server_window,"
            " token_ratio, samples, updated_at) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT(base_url, model) DO UPDATE SET"
            " learned_window=excluded.learned_window, server_window=excluded.server_window,"
            " token_ratio=excluded.token_ratio, samples=excluded.samples,"
            " updated_at=excluded.updated_at",
            (self.base_url, self.model, self.learned, self._learned_with, self.ratio,
             self.samples, iso(utcnow())),
        )])

    # --- discovery ---

    async def discover(self, *, force: bool = True) -> WindowInfo | None:
        """Ask the server (at start-up; at agent loads when the last answer is old, or was
        only a guess for a model not loaded yet)."""
        if self._asking.locked() and not force:  # agents loading together ask once
            async with self._asking:
                return self.server
        async with self._asking:
            return await self._discover(force)

    async def _discover(self, force: bool) -> WindowInfo | None:
        now = asyncio.get_running_loop().time()
        settled = self.server is None or not self.server.guess
        if (not force and settled and self._asked_at is not None
                and now - self._asked_at < REFRESH_SECONDS):
            return self.server
        self._asked_at = now
        info, kind = await probe(self.base_url, self._api_key, self.model,
                                 timeout=self.timeout)
        self.kind = kind or self.kind
        if info is not None and info != self.server:
            log.info("context window of %s: %d tokens (%s)", self.model, info.tokens,
                     info.source)
        if info is not None:
            self.server = info
            if (not info.guess and self.learned is not None and self._learned_with is not None
                    and info.tokens != self._learned_with):
                log.info("the server's window changed (%d -> %d tokens); forgetting the %d"
                         " learned from its errors", self._learned_with, info.tokens,
                         self.learned)
                self.learned = self._learned_with = None
                await self._save()
        self.apply()
        return info

    # --- what the server told us ---

    async def overflowed(self, limit: int | None) -> bool:
        """An overflow error stated the window: keep to it from now on (returns whether the
        window went down)."""
        if limit is None or limit >= self.model_window:
            return False
        self.learned = max(MIN_WINDOW, limit)
        self._learned_with = self._server_tokens()
        log.warning("the server says the context window of %s is %d tokens; using that from"
                    " now on (LLM_CONTEXT_WINDOW=%d)", self.model, limit, self.configured)
        self.apply()
        await self._save()
        return True

    async def observe(self, estimated: int, reported: int) -> str | None:
        """Compare our estimate of a prompt with the server's count. A count far below ours
        means the server dropped part of the prompt without a word (Ollama past num_ctx):
        the window is lowered to what it kept and an operator notice is returned, once.
        Otherwise the count calibrates the ratio."""
        if self.server is not None and self.server.guess and not self._rechecked:
            # The call just loaded the model: now the server can say what it runs it with.
            self._rechecked = True
            await self.discover()
        if reported <= 0 or estimated <= 0:
            return None
        if reported < TRUNCATION_FRACTION * estimated * self.ratio:
            if self.hosted:  # they refuse, never cut; a low count there is something else
                return None  # (e.g. cached tokens left out of it): not a sample either
            if reported < MIN_WINDOW:
                # No server runs a model in fewer tokens: a count this low is a server that
                # does not count (or reports nonsense), not one that cut the prompt.
                return None
            return await self._truncated(estimated, reported)
        sample = _bounded(reported / estimated)
        self.ratio = sample if self.samples == 0 else _bounded(
            (1 - SMOOTHING) * self.ratio + SMOOTHING * sample)
        self.samples += 1
        self.apply()
        if self.samples <= 3 or abs(self.ratio - self._saved_ratio) > 0.02:
            await self._save()
        return None

    async def _truncated(self, estimated: int, kept: int) -> str | None:
        # What it kept fitted, so the window is at least that; using it stops the cutting.
        self.learned = max(MIN_WINDOW, min(self.learned or kept, kept))
        self._learned_with = self._server_tokens()
        self.apply()
        await self._save()
        if self.truncation_warned:
            return None
        self.truncation_warned = True
        notice = (OLLAMA_FIX.format(window=kept) if self.is_ollama
                  else f"The language model server cut the prompt to about {kept} tokens"
                       " without an error: its context window is smaller than configured."
                       " Raise it on the server, or set LLM_CONTEXT_WINDOW to its real size.")
        log.warning("silent truncation: a prompt of ~%d tokens to %s was counted as %d by the"
                    " server. %s", round(estimated * self.ratio), self.model, kept, notice)
        self.notices.append(notice)
        return notice

    def _server_tokens(self) -> int | None:
        return self.server.tokens if self.server is not None and not self.server.guess else None

    @property
    def is_ollama(self) -> bool:
        return self.kind == "ollama" or ":11434" in self.base_url  # its port, if nothing else


def _bounded(ratio: float) -> float:
    low, high = RATIO_BOUNDS
    return min(high, max(low, float(ratio)))
