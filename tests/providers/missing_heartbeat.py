"""A model that leaves `request_heartbeat` out of its memory edits.

MemGPT-style functions take `request_heartbeat` (required in every schema but send_message's),
yet weaker open models drop it: Meta's Llama 3.1 docs note the 8B model "can not reliably
maintain a conversation alongside tool calling definitions" (as quoted in LMDeploy's docs), and
a model that saves a fact and stops is the README's Ollama + qwen2.5 case. Without the flag the
agent gets no step to answer in, so the person hears nothing unless the bot asks for the reply.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tests.llm_server import Step, ToolCall
from tests.providers import Provider, register

MEMORY_EDITS = ("core_memory_append", "core_memory_replace", "archival_memory_insert")


def _without_heartbeat(call: ToolCall) -> ToolCall:
    if call.name not in MEMORY_EDITS:
        return call
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        return call
    if not isinstance(arguments, dict):
        return call
    arguments.pop("request_heartbeat", None)
    return dataclasses.replace(call, arguments=json.dumps(arguments))


@register
class MissingHeartbeat(Provider):
    name = "missing-heartbeat"
    model = "qwen2.5:14b"

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if step.kind != "reply" or not step.tool_calls:
            return step
        return dataclasses.replace(
            step, tool_calls=tuple(_without_heartbeat(c) for c in step.tool_calls))
