"""A Hermes / Qwen model whose server does not parse its tool calls: they arrive as text.

Qwen2.5's chat template (Qwen/Qwen2.5-7B-Instruct, tokenizer_config.json) tells the model: "For
each function call, return a json object with function name and arguments within
<tool_call></tool_call> XML tags: <tool_call>\\n{"name": <function-name>, "arguments":
<args-json-object>}\\n</tool_call>"; Hermes 2 Pro (NousResearch model card) and Ollama's Qwen
templates use the same blocks. Without a matching parser (vLLM without `--tool-call-parser
hermes`, a GGUF served with a plain ChatML template) the blocks are the `content`, `tool_calls`
is absent and `finish_reason` is "stop". The model writes its calls this way even when a request
names a function in `tool_choice` (nothing parses them), so forcing is not honoured here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.llm_server import Step
from tests.providers import Provider, register


def as_text(name: str, arguments: str, key: str = "arguments") -> str:
    """One call as the model writes it: the arguments exactly as generated."""
    return f'{{"name": "{name}", "{key}": {arguments or "{}"}}}'


@register
class HermesTextCalls(Provider):
    name = "hermes-text-calls"
    model = "Qwen/Qwen2.5-14B-Instruct"
    honours_tool_choice = False

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if step.kind != "reply" or not step.tool_calls:
            return step
        blocks = [f"<tool_call>\n{as_text(c.name, c.arguments)}\n</tool_call>"
                  for c in step.tool_calls]
        text = "\n".join([step.content, *blocks] if step.content else blocks)
        return dataclasses.replace(step, content=text, tool_calls=())
