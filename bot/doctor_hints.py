"""What each provider's refusal means and what to change: the doctor's fixes, from the wordings
the servers really use (each cited where it is matched)."""

from __future__ import annotations

import re
from typing import Any

from bot.config import KNOWN_CONTEXT_WINDOWS, Settings

# A verdict's mark: works, will not work, works but worth knowing, not checked.
OK, FAIL, WARN, SKIP = "✓", "✗", "!", "-"


def error_text(body: Any, text: str) -> str:
    """The server's own message: OpenAI's {"error": {"message"}}, Ollama's {"error": "..."},
    vLLM's {"message"}, or the raw text."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            error = error.get("message") or error.get("detail") or error
        if isinstance(error, str) and error.strip():
            return _short(error)
    return _short(text) or "no message"


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


# A model the server does not serve. OpenAI: 404 code model_not_found "The model `x` does not
# exist or you do not have access to it." (also 400 "The requested model 'x' does not exist.");
# Groq the same wording; vLLM: 404 "The model `x` does not exist."; Ollama: 404 "model \"x\" not
# found, try pulling it first" (ollama/ollama-python#149, netease-youdao/QAnything#555); Gemini:
# 404 "models/x is not found for API version v1beta, or is not supported for generateContent"
# (google-gemini/gemini-cli#24131); Anthropic: 404 not_found_error "model: x"
# (anthropics/claude-code#5349); Mistral: 400 invalid_model "Invalid model: x"
# (mistralai/mistral-vibe#617). On chat completions a 404 that names a model is about it.
_MODEL_MISSING = re.compile(
    r"model_not_found|models?\W+\S*\W*(does not exist|not found|is not (found|available|supported))"
    r"|no such model|unknown model|invalid model|not a valid model", re.I)


def model_missing(status: int, text: str) -> bool:
    if status == 404:
        return "model" in text.lower()
    return status == 400 and bool(_MODEL_MISSING.search(text))


def model_fix(model: str, ids: list[str] | None, text: str) -> str:
    if "pulling it first" in text.lower():
        return f"run `ollama pull {model}` on the server, or set LLM_MODEL to a pulled model"
    if ids:
        shown = ", ".join(ids[:8]) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")
        return f"set LLM_MODEL to one the server serves: {shown}"
    return "set LLM_MODEL to a model this server serves (its GET /models lists them)"


def tools_fix(text: str) -> str:
    lowered = text.lower()
    if "--jinja" in lowered or "unsupported param: tools" in lowered:
        # llama.cpp: 500 "tools param requires --jinja flag" (observed, llama 0.6.0-dev);
        # older builds "Unsupported param: tools" (ggml-org/llama.cpp#10920).
        return "start llama-server with --jinja (and a model whose chat template supports tools)"
    if "enable-auto-tool-choice" in lowered or "tool-call-parser" in lowered:
        # vLLM: 400 '"auto" tool choice requires --enable-auto-tool-choice and
        # --tool-call-parser to be set' (langchain4j/langchain4j#3475; docs.vllm.ai tool calling).
        return ("start vLLM with --enable-auto-tool-choice --tool-call-parser <parser> (hermes"
                " for Qwen2.5/Hermes, llama3_json for Llama 3.1, mistral for Mistral)")
    if re.search(r"(does not|doesn't) support (tools|function|tool)", lowered) or (
            "tools are not supported" in lowered or "tool use is not supported" in lowered):
        # Ollama: 400 "registry.ollama.ai/library/gemma3:4b does not support tools"
        # (ollama/ollama#14795, louisho5/picobot#6): the model's template has no tools.
        return ("this model cannot call functions, which Mnemocord needs; pick one that can"
                " (on Ollama, models tagged 'tools', e.g. qwen2.5:14b or llama3.1:8b)")
    if "tool_choice" in lowered:
        return "set LLM_TOOL_CHOICE=auto (this server refuses the configured tool_choice)"
    return ("Mnemocord needs function calling: use a model and server that support OpenAI"
            " `tools` (see the README's provider table)")


def unreachable_fix(where: str) -> str:
    return (f"check LLM_BASE_URL ({where}) and that the server is running and reachable from"
            " here (Ollama: `ollama serve`, default http://localhost:11434/v1)")


def embedding_fix(settings: Settings, message: str) -> str:
    if settings.embedding_provider.strip().lower() == "local":
        return ("the local model is downloaded once into DATA_DIR/models; offline, set"
                " LOCAL_EMBEDDING_MODEL_DIR to a folder with model.onnx and tokenizer.json")
    if re.search(r"\b404\b|not found", message, re.I):
        if _MODEL_MISSING.search(message):
            return "set EMBEDDING_MODEL to an embedding model this endpoint serves"
        return ("this endpoint has no /embeddings: set EMBEDDING_BASE_URL to one that has,"
                " or use EMBEDDING_PROVIDER=local (runs on the CPU)")
    if re.search(r"\b40[13]\b", message):
        return "set EMBEDDING_API_KEY (or LLM_API_KEY) to a key the embedding endpoint accepts"
    return ("check EMBEDDING_BASE_URL, EMBEDDING_MODEL and EMBEDDING_API_KEY, or use"
            " EMBEDDING_PROVIDER=local")


def window_fix(tokens: int, at_least: int, source: str = "") -> str:
    """How to give the model at least `tokens` (a comfortable size): on the server the window
    came from, when known (bot.windows names it), else on each kind."""
    size = max(at_least, 1 << (tokens - 1).bit_length())
    ways = {
        "ollama": f"Ollama: OLLAMA_CONTEXT_LENGTH={size} (or PARAMETER num_ctx {size})",
        "llama": f"llama.cpp: -c {size}",
        "vllm": f"vLLM: --max-model-len {size}",
        "lm": f"LM Studio: load the model with a context length of {size}",
    }
    # First match wins, in this order ("ollama" holds "llama", "vllm" holds "lm").
    known = [way for key, way in ways.items() if key in source.lower().replace(" ", "")]
    return "; ".join(known[:1] or list(ways.values()))


def table_knows(model: str) -> bool:
    name = model.lower().rsplit("/", 1)[-1]
    return any(name.startswith(prefix) for prefix in KNOWN_CONTEXT_WINDOWS)


def model_ids(body: Any) -> list[str] | None:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]


def lists_model(ids: list[str], model: str) -> bool:
    # Ollama lists "name:latest" for "name"; Gemini lists "models/name".
    names = {i.removeprefix("models/") for i in ids}
    return model in names or f"{model}:latest" in names or model.removeprefix("models/") in names


def supports_tools(props: dict[str, Any]) -> bool | None:
    caps = props.get("chat_template_caps")
    if isinstance(caps, dict) and isinstance(caps.get("supports_tools"), bool):
        return bool(caps["supports_tools"])
    return None
