"""LM Studio's local server (OpenAI-compatible `/v1`, its REST API `/api/v0`).

- `GET /api/v0/models/{model}` (LM Studio 0.3.6+; lmstudio.ai/docs/api/rest-api, "REST API
  v0", lmstudio-ai/docs 1_developer/2_rest/endpoints.mdx): `state` "loaded" / "not-loaded",
  `max_context_length` (the model's), and for a loaded model `loaded_context_length` (what it
  was loaded with: 4096 unless set in the app or with `lms load --context-length`).
- A prompt over the loaded context is not refused: lmstudio-ai/lmstudio-bug-tracker#1806 (0.4.11,
  "12526/4096" tokens processed "without any error warning"). Which part the model still sees
  is not documented; the profile keeps the system messages and the newest messages, as Ollama
  does (tests/providers/ollama.py), and reports the count of what it kept: as silent as the
  real one.
- `tool_choice` is not documented as enforced: treated as ignored (the stricter case).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tests.openai_rules import Violation
from tests.providers import Provider, register
from tests.providers.ollama import Ollama

if TYPE_CHECKING:
    from aiohttp import web


@register
class LmStudio(Ollama):
    name = "lmstudio"
    model = "qwen2.5-7b-instruct"
    honours_tool_choice = False
    settings: ClassVar[dict[str, Any]] = {"llm_api_key": "lm-studio"}
    trained_context = 32768

    def __init__(self, loaded_context: int = 4096, *, native_api: bool = True) -> None:
        super().__init__(num_ctx=loaded_context, native_api=native_api)

    def reject(self, body: dict[str, Any]) -> list[Violation]:
        return Provider.reject(self, body)

    def shape(self, body: dict[str, Any], message: dict[str, Any], step: Any) -> None:
        return None

    def routes(self, app: web.Application) -> None:
        if not self.native_api:
            return
        from aiohttp import web

        def entry() -> dict[str, Any]:
            assert self.server is not None
            info: dict[str, Any] = {
                "id": self.server.model, "object": "model", "type": "llm",
                "publisher": "lmstudio-community", "arch": "qwen2",
                "compatibility_type": "gguf", "quantization": "Q4_K_M",
                "state": "loaded" if self.loaded else "not-loaded",
                "max_context_length": self.trained_context,
            }
            if self.loaded:
                info["loaded_context_length"] = self.num_ctx
            return info

        async def one(request: web.Request) -> web.Response:
            if self.server is None or request.match_info["model"] != self.server.model:
                return web.json_response({"error": "Model not found"}, status=404)
            return web.json_response(entry())

        async def listing(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [entry()]})

        app.router.add_get("/api/v0/models", listing)
        app.router.add_get("/api/v0/models/{model}", one)

    def model_entry(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "owned_by": "organization_owner"}
