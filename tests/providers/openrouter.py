"""OpenRouter (openrouter.ai/api/v1) routing to a thinking model, here Gemini 3
("google/gemini-3-pro-preview").

- Answers carry the model's reasoning as `reasoning` (text) and `reasoning_details`, a list of
  blocks {"type": "reasoning.text" | "reasoning.summary" | "reasoning.encrypted", …, "id",
  "format", "index"} (openrouter.ai/docs, "Reasoning tokens"; the block types are those of
  @openrouter/ai-sdk-provider's schemas/reasoning-details.ts). For Gemini the thought signature
  travels as a reasoning.encrypted block (RooCodeInc/Roo-Code#9506, "support reasoning_details
  format for Gemini 3 models": store them and send them back for tool calling).
- "Preserving reasoning blocks": the reasoning_details of an assistant message must be sent back
  with it unchanged; for Gemini 3 a tool-calling message of the current turn without its
  signature is refused upstream, and OpenRouter relays that as 400 {"error": {"message":
  "Provider returned error", "code": 400, "metadata": {"raw": "<Google's error body>",
  "provider_name": "Google"}}} (that wrapper: reVrost/go-openrouter#21,
  diegosouzapw/OmniRoute#3044).
Everything else as OpenAI (tests/openai_rules.py).
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any, ClassVar

from tests.llm_server import Step
from tests.openai_rules import Violation
from tests.providers import Provider, calls_of_this_turn, register
from tests.providers.gemini import missing_signature


@register
class OpenRouter(Provider):
    name: ClassVar[str] = "openrouter"
    model: ClassVar[str] = "google/gemini-3-pro-preview"

    def __init__(self) -> None:
        super().__init__()
        self._counter = itertools.count(1)
        self.handed_out: set[str] = set()

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found = super().reject(body)
        for index, message in calls_of_this_turn(body):
            blocks = message.get("reasoning_details") or []
            if not any(isinstance(b, dict) and b.get("data") in self.handed_out for b in blocks):
                upstream = missing_signature(index, message["tool_calls"][0]["function"]["name"])
                raw = json.dumps(upstream.error_body())
                wrapped = {"error": {"message": "Provider returned error", "code": 400,
                                     "metadata": {"raw": raw, "provider_name": "Google"}}}
                found.append(Violation(upstream.message, upstream.param, 400, 400, wrapped))
        return found

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        n = next(self._counter)
        message["reasoning"] = f"Thinking, step {n}."
        details: list[dict[str, Any]] = [
            {"type": "reasoning.text", "text": f"Thinking, step {n}.", "format":
             "google-gemini-v1", "index": 0}]
        if message.get("tool_calls"):
            signature = base64.b64encode(f"or-thought-{n}".encode()).decode()
            self.handed_out.add(signature)
            details.append({"type": "reasoning.encrypted", "data": signature,
                            "id": message["tool_calls"][0]["id"], "format": "google-gemini-v1",
                            "index": 1})
        message["reasoning_details"] = details
