"""A model that makes the same call again after reading its result.

Small models loop: after a function result they call the same function with the same arguments
again instead of answering (the failure the step cap exists for; Meta's Llama 3.1 docs on the
8B model's unreliable tool use, as quoted in LMDeploy's docs). This profile repeats each call
that asked for a heartbeat once, with the same arguments and a new id, in place of whatever the
model would have said next; the following answer is the model's own again.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from tests.llm_server import Step, ToolCall
from tests.providers import Provider, register

_ids = itertools.count(1)


@register
class Repeats(Provider):
    name = "repeats"
    model = "llama3.1:8b"

    def __init__(self) -> None:
        super().__init__()
        self.pending: ToolCall | None = None
        self.repeated: set[tuple[str, str]] = set()

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if not body.get("tools") or step.kind != "reply":
            return step  # the summarizer's requests offer no functions
        if self.pending is not None:
            again, self.pending = self.pending, None
            return Step("reply", tool_calls=(
                dataclasses.replace(again, id=f"call_again_{next(_ids)}"),))
        for call in step.tool_calls:
            key = (call.name, call.arguments)
            if '"request_heartbeat": true' in call.arguments and key not in self.repeated:
                self.repeated.add(key)
                self.pending = call
                break
        return step
