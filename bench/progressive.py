"""Progressive delivery: the first message of a multi-step turn, through Discord.

A person DMs the bot; the model (1 s per request) first answers send_message("let me look")
plus an archival search with a heartbeat, then the answer. Measured from the emulator
dispatching MESSAGE_CREATE to each bot message being stored by its REST API, once with the
replies delivered after the whole turn (how the bot worked before: the chat cog delivers the
turn's outbox when the turn is over) and once as each step ends (the cog's courier).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Dist, Section
from bench.driver import engine_on
from bot.agent import Courier, TurnResult
from bot.discordbot.bot import Mnemocord
from bot.engine import Engine
from bot.messages import Message
from tests.discord_emulator import DiscordEmulator, run_client
from tests.llm_server import ScriptedLLM, Step, call, calls, say

LATENCY = 1.0
LOOK = "let me look"


def model(request: dict[str, Any]) -> Step:
    if "tools" not in request:
        return say("Summary: we talked about meetings.")
    if request["messages"][-1]["role"] == "tool":  # the search's result: now the answer
        return call("send_message", message="Nothing in my notes yet: when is it?")
    return calls([("send_message", {"message": LOOK}),
                  ("archival_memory_search", {"query": "meeting", "request_heartbeat": True})])


def whole_turn(engine: Engine) -> None:
    """Replies after the turn: the engine gets no courier, the cog delivers the outbox."""
    answer = engine.answer

    async def without_courier(message: Message, on_event: Any = None,
                              courier: Courier | None = None) -> TurnResult:
        return await answer(message, on_event)

    engine.answer = without_courier  # type: ignore[method-assign]


async def _measure(progressive: bool, rounds: int) -> tuple[list[float], list[float]]:
    firsts: list[float] = []
    lasts: list[float] = []
    async with ScriptedLLM(latency=LATENCY) as llm:
        llm.handler = model
        emu = DiscordEmulator(bot_name="Mnemocord")
        await emu.start()
        person = emu.create_user("person", global_name="Person")
        channel = emu.dm_channel(person)
        try:
            async with engine_on(llm.base_url, discord_token="bench") as bench:
                if not progressive:
                    whole_turn(bench.engine)
                async with run_client(emu, Mnemocord(bench.engine, bench.engine.settings)):
                    for index in range(rounds + 1):  # the first creates the agent
                        started = time.perf_counter()
                        sent = await emu.user_sends_dm(person, f"when is the meeting? ({index})")
                        await emu.wait_for_bot_message(channel, after=sent)
                        first = time.perf_counter() - started
                        await emu.wait_for(lambda s=sent: len(
                            [m for m in emu.bot_messages(channel) if m.seq > s.seq]) >= 2,
                            30.0, "the answer")
                        if index:
                            firsts.append(first)
                            lasts.append(time.perf_counter() - started)
        finally:
            await emu.stop()
    return firsts, lasts


async def run(quick: bool) -> Section:
    rounds = 2 if quick else 10
    section = Section("First message of a 3-step turn", (
        f"{rounds} DMs, one at a time; the LLM answers each request after {LATENCY:.0f} s;"
        " each turn: send_message + archival search (heartbeat), then the answer; from"
        " MESSAGE_CREATE dispatched to the bot message stored by the emulator's REST API"))
    for label, progressive in (("after the whole turn", False), ("as each step ends", True)):
        firsts, lasts = await _measure(progressive, rounds)
        first, last = Dist.of(firsts), Dist.of(lasts)
        key = "progressive" if progressive else "whole_turn"
        section.say(f"replies {label}: first message p50 {first.p50 / 1000:.2f} s"
                    f" (max {first.max / 1000:.2f} s), answer p50 {last.p50 / 1000:.2f} s")
        section.figures[f"{key}_first_p50_s"] = round(first.p50 / 1000, 3)
        section.figures[f"{key}_first_max_s"] = round(first.max / 1000, 3)
        section.figures[f"{key}_answer_p50_s"] = round(last.p50 / 1000, 3)
    return section
