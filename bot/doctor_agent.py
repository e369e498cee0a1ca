"""The doctor's throwaway agent: real turns with the bot's own prompt and tools, in a temporary
data folder, so what the model does is what it would do for a user and nothing is kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bot.config import Settings
from bot.embeddings import Embedder, make_embedder
from bot.engine import AgentSpec, Engine
from bot.llm import Completion
from bot.messages import utcnow
from bot.tools import TOOL_SCHEMAS

AGENT_ID = "doctor:trial"


@dataclass
class TrialTurn:
    called: list[str] = field(default_factory=list)  # function names the model called
    replies: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass
class Trial:
    turns: list[TrialTurn]
    fixed_tokens: int  # instructions + core memory + function schemas, as the bot counts them


def _called(completion: Completion) -> list[str]:
    """The functions a completion called: in `tool_calls`, or written as text in the content
    (Hermes, Llama 3.1, Mistral formats), which the agent reads and runs the same way."""
    if completion.tool_calls:
        return [call.name for call in completion.tool_calls]
    try:
        from bot.textcalls import extract  # type: ignore[import-not-found]
    except ImportError:  # this version takes tool_calls only
        return []
    known = {schema["function"]["name"] for schema in TOOL_SCHEMAS}
    return [call.name for call in extract(completion.content, known).calls]


def trial_settings(settings: Settings, folder: Path, step_cap: int) -> Settings:
    """The user's settings with every piece of storage moved into `folder` (a remote Chroma
    included: the trial must not write into the user's collections)."""
    return settings.model_copy(update={
        "data_dir": folder, "database_path": None, "chroma_path": None, "chroma_host": None,
        "step_cap": step_cap, "recall_embeddings": "off",
        "llm_max_retries": min(settings.llm_max_retries, 1),
    })


async def trial_turns(settings: Settings, folder: Path, step_cap: int, texts: list[str],
                      embedder: Embedder) -> Trial:
    """One turn per text, from a new agent; which functions the model called in each."""
    engine = Engine(trial_settings(settings, folder, step_cap), embedder=embedder)
    seen: list[Completion] = []
    chat = engine.llm.chat

    async def recording(*args: Any, **kwargs: Any) -> Completion:
        completion = await chat(*args, **kwargs)
        seen.append(completion)
        return completion

    # On the instance, so the agent loop, the context window and the summarizer (which all
    # hold this one client) are recorded alike.
    engine.llm.chat = recording  # type: ignore[method-assign]
    turns: list[TrialTurn] = []
    async with engine:
        spec = AgentSpec(name=settings.default_persona.capitalize())
        for text in texts:
            seen.clear()
            result = await engine.send(AGENT_ID, text, sender_name="Ada", sender_id="1",
                                       spec=spec)
            turns.append(TrialTurn([name for done in seen for name in _called(done)],
                                   list(result.replies), list(result.notices)))
        agent = await engine.agent(AGENT_ID)
        fixed = engine.context.fixed_tokens(agent, utcnow())
    return Trial(turns, fixed)


def user_embedder(settings: Settings) -> tuple[Embedder, openai.AsyncOpenAI | None]:
    """The embedder the bot builds from these settings, and its HTTP client if it has one (both
    for the caller to close). A local model missing from DATA_DIR/models is downloaded there, as
    the bot itself would."""
    client = None
    if settings.embedding_provider.strip().lower() == "openai":
        key = settings.embedding_api_key or settings.llm_api_key
        client = openai.AsyncOpenAI(
            base_url=settings.embedding_base_url or settings.llm_base_url,
            api_key=key.get_secret_value() or "not-needed", timeout=settings.llm_timeout,
            max_retries=0, http_client=openai.DefaultAioHttpClient(timeout=settings.llm_timeout))
    embedder = make_embedder(
        settings.embedding_provider, model_dir=settings.local_embedding_model_dir,
        cache_dir=settings.models_dir, openai_client=client,
        openai_model=settings.embedding_model,
        openai_max_input_tokens=settings.embedding_max_input_tokens)
    return embedder, client
