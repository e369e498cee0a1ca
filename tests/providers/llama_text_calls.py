"""A Llama 3.1 model whose server does not parse its tool calls: the whole answer is the JSON.

Meta's Llama 3.1 prompt-format docs (llama.meta.com/docs/model-cards-and-prompt-formats/llama3_1,
"JSON based tool calling"): given custom tools, the model answers with only `{"name":
"function_name", "parameters": {...}}` — "parameters", not "arguments" — and no text around it;
several calls come separated by ";" (vLLM's llama3_json tool parser). A server without that
parser returns the JSON as `content` with `finish_reason` "stop"; a thought the model might
have had is not written. Forcing through `tool_choice` is not honoured (nothing parses it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.llm_server import Step
from tests.providers import Provider, register
from tests.providers.hermes_text_calls import as_text


@register
class LlamaTextCalls(Provider):
    name = "llama-text-calls"
    model = "meta-llama/Llama-3.1-8B-Instruct"
    honours_tool_choice = False

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if step.kind != "reply" or not step.tool_calls:
            return step
        text = "; ".join(as_text(c.name, c.arguments, "parameters") for c in step.tool_calls)
        return dataclasses.replace(step, content=text, tool_calls=())
