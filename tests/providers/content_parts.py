"""A server that returns `content` as a list of parts, not a string (Mistral's Magistral).

Magistral models answer with `content` as an array of chunks: `{"type": "thinking", "thinking":
[{"type": "text", "text": ...}]}` for the reasoning and `{"type": "text", "text": ...}` for the
answer (spring-projects/spring-ai#5019 quotes a magistral-medium-2509 response;
braintrustdata/braintrust-sdk-javascript#1857 the same chunks). The text may come in several
parts; a call-only answer still carries the thinking chunk.
"""

from __future__ import annotations

from typing import Any

from tests.llm_server import Step
from tests.providers import Provider, register

THOUGHT = "PARTS-THINKING: what should I say here?"


@register
class ContentParts(Provider):
    name = "content-parts"
    model = "magistral-small-2509"

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        parts: list[dict[str, Any]] = [
            {"type": "thinking", "thinking": [{"type": "text", "text": THOUGHT}]}]
        text = message.get("content")
        if isinstance(text, str) and text:
            middle = len(text) // 2
            parts += [{"type": "text", "text": text[:middle]},
                      {"type": "text", "text": text[middle:]}]
        message["content"] = parts
