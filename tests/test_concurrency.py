"""Per-agent ordering and cross-agent concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.engine import Engine
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call, last_user_text
from tests.turns import is_person


async def test_a_slow_agent_never_delays_another(engine: Engine, llm: ScriptedLLM) -> None:
    release_slow = asyncio.Event()

    async def handler(request: dict[str, Any]):
        if "slow question" in last_user_text(request):
            await release_slow.wait()
            return call("send_message", message="slow answer")
        return call("send_message", message="fast answer")

    llm.handler = handler
    slow = asyncio.create_task(engine.send("cli:slow", "slow question", spec=SPEC))
    await llm.wait_for_requests(1)
    fast = await engine.send("cli:fast", "fast question", spec=SPEC)
    assert fast.replies == ["fast answer"] and not slow.done()
    release_slow.set()
    assert (await slow).replies == ["slow answer"]


async def test_messages_to_one_agent_are_processed_in_order(
    engine: Engine, llm: ScriptedLLM
) -> None:
    release = asyncio.Event()
    seen: list[list[str]] = []

    async def handler(request: dict[str, Any]):
        users = [m["content"] for m in request["messages"] if m["role"] == "user"]
        seen.append(users)
        if len(seen) == 1:
            await release.wait()
        return call("send_message", message=f"answer {len(seen)}")

    llm.handler = handler
    await engine.agent("cli:a", SPEC)
    first = asyncio.create_task(engine.send("cli:a", "first", spec=SPEC))
    await llm.wait_for_requests(1)
    accepted = [await engine.accept("cli:a", t) for t in ("second", "third")]
    later = [asyncio.create_task(engine.answer(m)) for m in accepted]
    release.set()
    results = await asyncio.gather(first, *later)
    assert results[0].replies == ["answer 1"]
    # The two messages that waited are answered together, in order, in one turn.
    assert results[1] is results[2] and results[1].replies == ["answer 2"]
    texts = [u for u in seen[1] if is_person(u)]
    assert ["first" in texts[0], "second" in texts[1], "third" in texts[2]] == [True] * 3
    assert llm.chat_calls == 2
