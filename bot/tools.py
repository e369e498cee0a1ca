"""The agent's functions: JSON schemas for the model, argument repair and checking, implementations.

Every failure is returned to the model as a failed function result with a message it can act on;
nothing here raises into the agent loop.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from bot.memory.core import CoreMemoryError
from bot.memory.people import is_person_label
from bot.messages import utcnow
from bot.quoting import original_of

if TYPE_CHECKING:
    from bot.agent import Agent

log = logging.getLogger(__name__)

# Both are in every function's schema, on every call: kept short.
_THOUGHTS = {"type": "string", "description": "Your private inner monologue (never shown)."}
_HEARTBEAT = {
    "type": "boolean",
    "description": "true for another step after this one (to read results); false if done or"
    " if send_message is in this response.",
}
_PAGE = {"type": "integer", "description": "Result page, starting at 0.", "minimum": 0}


@dataclass
class Param:
    name: str
    kind: str  # string | integer | boolean
    description: str
    required: bool = True


@dataclass
class ToolSpec:
    name: str
    description: str
    params: list[Param]
    run: Callable[..., Awaitable[str]]
    heartbeat: bool = True  # whether it takes request_heartbeat
    always_continue: bool = False  # its result is useless unless the model reads it

    def schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {"inner_thoughts": _THOUGHTS}
        for p in self.params:
            properties[p.name] = _PAGE if p.name == "page" else {
                "type": p.kind, "description": p.description
            }
        required = [p.name for p in self.params if p.required]
        if self.heartbeat:
            properties["request_heartbeat"] = _HEARTBEAT
            required.append("request_heartbeat")
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {"type": "object", "properties": properties, "required": required},
            },
        }


class ToolError(Exception):
    """A call that cannot run as made; the message goes back to the model."""


@dataclass
class ToolOutcome:
    ok: bool
    message: str
    request_heartbeat: bool = False
    sent_message: str | None = None


# --- argument parsing -----------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _close_truncated(text: str) -> str:
    """Close strings and brackets a cut-off response left open."""
    closers: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and closers:
            closers.pop()
    return text + ('"' if in_string else "") + "".join(reversed(closers))


def parse_arguments(raw: str) -> dict[str, Any]:
    """Parse tool arguments, repairing the usual mistakes of weaker models."""
    text = (raw or "").strip()
    if not text:
        return {}
    try:  # well-formed arguments (nearly every call) skip the repairs, a per-character loop
        value = json.loads(text, strict=False)
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    except json.JSONDecodeError:
        pass
    attempts = [text]
    cleaned = _FENCE.sub("", text)
    if "{" in cleaned:
        cleaned = cleaned[cleaned.index("{"):]
        if "}" in cleaned:
            cleaned = cleaned[: cleaned.rindex("}") + 1]
    cleaned = _TRAILING_COMMA.sub(r"\1", cleaned)
    attempts += [cleaned, _close_truncated(cleaned)]
    for attempt in attempts:
        try:
            value = json.loads(attempt, strict=False)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(attempt)  # single quotes, True/False/None
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    raise ToolError(
        "The function arguments were not valid JSON. Send a single JSON object, e.g."
        ' {"message": "Hello!"}, with double-quoted keys and strings.'
    )


def peek_thoughts(raw: str) -> str | None:
    """The inner_thoughts argument of a call, if it can be read (for showing it first)."""
    try:
        thoughts = parse_arguments(raw).get("inner_thoughts")
    except ToolError:
        return None
    return thoughts if isinstance(thoughts, str) and thoughts.strip() else None


def _coerce(param: Param, value: Any) -> Any:
    if param.kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float | bool):
            return str(value)
    elif param.kind == "integer":
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
    elif param.kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if value in (0, 1):
            return bool(value)
    raise ToolError(
        f"Argument '{param.name}' must be a {param.kind}, got {type(value).__name__}"
        f" {json.dumps(value, default=str)[:80]}."
    )


def bind_arguments(spec: ToolSpec, args: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Check and coerce arguments; returns (kwargs, request_heartbeat)."""
    heartbeat = False
    if spec.heartbeat and args.get("request_heartbeat") is not None:
        heartbeat = _coerce(Param("request_heartbeat", "boolean", ""), args["request_heartbeat"])
    kwargs: dict[str, Any] = {}
    missing = []
    for param in spec.params:
        if args.get(param.name) is None:
            if param.required:
                missing.append(param.name)
            continue
        kwargs[param.name] = _coerce(param, args[param.name])
    if missing:
        wanted = ", ".join(p.name for p in spec.params if p.required)
        raise ToolError(
            f"Missing required argument(s): {', '.join(missing)}. {spec.name} needs: {wanted}."
        )
    return kwargs, heartbeat


# --- implementations ------------------------------------------------------------------------


async def send_message(agent: Agent, message: str) -> str:
    if not message.strip():
        raise ToolError("The message is empty; write what you want to say.")
    agent.deliver(message)
    return "Message sent."


async def _person_edit(agent: Agent, label: str, edit: str, *args: str) -> str:
    """An edit of a person's block (`person:<user id>`, bot/memory/people.py)."""
    people = agent.people
    try:
        block = await people.resolve(label)
        if edit == "replace" and args[0] not in block.value:
            args = (original_of(args[0], block.value) or args[0], args[1])
        statements = (people.append(block, *args) if edit == "append"
                      else people.replace(block, *args))
    except CoreMemoryError as error:
        raise ToolError(str(error)) from None
    agent.add_statements(statements)
    agent.core_updated_at = utcnow()  # core memory changed: the status says when
    done = "Appended to" if edit == "append" else "Replaced in"
    return f"{done} '{block.label}' ({len(block.value)}/{people.limit} characters used)."


async def core_memory_append(agent: Agent, label: str, content: str) -> str:
    if is_person_label(label):
        return await _person_edit(agent, label, "append", content)
    try:
        agent.core.append(label, content)
    except CoreMemoryError as error:
        raise ToolError(str(error)) from None
    agent.core_changed()
    block = agent.core.get(label)
    return f"Appended to '{label}' ({len(block.value)}/{block.limit} characters used)."


async def core_memory_replace(agent: Agent, label: str, old_content: str, new_content: str) -> str:
    if is_person_label(label):
        return await _person_edit(agent, label, "replace", old_content, new_content)
    try:
        if label in agent.core.blocks and old_content not in agent.core.blocks[label].value:
            # The model quotes what it was shown, where tag-like text was neutralised.
            old_content = original_of(old_content, agent.core.blocks[label].value) or old_content
        agent.core.replace(label, old_content, new_content)
    except CoreMemoryError as error:
        raise ToolError(str(error)) from None
    agent.core_changed()
    block = agent.core.get(label)
    return f"Replaced in '{label}' ({len(block.value)}/{block.limit} characters used)."


def _date(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ToolError(f"{name} must be a date in YYYY-MM-DD format, got {value!r}.") from None


def _page(page: int) -> int:
    if page < 0:
        raise ToolError("page must be 0 or more.")
    return page


async def conversation_search(agent: Agent, query: str, page: int = 0) -> str:
    try:
        result = await agent.recall.search(
            agent.id, query, _page(page), exclude=[m.id for m in agent.queue]
        )
    except ValueError as error:
        raise ToolError(str(error)) from None
    return agent.render_recall_page(result)


async def conversation_search_date(
    agent: Agent, start_date: str, end_date: str, page: int = 0
) -> str:
    start, end = _date("start_date", start_date), _date("end_date", end_date)
    try:
        result = await agent.recall.search_date(agent.id, start, end, _page(page))
    except ValueError as error:
        raise ToolError(str(error)) from None
    return agent.render_recall_page(result)


async def archival_memory_insert(agent: Agent, content: str) -> str:
    if not content.strip():
        raise ToolError("Nothing to store: 'content' is empty.")
    count = await agent.archive(content)
    return f"Stored in archival memory ({count} passage{'s' if count != 1 else ''})."


async def archival_memory_search(agent: Agent, query: str, page: int = 0) -> str:
    try:
        result = await agent.archival.search(agent.id, query, _page(page))
    except ValueError as error:
        raise ToolError(str(error)) from None
    return agent.render_archival_page(result)


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "send_message",
            "Send a message to the user. This is the only way they hear you.",
            [Param("message", "string", "The message text. Markdown is fine.")],
            send_message,
            heartbeat=False,
        ),
        ToolSpec(
            "core_memory_append",
            "Append a line to a core memory block (always in your context).",
            [
                Param("label", "string", "Block to edit, e.g. 'persona' or 'human'."),
                Param("content", "string", "Text to append; keep it short and factual."),
            ],
            core_memory_append,
        ),
        ToolSpec(
            "core_memory_replace",
            "Replace exact text in a core memory block; an empty new_content deletes it.",
            [
                Param("label", "string", "Block to edit, e.g. 'persona' or 'human'."),
                Param("old_content", "string", "Exact text currently in the block."),
                Param("new_content", "string", "Replacement text ('' to delete)."),
            ],
            core_memory_replace,
        ),
        ToolSpec(
            "conversation_search",
            "Search past messages (recall memory), best matches first, with the turns around"
            " them. Keywords, names and dates (e.g. '3 June 2023') all help.",
            [
                Param("query", "string", "Keywords to look for."),
                Param("page", "integer", "Result page, starting at 0.", required=False),
            ],
            conversation_search,
            always_continue=True,
        ),
        ToolSpec(
            "conversation_search_date",
            "List past messages (recall memory) from a date range, oldest first.",
            [
                Param("start_date", "string", "First day, YYYY-MM-DD."),
                Param("end_date", "string", "Last day (inclusive), YYYY-MM-DD."),
                Param("page", "integer", "Result page, starting at 0.", required=False),
            ],
            conversation_search_date,
            always_continue=True,
        ),
        ToolSpec(
            "archival_memory_insert",
            "Store text in archival memory (unlimited, searchable by meaning).",
            [Param("content", "string", "Self-contained text to remember; include who/when.")],
            archival_memory_insert,
        ),
        ToolSpec(
            "archival_memory_search",
            "Search archival memory by meaning, best matches first.",
            [
                Param("query", "string", "What you are looking for, in words."),
                Param("page", "integer", "Result page, starting at 0.", required=False),
            ],
            archival_memory_search,
            always_continue=True,
        ),
    )
}

TOOL_SCHEMAS: list[dict[str, Any]] = [spec.schema() for spec in TOOLS.values()]

# Functions once offered and no longer: a stored history may still show calls to them, and a model
# that reads it may call one again. The call does nothing and says why (no error, no retry loop).
# pause_heartbeats paused timed wake-ups, which do not exist; its schema cost 91 tokens a call
# (of 1,099 for all the schemas; cl100k, as the engine counts; tests/test_model_answers.py).
RETIRED = {
    "pause_heartbeats": "Nothing to pause: there are no timed heartbeats. (This function no"
    " longer exists.)",
}


def must_read(name: str) -> bool:
    """Whether the function's result is useless until the model reads it (a search)."""
    spec = TOOLS.get(name)
    return spec is not None and spec.always_continue


async def execute(agent: Agent, name: str, raw_arguments: str) -> ToolOutcome:
    spec = TOOLS.get(name)
    if spec is None and name in RETIRED:
        return ToolOutcome(True, RETIRED[name])
    if spec is None:
        known = ", ".join(TOOLS)
        return ToolOutcome(False, f"There is no function named {name!r}. Available: {known}.")
    try:
        kwargs, heartbeat = bind_arguments(spec, parse_arguments(raw_arguments))
        result = await spec.run(agent, **kwargs)
    except ToolError as error:
        return ToolOutcome(False, str(error))
    except Exception as error:  # a storage or embedding fault must not end the turn
        log.exception("function %s failed for agent %s", name, agent.id)
        return ToolOutcome(
            False, f"{name} failed because of an internal error ({type(error).__name__})."
            " Try again later or continue without it.",
        )
    sent = kwargs.get("message") if spec.name == "send_message" else None
    return ToolOutcome(True, result, heartbeat or spec.always_continue, sent_message=sent)
