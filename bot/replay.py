"""What the bot sends back of a model's answer: tool calls every provider accepts again.

A model can return anything, and its answer is replayed on every later step and turn: a name, an
id or arguments one provider refuses would make every later request of the agent fail there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from bot.messages import ToolCall
from bot.tools import ToolError, parse_arguments

# What the API takes back in an assistant message (tests/openai_rules.py cites the rules): function
# names of 1-64 letters, digits, "_" or "-", and distinct call ids of at most 40 characters.
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_-]")
MAX_CALL_ID = 40


def replayable_calls(calls: list[ToolCall], fresh_id: Callable[[], str]) -> list[ToolCall]:
    """The model's calls as they can be sent back: a name or id the API would refuse (a model
    can return anything) would make every later request of the agent fail. What the model asked
    for is still what runs and what its result reports."""
    replayed: list[ToolCall] = []
    taken: set[str] = set()
    for call in calls:
        name = _NOT_IN_NAME.sub("_", call.name)[:64] or "unnamed_function"
        call_id = call.id
        if not call_id or len(call_id) > MAX_CALL_ID or call_id in taken:
            call_id = fresh_id()
        taken.add(call_id)
        replayed.append(ToolCall(call_id, name, valid_json(call.arguments), dict(call.extra)))
    return replayed


def valid_json(arguments: str) -> str:
    """The arguments as JSON every server can parse again: vLLM (chat_utils.py
    `_postprocess_messages`) and llama.cpp parse the replayed arguments of every call in
    history, and refuse the whole request if one does not parse (llama.cpp: 500 "Failed to
    parse tool call arguments as JSON" on every later request; /work/shared/PROVIDERS.md).
    Well-formed ones stay exactly as the model wrote them."""
    try:
        if isinstance(json.loads(arguments), dict):
            return arguments
    except ValueError:
        pass
    try:  # the agent's own repair: what it executes is what is replayed
        return json.dumps(parse_arguments(arguments), ensure_ascii=False)
    except ToolError:
        return "{}"
