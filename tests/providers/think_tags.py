"""A thinking model (Qwen3, DeepSeek-R1 distills) on a server that runs no reasoning parser.

The reasoning arrives inside `content` as `<think>…</think>` before the answer text; tool calls
are still parsed into `tool_calls`. Qwen3's chat template (blog "The 4 Things Qwen-3's Chat
Template Teaches Us", huggingface.co/blog/qwen-3-chat-template-deep-dive) and DeepSeek-R1's
updated template can open the block in the prompt itself, so the answer holds only "…</think>"
with no opening tag (the Qwen3-Thinking-2507 model card: "it is normal for the model's output to
contain only </think>"): this profile does that on every second answer. Summaries get the block
too: a thinking model thinks whatever it is asked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.llm_server import Step
from tests.providers import Provider, register

THINKING = "THINKING: the person wrote to me, so I weigh what to do before I answer."


@register
class ThinkTags(Provider):
    name = "think-tags"
    model = "qwen3:14b"

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if step.kind != "reply":
            return step
        self.answers += 1
        opened = "<think>\n" if self.answers % 2 else ""  # else: the template opened it
        text = f"{opened}{THINKING}\n</think>\n\n{step.content or ''}"
        return dataclasses.replace(step, content=text)
