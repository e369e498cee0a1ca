"""The model's real context window: asked of the server, or read from its overflow errors.

A configured window is a guess. Ollama serves whatever `num_ctx` it was started with (4096 by
default on small machines) and silently drops the oldest messages past it; llama.cpp and vLLM
refuse an over-long prompt, each in its own words. `server_window` asks the server's own
endpoints; `overflow_limit` reads the window out of any provider's overflow error. What is in
force, and the token-count calibration, is bot/window_state.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

log = logging.getLogger(__name__)

# Hosted APIs have none of the local servers' endpoints; asking them would only log 404s there.
_HOSTED = ("openai.com", "anthropic.com", "googleapis.com", "groq.com", "mistral.ai",
           "deepseek.com", "openrouter.ai", "together.xyz", "fireworks.ai", "x.ai")



@dataclass(frozen=True)
class WindowInfo:
    tokens: int
    source: str  # where it came from, e.g. "ollama /api/show num_ctx"

    @property
    def guess(self) -> bool:
        """A server default assumed for a model not loaded yet (the real one shows later)."""
        return "not loaded" in self.source


# --- discovery ------------------------------------------------------------------------------


def is_hosted(base_url: str) -> bool:
    """A hosted API (they refuse an over-long prompt; none has the local servers' endpoints)."""
    host = (urlsplit(base_url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in _HOSTED)


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
    if trained and trained < tokens:  # llm/server.go clamps num_ctx to it at load
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
    hosted = is_hosted(base_url)
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
]
# Overflows whose message has no number (llama.cpp's `n_ctx` field may still say it).
_OVERFLOW_WORDS = ("exceed_context_size_error", "exceeds the available context size",
                   "exceeds the maximum number of tokens allowed")


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
