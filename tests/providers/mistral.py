"""Mistral's La Plateforme (api.mistral.ai/v1), and vLLM serving a Mistral model in mistral
tokenizer mode: both validate requests with mistral-common.

Rules (mistral-common src/mistral_common/protocol/instruct/validator.py, MistralRequestValidator):
- every tool call id, in an assistant message's tool_calls and in a tool message's tool_call_id,
  must match ^[a-zA-Z0-9]{9}$: "Tool call id was call_0 but must be a-z, A-Z, 0-9, with a length
  of 9." (_validate_tool_call, _validate_tool_message; La Plateforme answers it as a 400 with
  type "invalid_function_call", code 3280: see the relay test quoted from mistral-medium-2505 in
  the index; sst/opencode#1680, strands-agents/sdk-python#312 for clients that broke on it);
- the last message must be a user or tool message (or an assistant one with prefix=True):
  "Expected last role User or Tool (or Assistant with prefix True) for serving but got
  assistant" (_validate_last_message);
- replayed arguments must be JSON (the request's FunctionCall arguments are parsed; vLLM's chat
  utils parse them for every template): tests/providers/__init__.py unparsable_arguments.
Answers carry nine-character ids of the same shape (what La Plateforme returns).
Everything else as OpenAI (tests/openai_rules.py), which is stricter on unknown parameters.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, ClassVar

from tests.llm_server import Step
from tests.openai_rules import Violation
from tests.providers import Provider, register, unparsable_arguments

ID = re.compile(r"^[a-zA-Z0-9]{9}$")


def _error(message: str, kind: str, code: str) -> Violation:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": code}
    return Violation(message, None, code, 400, body)


def _id_error(call_id: Any) -> Violation:
    return _error(f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9.",
                  "invalid_function_call", "3280")


@register
class Mistral(Provider):
    name: ClassVar[str] = "mistral"
    model: ClassVar[str] = "mistral-small-latest"

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found = super().reject(body)
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        for message in messages:
            for call in message.get("tool_calls") or []:
                if isinstance(call, dict) and not ID.match(str(call.get("id"))):
                    found.append(_id_error(call.get("id")))
            if message.get("role") == "tool" and not ID.match(str(message.get("tool_call_id"))):
                found.append(_id_error(message.get("tool_call_id")))
        if messages and messages[-1].get("role") not in ("user", "tool"):
            found.append(_error("Expected last role User or Tool (or Assistant with prefix True)"
                                f" for serving but got {messages[-1].get('role')}",
                                "invalid_request_message_order", "3230"))
        for violation in unparsable_arguments(body):
            found.append(_error(violation.message, "invalid_request_error", "3051"))
        return found

    def render(self, body: dict[str, Any], step: Step) -> Step:
        calls = tuple(dataclasses.replace(c, id=f"{next(self._ids):09d}") for c in step.tool_calls)
        return dataclasses.replace(step, tool_calls=calls)
