"""DeepSeek's API (api.deepseek.com) in thinking mode, on by default for V4
(api-docs.deepseek.com/guides/thinking_mode).

- Every answer carries `reasoning_content` beside `content` ("the chain of thought is returned
  in reasoning_content, at the same level as content").
- "Between two user messages, if the model performed tool calls, the intermediate assistant's
  reasoning_content must participate in the context … and must be passed back to the API in all
  subsequent user turns"; otherwise 400 "The reasoning_content in the thinking mode must be passed
  back to the API." (the guide; anomalyco/opencode#24722 quotes the 400). Turns without tool calls
  may drop it. Our agent answers through send_message, so every turn has tool calls.
- temperature, top_p, presence/frequency penalties are accepted and ignored in thinking mode.
Everything else as OpenAI (tests/openai_rules.py).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from tests.llm_server import Step
from tests.openai_rules import Violation
from tests.providers import Provider, register

MISSING = "The reasoning_content in the thinking mode must be passed back to the API."


@register
class DeepSeekThinking(Provider):
    name: ClassVar[str] = "deepseek-thinking"
    model: ClassVar[str] = "deepseek-v4-flash"

    def __init__(self) -> None:
        super().__init__()
        self._thoughts = itertools.count(1)

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found = super().reject(body)
        turn: list[tuple[int, dict[str, Any]]] = []  # assistant messages since the last user one
        for index, message in enumerate([*(body.get("messages") or []), {"role": "user"}]):
            if not isinstance(message, dict):
                continue
            if message.get("role") == "user":
                if any(m.get("tool_calls") for _, m in turn):
                    found += [self._missing(i) for i, m in turn if not m.get("reasoning_content")]
                turn = []
            elif message.get("role") == "assistant":
                turn.append((index, message))
        return found

    @staticmethod
    def _missing(index: int) -> Violation:
        body = {"error": {"message": MISSING, "type": "invalid_request_error", "param": None,
                          "code": "invalid_request_error"}}
        return Violation(MISSING, f"messages[{index}]", "invalid_request_error", 400, body)

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        message["reasoning_content"] = f"Let me think about this (thought {next(self._thoughts)})."
