"""Provider profiles: how the scripted server plays one real OpenAI-compatible endpoint.

A profile reproduces, from the provider's documentation and source (each module cites them), what
that provider accepts, rejects and returns, so a test against ``ScriptedLLM(provider="ollama")``
fails where the real Ollama would break the bot. Server profiles (``openai``, ``ollama``, ...)
model endpoints; behaviour profiles (text tool calls, think tags, ...) model what a kind of model
writes, by rendering the scripted steps the way that model would.

Every module in this package defines its profiles as ``Provider`` subclasses decorated with
``@register``; ``provider(name)`` makes a fresh instance (profiles may keep per-server state, such
as the thought signatures they handed out).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import TYPE_CHECKING, Any, ClassVar

from tests.openai_rules import Violation, validate

if TYPE_CHECKING:
    from aiohttp import web

    from tests.llm_server import ScriptedLLM, Step

_REGISTRY: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    if cls.name in _REGISTRY:
        raise ValueError(f"provider profile {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def estimate_tokens(obj: Any) -> int:
    """The scripted server's token count: about 4 characters of JSON a token."""
    return len(json.dumps(obj, ensure_ascii=False)) // 4


class Provider:
    """The OpenAI API itself (tests/openai_rules.py); subclasses override what differs."""

    name: ClassVar[str] = "openai"
    model: ClassVar[str] = "gpt-4o-mini"  # what the server serves unless told otherwise
    # Whether a `tool_choice` naming a function or "required" is enforced (Ollama drops it).
    honours_tool_choice: ClassVar[bool] = True
    # Whether it answers `stream: true` at all (server-sent events), and whether streamed
    # answers carry tool calls incrementally.
    streams: ClassVar[bool] = True
    streams_tool_calls: ClassVar[bool] = True
    # What a user sets for it (LLM_BASE_URL etc.); the README's provider table lists the same.
    settings: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.server: ScriptedLLM | None = None

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        """Every reason the provider refuses this request (empty: it answers)."""
        return validate(body)

    def refuse(self, body: dict[str, Any]) -> Step | None:
        """An error the server answers a valid request with, e.g. a prompt over its window
        (not a broken rule, so not a violation; no scripted step is used up)."""
        return None

    def visible(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request as the model gets it (a server may drop messages, e.g. Ollama's num_ctx)."""
        return body

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """What the server reports as `usage.prompt_tokens` for the visible request."""
        return estimate_tokens([body.get("messages"), body.get("tools")])

    def render(self, body: dict[str, Any], step: Step) -> Step:
        """The scripted answer as this provider or model writes it (ids, text tool calls...)."""
        return step

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        """Add the provider's own fields to the answer's message (reasoning, signatures...)."""

    def routes(self, app: web.Application) -> None:
        """Endpoints beyond /v1 chat, embeddings and models (Ollama's /api/show, /props...)."""

    def model_entry(self, model: str) -> dict[str, Any]:
        """One entry of GET /v1/models."""
        return {"id": model, "object": "model", "created": 0, "owned_by": "mnemocord-tests"}


register(Provider)


def unparsable_arguments(body: dict[str, Any]) -> list[Violation]:
    """Replayed tool-call arguments that do not parse as JSON, for the servers that parse them:
    vLLM (entrypoints/chat_utils.py `_postprocess_messages` json.loads each assistant tool
    call's arguments for the chat template), llama.cpp (500 "Failed to parse tool call arguments
    as JSON", measured: /work/shared/PROVIDERS.md) and, as issue 11 reports, Ollama. Each profile
    gives the wording of its own server."""
    found: list[Violation] = []
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        for j, call in enumerate(message.get("tool_calls") or []):
            arguments = (call.get("function") or {}).get("arguments") if isinstance(
                call, dict) else None
            try:
                json.loads(arguments) if isinstance(arguments, str) else None
            except ValueError as error:
                found.append(Violation(f"Failed to parse tool call arguments as JSON: {error}",
                                       f"messages[{i}].tool_calls[{j}].function.arguments"))
    return found


def calls_of_this_turn(body: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(index, message) of the assistant messages with tool calls after the last user message:
    the ones whose thought signatures Gemini checks (and OpenRouter relays its check of)."""
    messages = body.get("messages") or []
    start = max((i for i, m in enumerate(messages)
                 if isinstance(m, dict) and m.get("role") == "user"), default=-1)
    return [(index, m) for index, m in enumerate(messages) if index > start
            and isinstance(m, dict) and isinstance(m.get("tool_calls"), list) and m["tool_calls"]
            and isinstance(m["tool_calls"][0], dict)]


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
    """Every registered profile, server and behaviour ones."""
    _load_all()
    return sorted(_REGISTRY)


def provider(name: str | Provider) -> Provider:
    if isinstance(name, Provider):
        return name
    _load_all()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"no provider profile {name!r}; known: {', '.join(sorted(_REGISTRY))}"
                         ) from None
