"""Groq's OpenAI-compatible API (api.groq.com/openai/v1), e.g. llama-3.3-70b-versatile.

Requests (console.groq.com/docs/openai, "Currently Unsupported OpenAI Features": these "will
result in a 400 error if they are supplied"): logprobs, logit_bias, top_logprobs,
messages[].name, and n other than 1. (Tool messages may carry `name`: Groq's own tool-use
examples send it.)

Rate limits: a request whose tokens, the answer budget (max_tokens) included, exceed the plan's
tokens per minute is refused outright with 413 "Request too large for model `…` in organization
`org_…` service tier `on_demand` on tokens per minute (TPM): Limit 12000, Requested 14137, please
reduce your message size and try again. …", type "tokens", code "rate_limit_exceeded"
(continuedev/continue#10218; zeeyado/koassistant.koplugin#106 on max_tokens counting). TPM_LIMIT
is the on-demand limit of that issue.

Answers: when the model writes a call Groq's parser cannot read, the request fails with 400
{"message": "Failed to call a function. Please adjust your prompt. See 'failed_generation' for
more details.", "type": "invalid_request_error", "code": "tool_use_failed", "failed_generation":
"<what the model wrote>"} (groq/groq-typescript#28, lucagrippa/obsidian-ai-tagger#34); what it
wrote is the model's own dialect, `<function=read={"file_path": "x"}</function>`
(tashfeenahmed/freellmapi#291) or `name{…}</function>` (huggingface/smolagents#1119). Here some
tool-call answers fail that way: once (the retry succeeds), or twice in a row for the same request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar

from tests.llm_server import Step
from tests.openai_rules import Violation
from tests.providers import Provider, estimate_tokens, register

TPM_LIMIT = 12000
UNSUPPORTED = ("logprobs", "logit_bias", "top_logprobs")


def _error(status: int, message: str, kind: str, code: str, **more: Any) -> Violation:
    body = {"error": {"message": message, "type": kind, "code": code, **more}}
    return Violation(message, None, code, status, body)


@register
class Groq(Provider):
    name: ClassVar[str] = "groq"
    model: ClassVar[str] = "llama-3.3-70b-versatile"

    def __init__(self) -> None:
        super().__init__()
        self.tool_answers = 0
        self.failed: dict[str, int] = {}  # request digest -> times it failed with tool_use_failed

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found = super().reject(body)
        for key in UNSUPPORTED:
            if key in body:
                found.append(_error(400, f"'{key}' : property '{key}' is unsupported",
                                    "invalid_request_error", "invalid_request_error"))
        if body.get("n", 1) != 1:
            found.append(_error(400, "'n' : number must be at most 1", "invalid_request_error",
                                "invalid_request_error"))
        for i, message in enumerate(body.get("messages") or []):
            if isinstance(message, dict) and "name" in message and message.get("role") != "tool":
                found.append(_error(400, f"'messages.{i}' : for 'role:{message.get('role')}' the"
                                    f" following must be satisfied[('messages.{i}.name' :"
                                    " property 'name' is unsupported)]",
                                    "invalid_request_error", "invalid_request_error"))
        requested = estimate_tokens([body.get("messages"), body.get("tools")]) + int(
            body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        if requested > TPM_LIMIT:
            found.append(_error(
                413, f"Request too large for model `{body.get('model')}` in organization"
                " `org_01scripted` service tier `on_demand` on tokens per minute (TPM): Limit"
                f" {TPM_LIMIT}, Requested {requested}, please reduce your message size and try"
                " again. Need more tokens? Upgrade to Dev Tier today at"
                " https://console.groq.com/settings/billing", "tokens", "rate_limit_exceeded"))
        return found

    def render(self, body: dict[str, Any], step: Step) -> Step:
        if step.kind != "reply" or not step.tool_calls:
            return step
        digest = hashlib.sha1(json.dumps(body.get("messages"), sort_keys=True).encode()).digest()
        key = digest.hex()
        if key in self.failed:  # the retry of a request that failed
            if self.failed[key] == 1 and len(self.failed) % 2 == 0:
                self.failed[key] = 2
                return self._tool_use_failed(step)
            return step
        self.tool_answers += 1
        if self.tool_answers % 3 != 2:
            return step
        self.failed[key] = 1
        return self._tool_use_failed(step)

    def _tool_use_failed(self, step: Step) -> Step:
        first = step.tool_calls[0]
        if len(self.failed) % 2:
            written = f"<function={first.name}={first.arguments}</function>"
        else:  # with the trailing comma weaker models leave
            written = f"{first.name}{first.arguments[:-1]},}}</function>"
        error = {"message": "Failed to call a function. Please adjust your prompt. See"
                 " 'failed_generation' for more details.", "type": "invalid_request_error",
                 "code": "tool_use_failed", "failed_generation": written}
        return dataclasses.replace(step, kind="error", status=400, error=error)
