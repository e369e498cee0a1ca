"""The model's real context window: asked of the server, learned from its errors, calibrated.

A configured window is a guess. Ollama serves whatever `num_ctx` it was started with (4096 by
default on small machines) and silently drops the oldest messages past it; llama.cpp and vLLM
refuse an over-long prompt, each in its own words. So the window the budget uses is the smallest
of: what the server reports (`server_window`), what an overflow error said (persisted), the
configured LLM_CONTEXT_WINDOW and the working-context cap. Token counts are tiktoken's; the
server's tokenizer and chat template count differently, so a per-model ratio learned from
`usage.prompt_tokens` scales the budget (persisted too, in the `model_windows` table).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp

from bot.messages import iso, utcnow

if TYPE_CHECKING:
    from bot.context import Budget
    from bot.store import Store

log = logging.getLogger(__name__)

RATIO_BOUNDS = (0.5, 2.5)
SMOOTHING = 0.3  # weight of a new sample in the running ratio
TRUNCATION_FRACTION = 0.6  # the server saw less than this share of our prompt: it dropped some
MIN_WINDOW = 512
REFRESH_SECONDS = 60.0  # an agent load asks the server again at most this often
# Hosted APIs have none of the local servers' endpoints; asking them would only log 404s there.
_HOSTED = ("openai.com", "anthropic.com", "googleapis.com", "groq.com", "mistral.ai",
           "deepseek.com", "openrouter.ai", "together.xyz", "fireworks.ai", "x.ai")

OLLAMA_FIX = ("Ollama is cutting the conversation to fit its context ({window} tokens): set"
              " OLLAMA_CONTEXT_LENGTH=32768 in the environment of `ollama serve` (or PARAMETER"
              " num_ctx 32768 in the model's Modelfile) and restart it.")


@dataclass(frozen=True)
class WindowInfo:
    tokens: int
    source: str  # where it came from, e.g. "ollama /api/show num_ctx"

    @property
    def guess(self) -> bool:
        """A server default assumed for a model not loaded yet (the real one shows later)."""
        return "not loaded" in self.source


# --- discovery ------------------------------------------------------------------------------


def server_root(base_url: str) -> str:
    """The server's root for its native endpoints (/api/*, /props): base_url minus /v1."""
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _same_model(name: Any, model: str) -> bool:
    """Ollama names carry a tag (":latest" when none was given)."""
    return isinstance(name, str) and (name == model or name == f"{model}:latest"
                                      or f"{name}:latest" == model)


async def _get_json(session: aiohttp.ClientSession, method: str, url: str,
                    body: dict[str, Any] | None = None) -> Any:
    try:
        async with session.request(method, url, json=body) as response:
            if response.status != 200:
                return None
            return json.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValueError, UnicodeDecodeError):
        return None


def _from_models(listing: Any, model: str) -> WindowInfo | None:
    """GET /v1/models: vLLM's `max_model_len`, llama.cpp's `meta.n_ctx`, OpenRouter's
    `context_length`."""
    data = listing.get("data") if isinstance(listing, dict) else None
    for entry in data if isinstance(data, list) else []:
        if not isinstance(entry, dict) or entry.get("id") != model:
            continue
        if tokens := _positive(entry.get("max_model_len")):
            return WindowInfo(tokens, "vllm /v1/models max_model_len")
        meta = entry.get("meta")
        if isinstance(meta, dict) and (tokens := _positive(meta.get("n_ctx"))):
            return WindowInfo(tokens, "llama.cpp /v1/models meta.n_ctx")
        if tokens := _positive(entry.get("context_length")):
            return WindowInfo(tokens, "/v1/models context_length")
    return None


def _from_props(props: Any) -> WindowInfo | None:
    """llama.cpp GET /props: the slot's context (n_ctx divided among --parallel slots)."""
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    if isinstance(settings, dict) and (tokens := _positive(settings.get("n_ctx"))):
        return WindowInfo(tokens, "llama.cpp /props n_ctx")
    return None


def _from_ollama_ps(ps: Any, model: str) -> WindowInfo | None:
    """Ollama GET /api/ps: the context the loaded model really runs with."""
    models = ps.get("models") if isinstance(ps, dict) else None
    for entry in models if isinstance(models, list) else []:
        if not isinstance(entry, dict):
            continue
        named = _same_model(entry.get("name"), model) or _same_model(entry.get("model"), model)
        if named and (tokens := _positive(entry.get("context_length"))):
            return WindowInfo(tokens, "ollama /api/ps context_length")
    return None


_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d+)\s*$", re.MULTILINE)
OLLAMA_DEFAULT_NUM_CTX = 4096
LMSTUDIO_DEFAULT_CONTEXT = 4096


def _from_ollama_show(show: Any) -> WindowInfo | None:
    """Ollama POST /api/show: a Modelfile `num_ctx` (in `parameters`, one "name value" a line),
    bounded by the model's trained `<arch>.context_length`; without one, Ollama's default."""
    if not isinstance(show, dict) or not ("model_info" in show or "parameters" in show):
        return None
    info = show.get("model_info")
    trained = None
    if isinstance(info, dict):
        trained = next((_positive(v) for k, v in info.items()
                        if k.endswith(".context_length") and _positive(v)), None)
    parameters = show.get("parameters")
    match = _NUM_CTX.search(parameters) if isinstance(parameters, str) else None
    if match:
        tokens, source = int(match.group(1)), "ollama /api/show num_ctx"
    else:
        # OLLAMA_CONTEXT_LENGTH is not visible from outside; until the model is loaded (and
        # /api/ps tells), assume the default of small machines (docs/context-length.mdx).
        tokens, source = OLLAMA_DEFAULT_NUM_CTX, "ollama default num_ctx (model not loaded yet)"
    if trained and trained < tokens:
        return WindowInfo(trained, "ollama /api/show context_length")
    return WindowInfo(tokens, source)


def _from_lmstudio(entry: Any) -> WindowInfo | None:
    """LM Studio GET /api/v0/models/{model}: `loaded_context_length` once loaded, else the
    model's `max_context_length` (it loads with the context set in the app)."""
    if not isinstance(entry, dict):
        return None
    if tokens := _positive(entry.get("loaded_context_length")):
        return WindowInfo(tokens, "lmstudio /api/v0/models loaded_context_length")
    if tokens := _positive(entry.get("max_context_length")):
        # It loads with the context set in the app, 4096 unless changed
        # (lmstudio-ai/lmstudio-bug-tracker#1806); only a loaded model says.
        return WindowInfo(min(tokens, LMSTUDIO_DEFAULT_CONTEXT),
                          "lmstudio default context (model not loaded yet)")
    return None


async def server_window(  # the pinned API (mnemocord doctor calls it)
    base_url: str, api_key: str, model: str, *, timeout: float = 5.0  # noqa: ASYNC109
) -> WindowInfo | None:
    """The context window the server runs `model` with, or None if it does not say (or cannot
    be reached within `timeout` seconds). Never raises for network or format trouble."""
    return (await probe(base_url, api_key, model, timeout=timeout))[0]


def _server_kind(listing: Any) -> str | None:
    """Which server answers /v1/models, from its `owned_by` (Ollama: "library" or the user's
    name, docs/openai.mdx; llama.cpp "llamacpp"; vLLM "vllm")."""
    data = listing.get("data") if isinstance(listing, dict) else None
    owners = {e.get("owned_by") for e in data if isinstance(e, dict)} if isinstance(
        data, list) else set()
    for owner, kind in (("library", "ollama"), ("llamacpp", "llamacpp"), ("vllm", "vllm")):
        if owner in owners:
            return kind
    return None


async def probe(
    base_url: str, api_key: str, model: str, *, timeout: float = 5.0  # noqa: ASYNC109
) -> tuple[WindowInfo | None, str | None]:
    """`server_window`'s answer, and which kind of server it seems to be (or None)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = server_root(base_url)
    host = (urlsplit(base_url).hostname or "").lower()
    hosted = any(host == h or host.endswith("." + h) for h in _HOSTED)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=client_timeout) as session:
            probes = [_get_json(session, "GET", f"{base_url.rstrip('/')}/models")]
            if not hosted:
                probes += [
                    _get_json(session, "GET", f"{root}/props"),
                    _get_json(session, "GET", f"{root}/api/ps"),
                    _get_json(session, "POST", f"{root}/api/show", {"model": model}),
                    _get_json(session, "GET", f"{root}/api/v0/models/{quote(model, safe='')}"),
                ]
            answers = await asyncio.wait_for(asyncio.gather(*probes), timeout + 1)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        log.debug("no context window from %s: %r", root, error)
        return None, None
    listing, props, ps, show, lmstudio = [*answers, None, None, None, None][:5]
    found = [
        _from_ollama_ps(ps, model), _from_ollama_show(show), _from_props(props),
        _from_lmstudio(lmstudio), _from_models(listing, model),
    ]
    # Ollama: a loaded model's real context beats the Modelfile; llama.cpp: the slot's n_ctx
    # is at most meta.n_ctx. The first found in this order is the one in force.
    info = next((info for info in found if info is not None), None)
    kind = _server_kind(listing) or (info.source.split()[0] if info else None)
    return info, kind


# --- overflow errors ------------------------------------------------------------------------

# Each provider words "the prompt is over the window" differently; the number in it is the
# window (or, for TGI, prompt plus max_new_tokens, which our budget also keeps apart).
_OVERFLOW_LIMITS = [
    # OpenAI (code context_length_exceeded) and vLLM: "This model's maximum context length is
    # 8192 tokens. However, your messages resulted in ..." (vLLM: "... your request has N input
    # tokens"); OpenAI embeddings: "maximum context length is 8192 tokens."
    re.compile(r"maximum context length is (\d+) tokens", re.I),
    # Anthropic: "prompt is too long: 208310 tokens > 200000 maximum"
    re.compile(r"prompt is too long: \d+ tokens > (\d+) maximum", re.I),
    # llama.cpp exceed_context_size_error: "request (4284 tokens) exceeds the available context
    # size (4096 tokens), try increasing it"
    re.compile(r"exceeds the available context size \((\d+) tokens\)", re.I),
    # Gemini: "The input token count (1196265) exceeds the maximum number of tokens allowed
    # (1048575)."
    re.compile(r"exceeds the maximum number of tokens allowed \((\d+)\)", re.I),
    # TGI: "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096."
    re.compile(r"`?inputs`? tokens \+ `?max_new_tokens`? must be <= (\d+)", re.I),
    # llama.cpp (older): "the request exceeds the available context size" + n_ctx field;
    # LM Studio / others: "context length of only 4096 tokens"
    re.compile(r"context length of (?:only )?(\d+) tokens", re.I),
]
_OVERFLOW_WORDS = ("exceed_context_size_error", "exceeds the available context size",
                   "exceeds the maximum number of tokens allowed", "must be <=")


def overflow_limit(message: str, body: Any = None) -> int | None:
    """The window an overflow error states, from its message (or llama.cpp's `n_ctx` field)."""
    for pattern in _OVERFLOW_LIMITS:
        if match := pattern.search(message or ""):
            return int(match.group(1))
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and (tokens := _positive(error.get("n_ctx"))):
        return tokens
    return None


def is_overflow_wording(text: str) -> bool:
    """Wordings of an overflow that the generic hints (`bot.llm`) do not catch."""
    lowered = text.lower()
    return any(word in lowered for word in _OVERFLOW_WORDS) or overflow_limit(text) is not None


# --- the state ------------------------------------------------------------------------------


@dataclass
class Usage:
    """What one call showed: our estimate of its prompt and what the server counted."""

    estimated: int
    reported: int


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
        self.truncation_warned = False
        self.notices: list[str] = []  # for the operator (doctor, /tokens, start-up check)
        self._store: Store | None = None
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
        if reported <= 0 or estimated <= 0:
            return None
        if reported < TRUNCATION_FRACTION * estimated * self.ratio:
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
