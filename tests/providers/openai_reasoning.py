"""OpenAI's reasoning models (o1, o3, o4-mini, gpt-5.x) on api.openai.com.

Requests are checked by the OpenAI rules (tests/openai_rules.py), whose "openai-reasoning" row
refuses, with the API's own wording:
- `max_tokens`: 400 "Unsupported parameter: 'max_tokens' is not supported with this model. Use
  'max_completion_tokens' instead." (openai/openai-python#2046, teilomillet/gollm#33);
- any temperature but 1: 400 "Unsupported value: 'temperature' does not support 0.7 with this
  model. Only the default (1) value is supported." (OpenHands/OpenHands#4131,
  QwenLM/qwen-code#921).

Answers: the model reasons before it writes, and "reasoning tokens … occupy space in the context
window and are billed as output tokens"; with too small a `max_completion_tokens` "you may not
get any visible output" and finish_reason is "length" (platform.openai.com/docs/guides/
reasoning, "Allocating space for reasoning": OpenAI suggests reserving at least 25,000).
This profile spends REASONING tokens of the budget before each answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from tests.llm_server import Step
from tests.providers import Provider, register

REASONING = 1200  # tokens the model thinks before each answer


@register
class OpenAIReasoning(Provider):
    name: ClassVar[str] = "openai-reasoning"
    model: ClassVar[str] = "o4-mini"

    def render(self, body: dict[str, Any], step: Step) -> Step:
        budget = body.get("max_completion_tokens")
        if step.kind == "reply" and isinstance(budget, int) and budget < REASONING + 50:
            # Reasoning ate the whole budget: nothing visible, cut off.
            return dataclasses.replace(step, content="", tool_calls=(), finish_reason="length")
        return step

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        message.setdefault("refusal", None)
