"""A Mistral model whose server does not parse its tool calls: `[TOOL_CALLS][...]` as text.

mistral-common's tokenizers (v3 to v7; github.com/mistralai/mistral-common, tokens/tokenizers)
encode an assistant's calls as the control token `[TOOL_CALLS]` followed by a JSON list of
`{"name": ..., "arguments": {...}}`; v11 and later write `[TOOL_CALLS]name[ARGS]{...}` per call
(vLLM's mistral_tool_parser: "Mistral emits tool calls in the [TOOL_CALLS]name[ARGS]{...}
format"). Served without `--tool-call-parser mistral` (or with a GGUF whose template keeps the
control token as text) that is the `content`; text the model wrote first comes before it. This
profile writes the v3 list on odd answers and the v11 form on even ones. The 9-character id rule
of mistral-common's validator is the `mistral` profile's; forcing is not honoured here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.llm_server import Step
from tests.providers import Provider, register
from tests.providers.hermes_text_calls import as_text


@register
class MistralTextCalls(Provider):
    name = "mistral-text-calls"
    model = "mistralai/Mistral-Small-3.1-24B-Instruct-2503"
    honours_tool_choice = False

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if step.kind != "reply" or not step.tool_calls:
            return step
        self.answers += 1
        if self.answers % 2:
            written = "[TOOL_CALLS][" + ", ".join(
                as_text(c.name, c.arguments) for c in step.tool_calls) + "]"
        else:
            written = "".join(f"[TOOL_CALLS]{c.name}[ARGS]{c.arguments or '{}'}"
                              for c in step.tool_calls)
        text = f"{step.content}\n{written}" if step.content else written
        return dataclasses.replace(step, content=text, tool_calls=())
