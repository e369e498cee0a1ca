"""A model that answers in plain text instead of calling send_message.

Many chat-tuned open models answer a person directly in `content` even when a function is the
only way to speak (MemGPT's own docs on weaker models; the llama.cpp and Ollama issue threads on
models "ignoring tools"); after a function result they do the same. A server that enforces a
named `tool_choice` (OpenAI, vLLM's guided decoding) still gets the call, so forcing is honoured.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tests.llm_server import Step
from tests.providers import Provider, register


def forced(body: dict[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return choice == "required" or isinstance(choice, dict)


@register
class PlainText(Provider):
    name = "plain-text"
    model = "gemma3:12b"

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if step.kind != "reply" or not step.tool_calls or forced(body):
            return step
        if any(c.name != "send_message" for c in step.tool_calls):
            return step
        try:
            said = [json.loads(c.arguments)["message"] for c in step.tool_calls]
        except (ValueError, KeyError, TypeError):
            return step
        return dataclasses.replace(step, content="\n\n".join(said), tool_calls=())
