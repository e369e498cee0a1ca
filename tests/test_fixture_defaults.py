"""The default test fixture runs what a user runs by default: the local ONNX embedder."""

from __future__ import annotations

from bot.config import Settings
from bot.embeddings import LocalEmbedder
from bot.engine import Engine
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call


async def test_default_settings_use_the_production_embedder(settings: Settings,
                                                            llm: ScriptedLLM) -> None:
    assert settings.embedding_provider == Settings.model_fields["embedding_provider"].default
    assert settings.recall_embeddings == Settings.model_fields["recall_embeddings"].default
    llm.push(call("archival_memory_insert", content="Pixel is a grey cat.",
                  request_heartbeat=True), call("send_message", message="Saved."))
    async with Engine(settings) as engine:
        assert isinstance(engine.embedder, LocalEmbedder)
        assert engine.recall_indexer is not None  # recall by meaning, as "auto" means locally
        await engine.send("cli:a", "remember my cat", spec=SPEC)
        found = await engine.search_archival("cli:a", "what pet do I have?")
        assert [p.text for p in found.items] == ["Pixel is a grey cat."]
        assert engine.embedder.load_count == 1
    assert llm.embedding_requests == []  # nothing went to the scripted endpoint
