"""llama.cpp's `llama-server` (OpenAI-compatible `/v1`, plus `/props`).

Observed against a real llama-server 0.6.0-dev built here (../shared/PROVIDERS.md, "Measured
against a real llama.cpp llama-server"), and in its source (ggml-org/llama.cpp,
tools/server/server.cpp, common/chat.cpp):
- Over the window: HTTP 400 `{"error": {"code": 400, "message": "request (4284 tokens) exceeds
  the available context size (4096 tokens), try increasing it", "type":
  "exceed_context_size_error", "n_prompt_tokens": 4284, "n_ctx": 4096}}` - `code` is an integer,
  the kind is in `type`. Prompt + `max_tokens` over `n_ctx` is not refused (generation stops
  at `n_ctx`).
- `--no-jinja` (or older builds without --jinja) with `tools`: HTTP 500 `{"error": {"code": 500,
  "message": "tools param requires --jinja flag", "type": "server_error"}}` (older wording
  "Unsupported param: tools", ggml-org/llama.cpp#10920).
- An assistant message with neither `content` nor `tool_calls`: 400 "Assistant message must
  contain either 'content' or 'tool_calls'!" (a `content` key holding null counts as content);
  any other message without `content`: "All non-assistant messages must contain 'content'";
  `content` neither string, null nor array: "Expected 'content' to be a string or an array"
  (tools/server/utils.hpp oaicompat_chat_params_parse, std::invalid_argument -> 400
  invalid_request_error).
- Replayed tool-call arguments that are not JSON: 500 "Failed to parse tool call arguments as
  JSON: ..." on every request with that history.
- `GET /props`: `default_generation_settings.n_ctx` (the slot's context), `total_slots`;
  `GET /v1/models`: `owned_by: "llamacpp"`, `meta.n_ctx`, `meta.n_ctx_train`.
- Its tokenizer + template (Gemma 3 here) counted about 1.25x cl100k's count of the same prompt.
- The window is `-c/--ctx-size`; the profile plays a server started with `-c 8192` as the
  README's provider table tells (`LlamaCpp(n_ctx=4096)` is the 4096 of the run above). At 4096
  the bot's fixed prompt (tools and instructions, ~1900 cl100k tokens, ~2400 of Gemma's) leaves
  so little room that the first eviction keeps the whole last exchange.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.openai_rules import Violation
from tests.providers import Provider, register
from tests.providers._counting import template_tokens

if TYPE_CHECKING:
    from aiohttp import web

    from tests.llm_server import Step

GEMMA_FACTOR = 1.25


def llamacpp_error(status: int, message: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "type": kind, **extra}}


def _invalid(message: str) -> Violation:
    # tools/server/utils.hpp oaicompat_chat_params_parse throws std::invalid_argument: 400.
    return Violation(message, body=llamacpp_error(400, message, "invalid_request_error"))


@register
class LlamaCpp(Provider):
    name = "llamacpp"
    model = "gemma-3-4b-it-Q4_K_M.gguf"

    def __init__(self, n_ctx: int = 8192, *, jinja: bool = True, advertise: bool = True,
                 n_ctx_train: int = 131072) -> None:
        """`jinja=False`: started with --no-jinja; `advertise=False`: /props and the models'
        `meta` out of reach (a proxy forwarding only /v1/chat), so only errors tell the
        window."""
        super().__init__()
        self.n_ctx = n_ctx
        self.jinja = jinja
        self.advertise = advertise
        self.n_ctx_train = n_ctx_train

    def count(self, body: dict[str, Any]) -> int:
        # Measured as a whole: 1.25x cl100k's count of the same request.
        return template_tokens(body.get("messages") or [], body.get("tools"),
                               factor=GEMMA_FACTOR, per_message=4, split_digits=False)

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found: list[Violation] = []
        if body.get("tools") and not self.jinja:
            message = "tools param requires --jinja flag"
            found.append(Violation(message, status=500,
                                   body=llamacpp_error(500, message, "server_error")))
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if message.get("role") != "assistant":
                if "content" not in message:
                    found.append(_invalid("All non-assistant messages must contain 'content'"))
                elif not isinstance(content, str | list | type(None)):
                    found.append(_invalid("Expected 'content' to be a string or an array"))
                continue
            if "content" not in message and "tool_calls" not in message:
                found.append(_invalid(
                    "Assistant message must contain either 'content' or 'tool_calls'!"))
            for call in message.get("tool_calls") or []:
                arguments = (call.get("function") or {}).get("arguments")
                try:
                    json.loads(arguments if isinstance(arguments, str) else "")
                except ValueError as error:
                    text = f"Failed to parse tool call arguments as JSON: {error}"
                    found.append(Violation(text, status=500,
                                           body=llamacpp_error(500, text, "server_error")))
        return found + super().reject(body)  # its own checks answer first

    def refuse(self, body: dict[str, Any]) -> Step | None:
        tokens = self.count(body)
        if tokens <= self.n_ctx:
            return None
        from tests.llm_server import Step

        error = llamacpp_error(
            400, f"request ({tokens} tokens) exceeds the available context size"
                 f" ({self.n_ctx} tokens), try increasing it",
            "exceed_context_size_error", n_prompt_tokens=tokens, n_ctx=self.n_ctx)
        return Step("error", status=400, error=error["error"])

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return self.count(body)

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        if message.get("content") is None and not message.get("tool_calls"):
            message["content"] = ""

    def routes(self, app: web.Application) -> None:
        if not self.advertise:
            return
        from aiohttp import web

        async def props(request: web.Request) -> web.Response:
            return web.json_response({
                "default_generation_settings": {"n_ctx": self.n_ctx, "params": {}},
                "total_slots": 1,
                "model_path": f"/models/{self.model}",
                "chat_template": "{{ bos_token }}...",
                "build_info": "b6000-scripted",
            })

        app.router.add_get("/props", props)

    def model_entry(self, model: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": model, "object": "model", "created": 0,
                                 "owned_by": "llamacpp"}
        if self.advertise:
            entry["meta"] = {"n_ctx": self.n_ctx, "n_ctx_train": self.n_ctx_train,
                             "vocab_type": 1, "n_vocab": 262144}
        return entry
