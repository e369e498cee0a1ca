"""Isolation: 100 users with DM agents, shared channels and per-member channels (plus terminal
agents). Each agent is given a unique secret — a key word and a vault word — in core memory,
recall and archival memory. Then every agent looks for every other agent's secret through the
model's functions (conversation_search, conversation_search_date, archival_memory_search, core
memory edits) and through /search, /memory, /dump and /export. No agent may ever see or change
another's vault word; each still finds its own.

Both searches rank messages matching any of the query's words, so a search for a batch of key
words checks every pair in it. The quick size lets the model search in batches of 60 and runs
the operator and slash commands with one random batch, for a sample of agents; MNEMOCORD_FULL=1
lets the model search pair by pair and covers every pair with the commands, for every agent.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import string
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.config import Settings
from bot.discordbot.bot import Mnemocord
from bot.engine import AgentSpec, Engine
from tests.conftest import SCRIPTED_EMBEDDINGS
from tests.discord_emulator import Channel, DiscordEmulator, User, run_client
from tests.llm_server import ScriptedLLM, calls, say
from tests.sizes import FULL, pick, report
from tests.turns import is_person, turn_inputs

SHARED = 5
PER_MEMBER = pick(20, 40)  # users who also have a private agent in a per-member channel
# (users, recall by meaning): message vectors are another path that must stay per agent; quick
# runs check it with fewer users to stay fast.
RUNS = pick([(100, "off"), (12, "on")], [(100, "on")])
BATCH = 1 if FULL else 60  # key words per search (recall uses at most 64)
SLASH_SAMPLE = pick(24, 10_000)
WAIT = pick(120.0, 1800.0)  # seconds; only a guard against a hang
WORD = re.compile(r"\b(key[a-z]{10}) (vault[a-z]{10})\b")


@dataclass
class Plant:
    agent_id: str
    key: str
    vault: str
    user: User | None = None  # who talks to it on Discord (None: a terminal agent)
    channel: Channel | None = None
    admin: User | None = None  # who may run its memory commands (shared channels)


def words(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice(string.ascii_lowercase) for _ in range(10))


def batches(items: list[str]) -> list[list[str]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


class Prober:
    """The model: plants a secret when told to; when asked to probe, searches for every other
    agent's key word with each memory function, tries to overwrite their core memory and reads
    its recall by date (all in one step), then answers."""

    def __init__(self, plants: list[Plant]) -> None:
        self.keys = [p.key for p in plants]
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        if "tools" not in request:
            return say("Summary.")
        said, _ = turn_inputs(request["messages"])
        found = WORD.search(" ".join(said))
        if found and "plant" in " ".join(said):
            key, vault = found.groups()
            return calls([("core_memory_append", {"label": "human", "content": f"{key} {vault}"}),
                          ("archival_memory_insert", {"content": f"{key} {vault}"}),
                          ("send_message", {"message": "planted"})])
        own = owner(request, self.keys)
        others = [k for k in self.keys if k != own]
        if steps_in_turn(request["messages"]) == 0:  # every function at once, then answer
            targets = others if FULL else others[:3]
            return calls(
                [("conversation_search", {"query": " ".join(b), "request_heartbeat": True})
                 for b in batches(others)]
                + [("archival_memory_search", {"query": " ".join(b), "request_heartbeat": True})
                   for b in batches(others)]
                + [("core_memory_replace", {"label": "human", "old_content": k,
                                            "new_content": "overwritten"}) for k in targets]
                + [("conversation_search_date", {"start_date": "2000-01-01",
                                                 "end_date": "2999-12-31", "page": page})
                   for page in range(4)])
        return calls([("send_message", {"message": "probed"})])


def owner(request: dict[str, Any], keys: list[str]) -> str | None:
    """The agent a request is for: the key word in its core memory (or, before it has one, in
    what it was told)."""
    system = request["messages"][0]["content"]
    for text in (system, json.dumps(request["messages"][1:])):
        mine = [k for k in keys if k in text]
        if len(mine) == 1 or (mine and text is system):
            return mine[0]
    return None


def steps_in_turn(messages: list[dict[str, Any]]) -> int:
    """How many function-calling steps the agent already took in this turn."""
    steps = 0
    for message in reversed(messages):
        if message["role"] == "assistant":
            steps += 1
        elif message["role"] == "user" and is_person(message.get("content")):
            return steps
    return steps


@pytest.fixture(params=RUNS, ids=[f"{users}-users-dense-{dense}" for users, dense in RUNS])
async def world(request: pytest.FixtureRequest, make_settings: Callable[..., Settings],
                llm: ScriptedLLM) -> AsyncIterator[tuple[DiscordEmulator, Mnemocord, int]]:
    users, dense = request.param
    emu = DiscordEmulator(bot_name="Mnemocord")
    await emu.start()
    # The many-agent run embeds thousands of queries: it uses the scripted endpoint (the local
    # model made it 20 s → 75 s on 2 cores); the recall-by-meaning run keeps the local default.
    embeddings = SCRIPTED_EMBEDDINGS if dense == "off" else {}
    settings = make_settings(discord_token="unused", recall_embeddings=dense, **embeddings)
    try:
        async with Engine(settings) as engine, run_client(emu, Mnemocord(engine, settings)) as bot:
            yield emu, bot, users
    finally:
        await emu.stop()


async def test_no_agent_sees_or_changes_another_agents_memory(
    world: tuple[DiscordEmulator, Mnemocord, int], llm: ScriptedLLM
) -> None:
    emu, bot, count = world
    engine = bot.engine
    rng = random.Random(100)
    guild = emu.create_guild("Iso Guild")
    users = [emu.create_user(f"user{i:03d}", global_name=f"User {i}") for i in range(count)]
    for user in users:
        emu.add_member(guild, user)
    shared = [emu.create_text_channel(guild, f"shared-{c}") for c in range(SHARED)]
    private = [emu.create_text_channel(guild, f"private-{c}") for c in range(2)]
    for channel in private:
        done = await (await emu.invoke_slash(emu.owner, channel, "channel", {
            "mode": "per-member", "listen": "all"})).wait_done()
        assert "per-member" in done.content

    def plant(agent_id: str, **where: Any) -> Plant:
        return Plant(agent_id, words(rng, "key"), words(rng, "vault"), **where)

    plants = [plant(f"dm:{u.id}", user=u, channel=emu.dm_channel(u)) for u in users]
    plants += [plant(f"channel:{c.id}", user=users[i % count], channel=c, admin=emu.owner)
               for i, c in enumerate(shared)]
    plants += [plant(f"channel:{private[i % 2].id}:member:{users[i].id}", user=users[i],
                     channel=private[i % 2]) for i in range(min(PER_MEMBER, count))]
    plants += [plant(f"cli:{name}") for name in ("alpha", "beta")]
    prober = Prober(plants)
    llm.handler = prober
    mention = f"<@{emu.bot_user.id}> "
    at_once = asyncio.Semaphore(16)  # conversations in flight (a full probe is a big turn)

    async def tell(p: Plant, text: str) -> None:
        async with at_once:
            await talk(p, text)

    async def talk(p: Plant, text: str) -> None:
        if p.user is None:
            result = await engine.send(p.agent_id, text, sender_name="Operator",
                                       spec=AgentSpec(name="Sam"))
            assert result.replies
            return
        assert p.channel is not None
        prefix = mention if p.channel in shared else ""
        sent = await emu.user_sends(p.user, p.channel, prefix + text)
        await emu.wait_for_bot_message(p.channel, lambda m: bool(m.reference) and int(
            m.reference["message_id"]) == sent.id, after=sent.id, timeout=WAIT)

    await asyncio.gather(*(tell(p, f"plant {p.key} {p.vault}") for p in plants))
    assert {a["id"] for a in await engine.list_agents()} == {p.agent_id for p in plants}
    await asyncio.gather(*(tell(p, "probe your memory") for p in plants))

    # 1. The model of each agent never saw another agent's vault word, in any request.
    vaults = {p.key: p.vault for p in plants}
    seen = 0
    for request in prober.requests:
        own = owner(request, prober.keys)
        assert own is not None
        text = json.dumps(request)
        for key, vault in vaults.items():
            assert key == own or vault not in text, f"{own}'s model saw {key}'s vault"
        seen += vaults[own] in text
    assert seen  # its own secret, on the other hand, is there

    # 2. Memory is unchanged by the others' attempts: each agent holds exactly its own secret.
    for p in plants:
        view = await engine.memory(p.agent_id)
        human = next(b["value"] for b in view.blocks if b["label"] == "human")
        assert f"{p.key} {p.vault}" in human and "overwritten" not in human
        passages = [x.text for x in await engine.archival.all_passages(p.agent_id)]
        assert passages == [f"{p.key} {p.vault}"]

    # 3. Operator commands (engine) and slash commands (Discord) show only the agent's own.
    others_of = {p.key: [k for k in vaults if k != p.key] for p in plants}
    for p in plants:
        shown = [json.dumps(await engine.export(p.agent_id)),
                 " ".join(m.text or "" for m in await engine.dump(p.agent_id, 10_000)),
                 json.dumps((await engine.memory(p.agent_id)).blocks)]
        # By the batches searches rank (any of the words), every pair in the full size.
        others = others_of[p.key]
        chunks = [others[i:i + 60] for i in range(0, len(others), 60)] if FULL else [
            rng.sample(others, min(60, len(others)))]
        for chunk in chunks:
            page = await engine.search_recall(p.agent_id, " ".join(chunk))
            shown.append(" ".join(m.text or "" for m in page.items))
            found = await engine.search_archival(p.agent_id, " ".join(chunk))
            shown.append(" ".join(x.text for x in found.items))
        assert_only_own(p, shown, vaults)
        own = await engine.search_archival(p.agent_id, p.key)
        assert own.items and own.items[0].text == f"{p.key} {p.vault}"

    on_discord = [p for p in plants if p.user is not None]
    sample = on_discord if FULL else rng.sample(on_discord, min(SLASH_SAMPLE, len(on_discord)))
    interactions = 0
    for p in sample:
        assert p.channel is not None and p.user is not None
        who = p.admin or p.user
        shown = []
        others = others_of[p.key]  # 20 key words fit /search's 300 characters
        queries = [others[i:i + 20] for i in range(0, len(others), 20)] if FULL else [
            rng.sample(others, min(20, len(others)))]
        invocations: list[tuple[str, dict[str, Any]]] = [("memory", {}), ("dump", {"n": 100}),
                                                         ("export", {})]
        for query in queries:
            for where in ("recall", "archival"):
                invocations.append(("search", {"where": where, "query": " ".join(query)}))
        for name, options in invocations:
            done = await (await emu.invoke_slash(who, p.channel, name, options)).wait_done()
            interactions += 1
            shown.append(done.content + " ".join(
                m.content for m in done.all_messages) + "".join(
                data.decode() for data in done.files.values()))
        assert any(p.vault in s for s in shown), f"{p.agent_id} does not see its own secret"
        assert_only_own(p, shown, vaults)

    report(f"isolation-{count}-users", {
        "users": count, "agents": len(plants),
        "recall_by_meaning": bot.engine.settings.recall_embeddings,
        "agents_by_kind": {kind: sum(p.agent_id.startswith(kind) for p in plants)
                           for kind in ("dm:", "channel:", "cli:")},
        "llm_requests_checked": len(prober.requests),
        "pairs_checked": len(plants) * (len(plants) - 1),
        "key_words_per_search": BATCH,
        "slash_commands_run": interactions,
        "agents_checked_by_slash_command": len(sample),
    })


def assert_only_own(plant: Plant, shown: list[str], vaults: dict[str, str]) -> None:
    text = "\n".join(shown)
    for key, vault in vaults.items():
        assert key == plant.key or vault not in text, f"{plant.agent_id} showed {key}'s vault"
