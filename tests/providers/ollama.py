"""Ollama's OpenAI-compatible endpoint (`/v1`) and the native endpoints that tell its window.

What it does, from Ollama's source and docs (github.com/ollama/ollama):
- The window is the server's `num_ctx`; over `/v1` it cannot be set per request
  (ollama/ollama#5902). Default: 4096 tokens below 24 GiB of VRAM, 32k below 48 GiB, 256k above
  (docs/context-length.mdx, "Ollama defaults to the following context lengths based on VRAM");
  older versions 2048. `OLLAMA_CONTEXT_LENGTH=N ollama serve` or a Modelfile `PARAMETER
  num_ctx N` changes it (docs/context-length.mdx, docs/faq.md).
- An over-long prompt is NOT rejected: `chatPrompt` (server/prompt.go) "truncates any messages
  that exceed the context window of the model, making sure to always include 1) the latest
  message and 2) system messages": it walks i = 0.. and, for each start (moved back to the
  assistant call of a tool-result block, `toolBlockStartIndex`), renders the system messages
  before it plus everything from it, and keeps the first that fits `NumCtx`; at the last message
  it keeps that one whatever its size. `visible` does exactly that, counting with the template.
- `usage.prompt_tokens` is `prompt_eval_count`, the tokens of what was kept (openai/openai.go
  toUsage): a silently truncated prompt shows up only as a low count.
- `tool_choice` is not a field of its request (openai/openai.go ChatCompletionRequest has
  `Tools` but no `ToolChoice`): ignored. Replayed `tool_calls[].function.arguments` are parsed as
  JSON into a map (openai/openai.go FromChatRequest: `json.Unmarshal` ... "invalid tool call
  arguments", HTTP 400 via NewError: type invalid_request_error); a message whose `content` is
  neither a string nor a list of parts is refused unless it has tool calls ("content is only
  optional if tool calls are present": "invalid message content type: <nil>").
- Answers: `content` is a string, "" when the model only called tools (Message.Content is a
  Go string); a thinking model's thoughts come in `reasoning` (openai/openai.go Message
  `Reasoning string json:"reasoning,omitempty"`), its `content` possibly empty.
- `POST /api/show` (docs/api.md "Show Model Information"): `parameters` as "name value" lines
  (`num_ctx` only if the Modelfile sets it; the library models do not), `model_info` with
  `<arch>.context_length` (the trained maximum, not what it runs with).
- `GET /api/ps` (docs/api.md "List Running Models"; api/types.go ProcessModelResponse
  `ContextLength int json:"context_length"`): the loaded models, each with the context it was
  loaded with; empty until a first request loads the model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from tests.openai_rules import Violation
from tests.providers import Provider, register
from tests.providers._counting import template_tokens

if TYPE_CHECKING:
    from aiohttp import web

    from tests.llm_server import Step




def _error(message: str) -> dict[str, Any]:
    """openai/openai.go NewError(400, ...): type invalid_request_error, no param, no code."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": None}}


def _go_type(value: Any) -> str:
    return {type(None): "<nil>", bool: "bool", int: "float64", float: "float64",
            dict: "map[string]interface {}"}.get(type(value), type(value).__name__)


def tool_block_start(messages: list[dict[str, Any]], index: int) -> int:
    """server/prompt.go toolBlockStartIndex: a tool result's block starts at its call."""
    if index <= 0 or index >= len(messages) or messages[index].get("role") != "tool":
        return index
    start = index
    while start > 0 and messages[start - 1].get("role") == "tool":
        start -= 1
    if messages[start - 1].get("role") == "assistant" and messages[start - 1].get("tool_calls"):
        return start - 1
    return index


@register
class Ollama(Provider):
    name = "ollama"
    model = "qwen2.5:14b"  # the README's example
    honours_tool_choice = False
    settings: ClassVar[dict[str, Any]] = {"llm_api_key": "ollama"}
    trained_context = 32768  # qwen2.context_length in the GGUF

    def __init__(self, num_ctx: int = 4096, *, native_api: bool = True,
                 thinking: bool = False, modelfile_num_ctx: bool = False) -> None:
        """`native_api=False`: only /v1 reachable (a proxy in front, e.g. LiteLLM);
        `modelfile_num_ctx`: the model's Modelfile sets num_ctx (shown by /api/show)."""
        super().__init__()
        self.num_ctx = num_ctx
        self.native_api = native_api
        self.thinking = thinking
        self.modelfile_num_ctx = modelfile_num_ctx
        self.loaded = False
        self.truncated: list[int] = []  # per request: how many messages chatPrompt dropped

    def count(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        return template_tokens(messages, tools)

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        found: list[Violation] = []
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if not isinstance(content, str | list) and not message.get("tool_calls"):
                # FromChatRequest: "content is only optional if tool calls are present"
                text = f"invalid message content type: {_go_type(content)}"
                found.append(Violation(text, body=_error(text)))
            for call in message.get("tool_calls") or []:
                arguments = (call.get("function") or {}).get("arguments")
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    found.append(Violation("invalid tool call arguments",
                                           body=_error("invalid tool call arguments")))
        return found + super().reject(body)  # its own parser answers first

    def visible(self, body: dict[str, Any]) -> dict[str, Any]:
        self.loaded = True
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        tools = body.get("tools")
        last = len(messages) - 1
        keep_from = 0
        for i in range(last + 1):
            start = tool_block_start(messages, i)
            system = [m for m in messages[:start] if m.get("role") == "system"]
            if self.count(system + messages[start:], tools) <= self.num_ctx or i == last:
                keep_from = start
                break
        self.truncated.append(keep_from and sum(
            1 for m in messages[:keep_from] if m.get("role") != "system"))
        if keep_from == 0:
            return body
        system = [m for m in messages[:keep_from] if m.get("role") == "system"]
        return {**body, "messages": system + messages[keep_from:]}

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        return self.count(body.get("messages") or [], body.get("tools"))

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Step) -> None:
        if self.thinking:
            message["reasoning"] = "Let me think about what they said and what to do."
        if message.get("content") is None:
            message["content"] = ""

    def routes(self, app: web.Application) -> None:
        if not self.native_api:
            return
        from aiohttp import web

        async def show(request: web.Request) -> web.Response:
            body = await request.json()
            name = body.get("model") or body.get("name")
            if self.server is None or name not in (self.server.model,
                                                   f"{self.server.model}:latest"):
                return web.json_response({"error": f"model '{name}' not found"}, status=404)
            parameters = 'stop                           "<|im_start|>"\n' \
                         'stop                           "<|im_end|>"'
            if self.modelfile_num_ctx:
                parameters += f"\nnum_ctx                        {self.num_ctx}"
            return web.json_response({
                "parameters": parameters,
                "template": "{{- if .Messages }}...",
                "details": {"format": "gguf", "family": "qwen2", "parameter_size": "14.8B",
                            "quantization_level": "Q4_K_M"},
                "model_info": {"general.architecture": "qwen2",
                               "qwen2.context_length": self.trained_context,
                               "qwen2.embedding_length": 5120},
                "capabilities": ["completion", "tools"],
            })

        async def ps(request: web.Request) -> web.Response:
            models = []
            if self.loaded and self.server is not None:
                models.append({"name": self.server.model, "model": self.server.model,
                               "size": 10_000_000_000, "digest": "0" * 64,
                               "expires_at": "2030-01-01T00:00:00Z", "size_vram": 0,
                               "context_length": self.num_ctx})
            return web.json_response({"models": models})

        app.router.add_post("/api/show", show)
        app.router.add_get("/api/ps", ps)

    def model_entry(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 0, "owned_by": "library"}
