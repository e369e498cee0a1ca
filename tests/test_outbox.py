"""The outbox keeps delivered replies only for a bounded window; undelivered ones until sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.config import Settings
from bot.engine import Engine
from bot.messages import iso, utcnow
from tests.conftest import SPEC
from tests.llm_server import ScriptedLLM, call


async def _reply(engine: Engine, llm: ScriptedLLM, text: str, target: str) -> list[str]:
    llm.push(call("send_message", message=text))
    result = await engine.send("dm:1", f"asking for {text}", sender_name="Alice",
                               external_id=target, spec=SPEC)
    assert result.outbox, "a message with an external id is answered through the outbox"
    return [item.id for item in result.outbox]


async def _ids(engine: Engine) -> set[str]:
    return {row[0] for row in await engine.store.fetchall("SELECT id FROM outbox")}


async def test_delivered_replies_are_pruned_after_the_window(
    make_settings: Callable[..., Settings], llm: ScriptedLLM,
) -> None:
    settings = make_settings()
    assert settings.outbox_keep_delivered_minutes == 60  # the default window
    async with Engine(settings) as engine:
        old = await _reply(engine, llm, "old", "10:1")
        await engine.mark_delivered(old)
        stuck = await _reply(engine, llm, "stuck", "10:2")  # never delivered
        two_hours_ago = iso(utcnow() - timedelta(hours=2))
        await engine.store.commit([
            ("UPDATE outbox SET delivered_at=? WHERE delivered_at IS NOT NULL", (two_hours_ago,)),
            ("UPDATE outbox SET created_at=?", (two_hours_ago,)),
        ])
        recent = await _reply(engine, llm, "recent", "10:3")
        await engine.mark_delivered(recent)
        kept = await _ids(engine)
        assert not set(old) & kept, "a reply delivered 2 hours ago is still stored"
        assert set(recent) <= kept, "a reply delivered just now is kept for the nonce window"
        assert set(stuck) <= kept, "an undelivered reply must wait until it is delivered"
        assert [item.id for _, item in await engine.undelivered()] == stuck


async def test_the_window_is_configurable(make_settings: Callable[..., Settings],
                                          llm: ScriptedLLM) -> None:
    async with Engine(make_settings(outbox_keep_delivered_minutes=0)) as engine:
        first = await _reply(engine, llm, "first", "10:1")
        await engine.mark_delivered(first)
        assert await _ids(engine) == set()  # 0 = drop a reply as soon as it is delivered
