"""Gemini 3 through Google's OpenAI-compatible endpoint
(generativelanguage.googleapis.com/v1beta/openai/).

Thought signatures (ai.google.dev/gemini-api/docs/thought-signatures):
- every answer with function calls carries an opaque signature on its FIRST call (parallel calls:
  only the first), which the OpenAI endpoint puts beside `function` as
  {"extra_content": {"google": {"thought_signature": "…"}}} (the OpenAI-compatibility section of
  that page; continuedev/continue#8865 reads it from there);
- Gemini 3 validates the current turn (every step since the last user message): each model
  message with function calls must bring its first call's signature back, else 400 "Function call
  is missing a thought_signature in functionCall parts. This is required for tools to work
  correctly, …". Calls not made by the model may carry the documented dummy
  "skip_thought_signature_validator" (same page, "FAQs").
- The endpoint answers errors wrapped in a list: [{"error": {"code": 400, "message": …,
  "status": "INVALID_ARGUMENT"}}] (seen in a client test in the index that parses exactly this).
Everything else as OpenAI (tests/openai_rules.py).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any, ClassVar

from tests.llm_server import Step
from tests.openai_rules import Violation
from tests.providers import Provider, calls_of_this_turn, register

DUMMY = "skip_thought_signature_validator"


def missing_signature(index: int, name: str) -> Violation:
    message = ("Function call is missing a thought_signature in functionCall parts. This is"
               " required for tools to work correctly, and missing thought_signature may lead to"
               f" degraded model performance. Additional data, function call `default_api:{name}`"
               f" , position {index}. Please refer to"
               " https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
    body = [{"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}]
    return Violation(message, f"messages[{index}]", "INVALID_ARGUMENT", 400, body)


@register
class Gemini3(Provider):
    name: ClassVar[str] = "gemini3"
    model: ClassVar[str] = "gemini-3-flash-preview"

    def __init__(self) -> None:
        super().__init__()
        self._counter = itertools.count(1)
        self.signatures: set[str] = set()

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found = super().reject(body)
        for index, message in calls_of_this_turn(body):
            calls = message["tool_calls"]
            google = (calls[0].get("extra_content") or {}).get("google") or {}
            if google.get("thought_signature") not in self.signatures | {DUMMY}:
                name = (calls[0].get("function") or {}).get("name", "")
                found.append(missing_signature(index, name))
        return found

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        calls = message.get("tool_calls")
        if calls:
            signature = base64.b64encode(f"thought-{next(self._counter)}".encode()).decode()
            self.signatures.add(signature)
            calls[0]["extra_content"] = {"google": {"thought_signature": signature}}
