"""The bot's requests are valid for the model family it is configured with.

OpenAI's reasoning models (o1, o3, o4-mini, gpt-5) refuse `max_tokens` and any temperature but the
default (tests/openai_rules.py cites the errors). Configured with one of them, every turn would
fail with HTTP 400.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.engine import Engine
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call


@pytest.mark.parametrize("model", ["gpt-4o-mini", "o3-mini", "o1", "o4-mini", "gpt-5-mini",
                                   "gpt-5.1", "gpt-5-chat-latest"])
async def test_a_turn_is_valid_for_the_configured_model(
    make_settings: Callable[..., Settings], llm: ScriptedLLM, model: str
) -> None:
    llm.push(call("send_message", message="Hello!"))
    async with Engine(make_settings(llm_model=model)) as engine:
        result = await engine.send("cli:a", "hi", spec=SPEC)
    assert llm.take_violations() == []
    assert result.replies == ["Hello!"], result.notices
    (request,) = llm.requests
    assert request["model"] == model
    budget = request.get("max_tokens") or request.get("max_completion_tokens")
    # The response budget is still sent, under the name the model takes; a reasoning model's
    # has room for its reasoning on top (LLM_REASONING_TOKENS).
    assert budget == (1024 + 8192 if "max_completion_tokens" in request else 1024)
