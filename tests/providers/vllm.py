"""vLLM's OpenAI-compatible server (`vllm serve`).

From vLLM's docs and source (github.com/vllm-project/vllm) and what its users report:
- `tool_choice: "auto"` (the default once `tools` are sent) needs `--enable-auto-tool-choice
  --tool-call-parser <name>` (docs.vllm.ai features/tool_calling.md); without them HTTP 400
  `{"error": {"message": "\\"auto\\" tool choice requires --enable-auto-tool-choice and
  --tool-call-parser to be set", "type": "BadRequestError", "param": null, "code": 400}}`
  (vllm/entrypoints/openai/serving_chat.py; the body as quoted in gaoch6258/llm-srbench
  claude/VLLM_TOOL_CALLING_FIX.md). Named functions and "required" work without them
  (guided decoding).
- The window is `--max-model-len`, by default the model's own (32768 for Qwen2.5-7B-Instruct,
  its config's max_position_embeddings); `GET /v1/models` lists it as `max_model_len`
  (vllm/entrypoints/openai/protocol.py ModelCard).
- A prompt over it: 400 "This model's maximum context length is 4096 tokens. However, your
  request has 4176 input tokens. Please reduce the length of the input messages."; prompt plus
  `max_tokens` over it: 400 "'max_tokens' or 'max_completion_tokens' is too large: 8000. This
  model's maximum context length is 4096 tokens and your request has 2778 input tokens (8000 >
  4096 - 2778)." (vllm/entrypoints/openai/serving_engine.py _validate_input; both wordings as
  reported in andrewcho-dev/opsconductor-ng vLLM_transition/TOKEN_LIMIT_FIX.md). Type
  BadRequestError, integer code 400.
- Replayed `tool_calls[].function.arguments` are parsed with `json.loads` to feed the chat
  template (vllm/entrypoints/chat_utils.py); broken JSON is a 400 carrying the decoder's words
  ("400 Invalid \\escape: line 1 column 2271", jsirish/llm-hosting
  docs/reference/TOOL-PARSER-RESEARCH.md).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from tests.openai_rules import Violation
from tests.providers import Provider, register
from tests.providers._counting import template_tokens

if TYPE_CHECKING:
    from tests.llm_server import Step

AUTO_TOOL_CHOICE = ('"auto" tool choice requires --enable-auto-tool-choice and'
                    ' --tool-call-parser to be set')


def vllm_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "BadRequestError", "param": None,
                      "code": 400}}


@register
class Vllm(Provider):
    name = "vllm"
    model = "Qwen/Qwen2.5-7B-Instruct"
    settings: ClassVar[dict[str, Any]] = {"llm_api_key": "token-abc123"}

    def __init__(self, max_model_len: int = 32768, *, auto_tool_choice: bool = True) -> None:
        """`auto_tool_choice=False`: served without --enable-auto-tool-choice."""
        super().__init__()
        self.max_model_len = max_model_len
        self.auto_tool_choice = auto_tool_choice

    def count(self, body: dict[str, Any]) -> int:
        # Qwen2.5's tokenizer through its chat template (tests/providers/_counting.py).
        return template_tokens(body.get("messages") or [], body.get("tools"))

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found: list[Violation] = []
        choice = body.get("tool_choice", "auto" if body.get("tools") else "none")
        if body.get("tools") and choice == "auto" and not self.auto_tool_choice:
            found.append(Violation(AUTO_TOOL_CHOICE, body=vllm_error(AUTO_TOOL_CHOICE)))
        for message in body.get("messages") or []:
            calls = message.get("tool_calls") if isinstance(message, dict) else None
            for call in calls or []:
                arguments = (call.get("function") or {}).get("arguments")
                try:
                    json.loads(arguments if isinstance(arguments, str) else "")
                except ValueError as error:
                    found.append(Violation(str(error), body=vllm_error(str(error))))
        return found + super().reject(body)  # its own checks answer first

    def refuse(self, body: dict[str, Any]) -> Step | None:
        tokens = self.count(body)
        limit = self.max_model_len
        wanted = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        if tokens > limit:
            message = (f"This model's maximum context length is {limit} tokens. However, your"
                       f" request has {tokens} input tokens. Please reduce the length of the"
                       " input messages.")
        elif isinstance(wanted, int) and wanted > limit - tokens:
            message = (f"'max_tokens' or 'max_completion_tokens' is too large: {wanted}. This"
                       f" model's maximum context length is {limit} tokens and your request"
                       f" has {tokens} input tokens ({wanted} > {limit} - {tokens}).")
        else:
            return None
        from tests.llm_server import Step

        return Step("error", status=400, error=vllm_error(message)["error"])

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return self.count(body)

    def model_entry(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 0, "owned_by": "vllm",
                "root": model, "parent": None, "max_model_len": self.max_model_len,
                "permission": []}
