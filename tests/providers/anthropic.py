"""Anthropic's OpenAI SDK compatibility endpoint (api.anthropic.com/v1/, model e.g.
claude-sonnet-4-5): docs.anthropic.com/en/api/openai-sdk.

From that page:
- system and developer messages are hoisted: "concatenated together, with a single newline
  between them", and given as one system message at the start (visible());
- `temperature` "between 0 and 1 (inclusive); values greater than 1 are capped at 1" (capped,
  not refused); `n` "must be exactly 1"; `strict` on functions is ignored; `max_tokens`,
  `max_completion_tokens`, `parallel_tool_calls`, `tools`, `tool_choice` are supported;
  prompt caching is not available there;
- otherwise the endpoint "follows Anthropic's standard limits for the /v1/messages endpoint",
  whose validator refuses a message with empty text: 400 "messages.3: all messages must have
  non-empty content except for the optional final assistant message", body
  {"type": "error", "error": {"type": "invalid_request_error", "message": …}}.
Answers carry Anthropic's own tool-use ids ("toolu_01…", 30 characters).
Everything else as OpenAI (tests/openai_rules.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar

from tests.llm_server import Step
from tests.openai_rules import Violation
from tests.providers import Provider, register


def _error(message: str) -> Violation:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return Violation(message, None, "invalid_request_error", 400, body)


@register
class AnthropicCompat(Provider):
    name: ClassVar[str] = "anthropic-compat"
    model: ClassVar[str] = "claude-sonnet-4-5"

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found = super().reject(body)
        if body.get("n", 1) != 1:
            found.append(_error("n: only n=1 is supported"))
        messages = body.get("messages") or []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                continue
            content = message.get("content")
            last_assistant = i == len(messages) - 1 and message.get("role") == "assistant"
            if isinstance(content, str) and not content.strip() and not (
                    message.get("tool_calls") and content == "") and not last_assistant:
                found.append(_error(f"messages.{i}: all messages must have non-empty content"
                                    " except for the optional final assistant message"))
        return found

    def visible(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        if not system:
            return body
        text = "\n".join(m["content"] if isinstance(m.get("content"), str) else "".join(
            p.get("text", "") for p in m.get("content") or []) for m in system)
        rest = [m for m in messages if m.get("role") not in ("system", "developer")]
        return {**body, "messages": [{"role": "system", "content": text}, *rest]}

    def render(self, body: dict[str, Any], step: Step) -> Step:
        calls = tuple(dataclasses.replace(c, id=f"toolu_01{next(self._ids):022d}")
                      for c in step.tool_calls)
        return dataclasses.replace(step, tool_calls=calls)
