"""A thinking model whose server splits the reasoning into its own field (DeepSeek, vLLM).

DeepSeek's API returns the chain of thought as `reasoning_content`, "at the same level as
content" (api-docs.deepseek.com/guides/reasoning_model); vLLM's reasoning parsers (`--reasoning-
parser deepseek_r1`, `qwen3`) return the same field (docs.vllm.ai, features/reasoning_outputs;
renamed `reasoning` in later versions, which Ollama's /v1 also uses). `content` keeps only the
answer, and is empty when the model only calls functions. Whether the field must come back in
later requests is the `deepseek-thinking` profile's rule, not this one's.
"""

from __future__ import annotations

from typing import Any

from tests.llm_server import Step
from tests.providers import Provider, register

REASONING = "REASONING: let me think about what the person needs before I act."


@register
class ReasoningField(Provider):
    name = "reasoning-field"
    model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        message["reasoning_content"] = REASONING
        if message.get("content") is None:
            message["content"] = ""
