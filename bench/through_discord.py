"""Through Discord: a person's MESSAGE_CREATE to the bot's reply posted, with the real discord.py
client against the test emulator (tests/discord_emulator) and a zero-latency LLM."""

from __future__ import annotations

import random
import time
from typing import Any

from bench.common import Dist, Section
from bench.driver import engine_on
from bench.llm_proc import LLMProcess
from bench.words import user_text
from bot.discordbot.bot import Mnemocord
from bot.llm import Completion
from tests.discord_emulator import DiscordEmulator, run_client


async def run(quick: bool) -> Section:
    people, rounds = (4, 5) if quick else (10, 30)
    section = Section("Through Discord", (
        f"{people} people each DM the bot {rounds} times, one message in flight at a time;"
        " time from the emulator dispatching MESSAGE_CREATE on the gateway to the reply being"
        " stored by its REST API; the emulator runs in the measured process (its own work is"
        " included), the LLM in another"))
    emu = DiscordEmulator(bot_name="Mnemocord")
    await emu.start()
    users = [emu.create_user(f"person{i}", global_name=f"Person {i}") for i in range(people)]
    rng = random.Random(2)
    latencies: list[float] = []
    llm_waits: list[float] = []
    try:
        async with LLMProcess(0.0) as llm, engine_on(llm.base_url,
                                                     discord_token="bench") as bench:
            engine = bench.engine
            waits: list[float] = []
            chat = engine.llm.chat

            async def timed_chat(*args: Any, **kwargs: Any) -> Completion:
                completion = await chat(*args, **kwargs)
                waits.append(completion.wait_seconds)
                return completion

            engine.llm.chat = timed_chat  # type: ignore[method-assign]
            async with run_client(emu, Mnemocord(engine, engine.settings)):
                for index in range(rounds + 1):
                    for person in users:
                        channel = emu.dm_channel(person)
                        text = user_text("plain", index, rng)
                        waits.clear()
                        started = time.perf_counter()
                        sent = await emu.user_sends_dm(person, text)
                        await emu.wait_for_bot_message(channel, after=sent)
                        if index:  # the first round creates the agents
                            latencies.append(time.perf_counter() - started)
                            llm_waits.append(sum(waits))
    finally:
        await emu.stop()
    dist = Dist.of(latencies)
    own = Dist.of([wall - wait for wall, wait in zip(latencies, llm_waits, strict=True)])
    section.say(f"MESSAGE_CREATE -> reply posted: {dist}; minus the LLM wait: p50 {own.p50:.2f}"
                f" ms, p95 {own.p95:.2f} ms")
    section.figures = {"p50": dist.p50, "p95": dist.p95, "max": dist.max, "own_p50": own.p50,
                       "own_p95": own.p95, "n": dist.n}
    return section
