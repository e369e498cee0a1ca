"""A busy shared channel: what observe mode and per-person memory cost (issue 12).

Engine level, strict scripted LLM in process; counts, not times. Observe mode: people talk in a
channel without addressing the bot (`Engine.observe`, what the chat cog calls for a channel set
to `/channel listen:observe`), then one mention; LLM requests are counted for each. Per-person
memory: speakers in one shared agent each say their name and a fact, which the model appends
to their `person:<id>` block; the system message's tokens (the engine's count) of the call
answering the 3rd and the 30th speaker.
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import Section
from bench.driver import engine_on
from bot.engine import AgentSpec
from bot.memory.people import People
from tests.llm_server import ScriptedLLM, Step, call, calls, say

SHARED = AgentSpec(name="Sam", persona="sam", human="channel", options={"people": True})
FEW, MANY = 3, 30


def model(body: dict[str, Any]) -> Step:
    """Appends an introduction to the speaker's block; answers anything else plainly."""
    if "tools" not in body:
        return say("Summary: people introduced themselves.")
    event = json.loads(body["messages"][-1]["content"])
    text = str(event.get("text", ""))
    if text.startswith("My name is") and "id" in event:
        return calls([
            ("core_memory_append", {"label": f"person:{event['id']}", "content": text,
                                    "request_heartbeat": False}),
            ("send_message", {"message": "Nice to meet you!"}),
        ])
    return call("send_message", message="I heard that.")


async def _observe(observed: int) -> dict[str, Any]:
    async with ScriptedLLM() as llm:
        llm.handler = model
        async with engine_on(llm.base_url, recall_embeddings="off") as bench:
            engine, agent_id = bench.engine, "channel:observe"
            await engine.agent(agent_id, AgentSpec(name="Sam", persona="sam", human="channel"))
            before = len(llm.requests)
            for i in range(observed):
                speaker = f"Person{i % 5}"
                await engine.observe(agent_id, f"message {i}: the release moves to Friday",
                                     sender_name=speaker, sender_id=str(2000 + i % 5))
            during = len(llm.requests) - before
            await engine.send(agent_id, "@Sam what do you think of what was just said?",
                              sender_name="Bob", sender_id="2100")
            mention = len(llm.requests) - before - during
            stored = await engine.recall.count(agent_id)
            in_context = sum(1 for m in (await engine.agent(agent_id)).queue
                             if m.kind == "user_message")
    return {"observed": observed, "llm_calls_observing": during,
            "llm_calls_per_observed": during / observed, "llm_calls_mention": mention,
            "recall_messages": stored, "context_person_messages": in_context}


async def _people(speakers: int) -> dict[str, Any]:
    sizes: dict[int, int] = {}
    async with ScriptedLLM() as llm:
        llm.handler = model
        async with engine_on(llm.base_url, recall_embeddings="off") as bench:
            engine, agent_id = bench.engine, "channel:people"
            for i in range(speakers):
                await engine.send(agent_id, f"My name is Person{i:02d} and I like fruit {i}.",
                                  sender_name=f"Person{i:02d}", sender_id=str(1000 + i),
                                  spec=SHARED)
                if i + 1 in (FEW, speakers):
                    sizes[i + 1] = engine.counter.count(
                        str(llm.requests[-1]["messages"][0]["content"]))
            agent = await engine.agent(agent_id)
            every = await agent.people.all_blocks()
            present, stored = len(agent.people.present), len(every)
            # What paging saves: the same blocks, every one of them shown.
            everyone = People(engine.store, agent_id, enabled=True, limit=agent.people.limit,
                              in_context=len(every), present=every)
            unpaged = (engine.counter.count(everyone.render())
                       - engine.counter.count(agent.people.render()))
    return {"system_tokens_few": sizes[FEW], "system_tokens_many": sizes[speakers],
            "growth_tokens": sizes[speakers] - sizes[FEW], "few": FEW, "many": speakers,
            "blocks_in_context": present, "blocks_stored": stored,
            "unpaged_extra_tokens": unpaged}


async def run(quick: bool) -> Section:
    observed = 10 if quick else 40
    section = Section("A busy shared channel: observe mode and per-person memory", (
        f"engine level, strict scripted LLM, recall by keywords; {observed} observed messages"
        f" then one mention; {MANY} speakers introduce themselves in one shared agent"))
    seen = await _observe(observed)
    section.say(f"observe: {seen['llm_calls_observing']} LLM calls for {observed} observed"
                f" messages ({seen['llm_calls_per_observed']:.2f} per message); the mention"
                f" after them: {seen['llm_calls_mention']}; in recall"
                f" {seen['recall_messages']}, person messages in context"
                f" {seen['context_person_messages']}")
    people = await _people(MANY)
    section.say(f"per-person memory: system message {people['system_tokens_few']} tokens at"
                f" {FEW} speakers, {people['system_tokens_many']} at {MANY}"
                f" (+{people['growth_tokens']}); {people['blocks_in_context']} of"
                f" {people['blocks_stored']} blocks in context; all of them in context would add"
                f" {people['unpaged_extra_tokens']} tokens more")
    section.figures.update(seen)
    section.figures.update(people)
    return section
