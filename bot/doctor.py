"""`mnemocord doctor`: will the configured model work? One verdict line per check, with the fix.

The quick checks (also run by `mnemocord discord` before it connects) talk HTTP to the endpoint
with the smallest requests that tell: reachable, key valid, model served, tools accepted. The
full run then lets a throwaway agent (in a temporary data folder: nothing reaches the user's
memory) take real turns with the bot's own system prompt and tools, to see whether the model
answers through `send_message` and stores a fact with a memory function; asks the server for its
real context window; tries streaming; and embeds a string with the configured embedder.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from bot import redact
from bot.config import Settings
from bot.doctor_agent import trial_turns, user_embedder
from bot.doctor_hints import (
    FAIL,
    OK,
    SKIP,
    WARN,
    embedding_fix,
    error_text,
    lists_model,
    model_fix,
    model_ids,
    model_missing,
    supports_tools,
    tools_fix,
    unreachable_fix,
)
from bot.doctor_window import room_needed, server_window, window_verdict
from bot.embeddings import Embedder, EmbeddingError
from bot.llm import LLMClient
from bot.tools import TOOL_SCHEMAS

log = logging.getLogger(__name__)

MEMORY_FUNCTIONS = {"core_memory_append", "core_memory_replace", "archival_memory_insert"}
GREETING = "Hi! I'm Ada, nice to meet you. Please say hello back."
FACT = "Please remember this for later: my favourite colour is teal."
# The throwaway agent's turns stop here: enough for a memory edit, its heartbeat and a reply.
DOCTOR_STEP_CAP = 4


@dataclass
class Verdict:
    check: str
    mark: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.mark == FAIL

    def line(self) -> str:
        text = f"{self.mark} {self.check}: {self.detail}"
        return redact.redact(f"{text} — fix: {self.fix}" if self.fix else text)


@dataclass
class _Answer:
    """One HTTP exchange: status 0 means no answer at all."""

    status: int
    body: Any = None
    text: str = ""
    error: str = ""  # why there was no answer


class Doctor:
    """Runs the checks against `settings`; `report` gets each verdict as soon as it is known."""

    def __init__(self, settings: Settings, *, report: Callable[[Verdict], None] | None = None,
                 probe_timeout: float = 15.0) -> None:
        self.settings = settings
        self.report = report
        self.probe_timeout = probe_timeout
        self.verdicts: list[Verdict] = []
        self.where = redact.redact(settings.llm_base_url)
        self._key = settings.llm_api_key.get_secret_value().strip()
        redact.protect([self._key])
        self._client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url.rstrip("/"), api_key=self._key or "not-needed",
            timeout=settings.llm_timeout, max_retries=0,
            http_client=openai.DefaultAioHttpClient(timeout=settings.llm_timeout),
        )
        self._shape = LLMClient.from_settings(settings)  # builds requests, sends none
        self._fixed_tokens: int | None = None  # instructions + memory + tools, measured
        self._embedding: tuple[Embedder, Any] | None = None  # (embedder, its HTTP client)

    async def __aenter__(self) -> Doctor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()
        await self._shape.aclose()
        if self._embedding is not None:
            embedder, client = self._embedding
            await embedder.aclose()
            if client is not None:
                await client.close()

    @property
    def passed(self) -> bool:
        return not any(v.failed for v in self.verdicts)

    def _add(self, check: str, mark: str, detail: str, fix: str = "") -> Verdict:
        # Servers echo keys in their errors: a verdict never holds one, printed or not.
        verdict = Verdict(check, mark, redact.redact(detail), redact.redact(fix))
        self.verdicts.append(verdict)
        if self.report is not None:
            self.report(verdict)
        return verdict

    def _skip(self, checks: list[str], why: str) -> None:
        for check in checks:
            self._add(check, SKIP, f"not checked ({why})")

    # --- HTTP -------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                       limit: float | None = None) -> _Answer:
        options: dict[str, Any] = {"timeout": limit or self.settings.llm_timeout}
        try:
            if method == "GET":
                raw = await self._client.get(path, cast_to=bytes, options=options)
            else:
                raw = await self._client.post(path, cast_to=bytes, body=body, options=options)
        except openai.APIStatusError as error:
            return _Answer(error.status_code, _json(error.response.content),
                           error.response.content.decode("utf-8", "replace")[:2000])
        except (openai.APIConnectionError, TimeoutError):
            # The SDK's aiohttp transport reports a refused connection as a time-out too.
            wait = limit or self.settings.llm_timeout
            return _Answer(0, error=f"connection refused or dropped, or no answer in {wait:g} s")
        except Exception as error:  # e.g. the HTTP client refusing a URL with user:password@
            return _Answer(0, error=redact.redact(str(error)) or type(error).__name__)
        return _Answer(200, _json(raw), raw.decode("utf-8", "replace")[:2000])

    def _chat_body(self, content: str, *, tools: bool, max_tokens: int = 32) -> dict[str, Any]:
        # The bot's own request parameters (token field, temperature, reasoning room): the
        # verdict is about the requests the bot will send.
        body = self._shape.request_head(max_tokens=max_tokens, tools=tools)
        body["messages"] = [{"role": "user", "content": content}]
        if tools:
            body["tools"] = TOOL_SCHEMAS
        return body

    # --- the quick checks ---------------------------------------------------------------------

    async def quick(self) -> bool:
        """reachable, key, model, tools; whether none of them failed."""
        listed = await self._request("GET", "/models", limit=self.probe_timeout)
        if listed.status == 0:
            self._add("reachable", FAIL, self._unreachable(listed), unreachable_fix(self.where))
            self._skip(["key", "model", "tools"], "the server is unreachable")
            return False
        plain = await self._request("POST", "/chat/completions",
                                    self._chat_body("Reply with the word OK.", tools=False))
        if plain.status == 0:
            self._add("reachable", FAIL, self._unreachable(plain), unreachable_fix(self.where))
            self._skip(["key", "model", "tools"], "the server stopped answering")
            return False
        if plain.status in (404, 405) and not model_missing(plain.status, plain.text):
            self._add("reachable", FAIL, f"{self.where} answers, but has no /chat/completions"
                      f" ({plain.status})", "LLM_BASE_URL is the part before /chat/completions;"
                      " it usually ends in /v1 (e.g. http://localhost:11434/v1)")
            self._skip(["key", "model", "tools"], "no chat endpoint")
            return False
        self._add("reachable", OK, f"{self.where} answers")
        if not self._key_check(listed, plain):
            self._skip(["model", "tools"], "the key was refused")
            return False
        if not self._model_check(listed, plain):
            self._skip(["tools"], "the model is not usable")
            return False
        return await self._tools_check()

    def _unreachable(self, answer: _Answer) -> str:
        return f"cannot reach the LLM server at {self.where} ({answer.error})"

    def _key_check(self, listed: _Answer, plain: _Answer) -> bool:
        refused = next((a for a in (plain, listed) if a.status in (401, 403)), None)
        if refused is None:
            self._add("key", OK, "accepted" if self._key else "none set, and none needed")
            return True
        if not self._key:
            self._add("key", FAIL, f"the server wants an API key ({refused.status})",
                      "set LLM_API_KEY to a key from the provider's console")
        else:
            self._add("key", FAIL, f"the server rejected LLM_API_KEY ({refused.status}:"
                      f" {error_text(refused.body, refused.text)})",
                      "copy a valid key for this provider into LLM_API_KEY (no quotes or spaces;"
                      " a 403 can also mean the key lacks access to this model)")
        return False

    def _model_check(self, listed: _Answer, plain: _Answer) -> bool:
        model = self.settings.llm_model
        ids = model_ids(listed.body) if listed.status == 200 else None
        if model_missing(plain.status, plain.text):
            self._add("model", FAIL, f"{model!r} is not served here"
                      f" ({plain.status}: {error_text(plain.body, plain.text)})",
                      model_fix(model, ids, plain.text))
            return False
        if plain.status != 200:
            self._add("model", FAIL, f"a plain chat request with {model!r} was refused"
                      f" ({plain.status}: {error_text(plain.body, plain.text)})",
                      "see the server's message; check LLM_MODEL and the settings in the"
                      " README's provider table")
            return False
        if not _is_completion(plain.body):
            self._add("model", FAIL, f"{self.where} answered, but not with a chat completion",
                      "point LLM_BASE_URL at an OpenAI-compatible API (it usually ends in /v1)")
            return False
        if ids is not None and not lists_model(ids, model):
            self._add("model", OK, f"{model!r} answers (GET /models does not list it)")
        else:
            self._add("model", OK, f"{model!r} answers")
        return True

    async def _tools_check(self) -> bool:
        answer = await self._request("POST", "/chat/completions", self._chat_body(
            "Say hello by calling send_message.", tools=True))
        if answer.status != 200:
            message = error_text(answer.body, answer.text)
            self._add("tools", FAIL, f"a request with the bot's {len(TOOL_SCHEMAS)} functions"
                      f" was refused ({answer.status}: {message})", tools_fix(answer.text))
            return False
        caps = await self._request("GET", _server_root(self.settings.llm_base_url) + "/props",
                                   limit=self.probe_timeout)
        if isinstance(caps.body, dict) and supports_tools(caps.body) is False:
            # llama.cpp with a template without tools takes them and drops them silently
            # (observed: ../shared/PROVIDERS.md; /props chat_template_caps).
            self._add("tools", FAIL, "accepted, but llama.cpp's chat template for this model"
                      " has no tool support: the model never sees the functions",
                      "use a model whose chat template supports tools, or give llama-server one"
                      " with --chat-template-file (--jinja must be on)")
            return False
        self._add("tools", OK, f"a request with the bot's {len(TOOL_SCHEMAS)} functions is"
                  " accepted")
        return True

    # --- the full run -------------------------------------------------------------------------

    async def full(self) -> bool:
        """Every check; whether all required ones passed."""
        quick = await self.quick()
        # Asked first: a window too small for the trial explains what the model did in it.
        window = await server_window(self.settings, self._key, self.probe_timeout)
        if quick:
            try:
                await self._agent_checks(window[0])
            except Exception as error:  # the trial's own storage, say: a line, not a traceback
                log.exception("the doctor's trial conversation failed")
                self._add("send_message", FAIL, f"the trial conversation failed:"
                          f" {redact.redact(str(error))[:200] or type(error).__name__}",
                          "see the log line above; the checks before it passed")
                self._skip(["memory"], "the trial conversation failed")
        else:
            self._skip(["send_message", "memory"], "the quick checks failed")
        self._add("context window", *window_verdict(self.settings, *window,
                                                     self._fixed_tokens))
        if any(v.check == "model" and v.mark == OK for v in self.verdicts):
            await self._stream_check()
        else:
            self._skip(["streaming"], "no usable model")
        await self._embedding_check()
        return self.passed

    def _embedder(self) -> Embedder:
        """The embedder the bot would use (built once: the trial agent shares it)."""
        if self._embedding is None:
            self._embedding = user_embedder(self.settings)
        return self._embedding[0]

    async def _agent_checks(self, window: int | None) -> None:
        with tempfile.TemporaryDirectory(prefix="mnemocord-doctor-") as folder:
            trial = await trial_turns(self.settings, Path(folder), DOCTOR_STEP_CAP,
                                      [GREETING, FACT], self._embedder())
        self._fixed_tokens = trial.fixed_tokens
        greet, remember = trial.turns
        if "send_message" in greet.called:
            self._add("send_message", OK, f"the model answered through send_message:"
                      f" {_quote(greet.replies)}")
        elif greet.replies and self.settings.plain_text_replies:
            self._add("send_message", WARN, "the model answered in plain text, not through"
                      f" send_message: {_quote(greet.replies)}", "PLAIN_TEXT_REPLIES=true"
                      " delivers it, but a model that does not call functions will not use its"
                      " memory; prefer a model with function calling")
        else:
            said = f" ({greet.notices[0]})" if greet.notices else ""
            self._add("send_message", FAIL, f"the model gave no reply through send_message{said}",
                      "use a model that supports function calling (see the README's provider"
                      " table)")
        stored = sorted(MEMORY_FUNCTIONS & set(remember.called))
        if stored:
            self._add("memory", OK, f"asked to remember a fact, the model called"
                      f" {', '.join(stored)}")
        else:
            how = (f"called only {', '.join(sorted(set(remember.called)))}" if remember.called
                   else "called no function")
            problem = f"; {remember.notices[0]}" if remember.notices else ""
            fix = ("long-term memory needs a model that calls functions reliably: try a larger"
                   " instruction-tuned model with tool support")
            if window is not None and window < room_needed(self.settings, self._fixed_tokens):
                fix = (f"first give the model a larger window (the server runs {window} tokens,"
                       " see the context window line), then run the doctor again")
            self._add("memory", FAIL, f"asked to remember a fact, the model {how}{problem}", fix)

    async def _stream_check(self) -> None:
        body = self._chat_body("Count from one to five.", tools=False)
        try:
            stream = await self._client.chat.completions.create(**body, stream=True)
            chunks = 0
            async for _ in stream:
                chunks += 1
        except openai.APIStatusError as error:
            text = error.response.content.decode("utf-8", "replace")
            self._add("streaming", WARN, f"stream=true was refused ({error.status_code}:"
                      f" {error_text(_json(error.response.content), text)})",
                      "none needed: Mnemocord does not stream; other clients of this server may")
            return
        except Exception as error:  # a broken event stream: worth knowing, not fatal here
            self._add("streaming", WARN, f"the streamed answer could not be read"
                      f" ({redact.redact(str(error))[:200]})", "none needed: Mnemocord does not"
                      " stream")
            return
        if chunks == 0:
            self._add("streaming", WARN, "stream=true returned no chunks",
                      "none needed: Mnemocord does not stream")
        else:
            self._add("streaming", OK, f"the answer arrived as {chunks} server-sent chunks")

    async def _embedding_check(self) -> None:
        try:
            embedder = self._embedder()
        except ValueError as error:
            self._add("embeddings", FAIL, str(error), "check EMBEDDING_PROVIDER (local or openai)")
            return
        try:
            vectors = await embedder.embed(["Mnemocord doctor: is the embedder working?"])
        except (EmbeddingError, OSError, RuntimeError) as error:
            message = redact.redact(str(error))[:300]
            self._add("embeddings", FAIL, f"{embedder.model_id} could not embed a string:"
                      f" {message}", embedding_fix(self.settings, message))
            return
        self._add("embeddings", OK, f"{embedder.model_id} embeds text"
                  f" ({len(vectors[0])} dimensions)")




def _json(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw)
    except ValueError:
        return None




def _is_completion(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("choices"), list)



def _server_root(base_url: str) -> str:
    """`/props` (llama.cpp) lives at the server's root, not under /v1 (an absolute URL: the
    client sends it as it is)."""
    base = base_url.rstrip("/")
    return base.removesuffix("/v1")


def _quote(replies: list[str]) -> str:
    text = " ".join(replies).strip().replace("\n", " ")
    return repr(text[:60] + ("…" if len(text) > 60 else ""))
