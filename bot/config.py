"""Settings, read from the environment and `.env` (every field is documented in .env.example)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# Context windows of common models, matched by prefix (longest first); LLM_CONTEXT_WINDOW overrides.
KNOWN_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4-32k": 32_768,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4": 200_000,
    "llama3.1": 128_000,
    "llama3.2": 128_000,
    "llama3.3": 128_000,
    "llama3": 8_192,
    "qwen2.5": 32_768,
    "qwen3": 40_960,
    "mistral": 32_768,
    "mixtral": 32_768,
    "gemma2": 8_192,
    "gemma3": 128_000,
    "deepseek": 64_000,
}
DEFAULT_CONTEXT_WINDOW = 8_192


def context_window_for(model: str) -> int:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix in sorted(KNOWN_CONTEXT_WINDOWS, key=len, reverse=True):
        if name.startswith(prefix):
            return KNOWN_CONTEXT_WINDOWS[prefix]
    return DEFAULT_CONTEXT_WINDOW


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # --- LLM (any OpenAI-compatible endpoint) ---
    llm_base_url: str = "https://api.openai.com/v1"
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = "gpt-4o-mini"
    llm_context_window: int | None = None
    # Most tokens a call carries, whatever the model's window (cost: a 1M-token model would
    # otherwise carry ~730k a call); 0 = the model's whole window.
    llm_working_context: int = Field(default=32000, ge=0)
    # None (empty): not sent, the model's own default; never sent to OpenAI's reasoning models.
    llm_temperature: float | None = Field(default=None, ge=0, le=2)
    llm_max_response_tokens: int = 1024
    # Room for reasoning on top of the answer's budget, for models that think first (bot/llm.py);
    # at most a quarter of the context window.
    llm_reasoning_tokens: int = Field(default=8192, ge=0)
    llm_timeout: float = 60.0
    llm_max_retries: int = 3
    llm_retry_backoff: float = Field(default=0.5, ge=0)
    llm_max_concurrency: int = 16
    llm_tool_choice: str = "auto"
    # Stream answers (`stream: true`) so Discord shows a reply while the model writes it.
    llm_stream: bool = True

    # --- Embeddings for archival memory ---
    embedding_provider: str = "local"
    embedding_model: str = "text-embedding-3-small"
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    local_embedding_model_dir: Path | None = None
    # Tokens one input of the OpenAI-compatible embedding model takes (longer ones are clipped,
    # documents cut below it); None = 8191 for OpenAI's text-embedding models, else 512.
    embedding_max_input_tokens: int | None = Field(default=None, ge=16)
    # Recall search by meaning as well as keywords: auto = when embeddings are local.
    recall_embeddings: Literal["auto", "on", "off"] = "auto"

    # --- Storage ---
    data_dir: Path = Path("data")
    database_path: Path | None = None
    chroma_path: Path | None = None
    chroma_host: str | None = None
    chroma_port: int = 8000
    # The embedded Chroma runs in its own process and keeps every agent index it has loaded;
    # past this many MiB it is restarted at a quiet moment, at most every 10 minutes (0 = never).
    chroma_memory_limit_mb: int = Field(default=1024, ge=0)
    # Delivered replies stay in the outbox this long (what a re-delivery check can look back
    # on), then are deleted; undelivered ones stay until delivered.
    outbox_keep_delivered_minutes: int = Field(default=60, ge=0)
    # Seconds one Chroma call may take; past it the call fails and Chroma's process restarts.
    chroma_timeout: float = Field(default=60.0, gt=0)

    # --- Agent behaviour ---
    personas_dir: Path = REPO_ROOT / "personas"
    default_persona: str = "sam"
    default_human: str = "basic"
    core_memory_limit: int = Field(default=2000, ge=100)
    # Per-person core memory in a shared channel (bot/memory/people.py): each block's character
    # limit, and how many of the most recent speakers' blocks are in context.
    person_block_limit: int = Field(default=500, ge=50, le=10_000)
    people_in_context: int = Field(default=8, ge=1, le=100)
    step_cap: int = Field(default=10, ge=1, le=100)
    tool_output_limit: int = Field(default=3000, ge=200)
    # Text with no function call as the reply to a person's message (bot/steps.py, _plain_answer).
    plain_text_replies: bool = True
    # Observe mode: at most this many overheard messages wait in context for the next turn.
    observe_context_messages: int = Field(default=30, ge=1)
    timezone: str = "UTC"
    context_warning_fraction: float = Field(default=0.75, gt=0, lt=1)
    context_flush_fraction: float = Field(default=0.9, gt=0, le=1)
    context_target_fraction: float = Field(default=0.5, gt=0, lt=1)
    keep_last_messages: int = Field(default=4, ge=1)
    max_loaded_agents: int = Field(default=1000, ge=1)
    log_level: str = "INFO"

    # --- Discord ---
    discord_token: SecretStr = SecretStr("")
    discord_owner_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    discord_shards: int | None = None

    @field_validator("discord_owner_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(",", " ").split()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Checked here, so every command stops at startup with one line instead of a traceback
        # from deep inside the engine. "Europe" (a folder) raises IsADirectoryError, "../x" and
        # "" raise ValueError, an unknown name ZoneInfoNotFoundError.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"{value!r} is not a known time zone; use an IANA name such as"
                             " Europe/Berlin, America/New_York or UTC") from None
        return value

    @cached_property
    def context_window(self) -> int:
        return self.llm_context_window or context_window_for(self.llm_model)

    @property
    def db_path(self) -> Path:
        return self.database_path or self.data_dir / "mnemocord.db"

    @property
    def chroma_dir(self) -> Path:
        return self.chroma_path or self.data_dir / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"
