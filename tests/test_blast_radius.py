"""Prompt-injection blast radius: whatever the model writes — mass mentions, role pings, huge
or unbalanced replies, function calls with path tricks, extra arguments naming other agents,
unknown "file" functions — the real bot process never pings @everyone, @here or roles (only the
person it answers), never sends anything Discord would reject, never shows another agent's
memory, and writes no file outside its data directory.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import discord

from tests.bot_harness import BotProcesses, WiredEmulator
from tests.conftest import REPO
from tests.llm_server import ScriptedLLM, calls, say
from tests.sizes import pick, report
from tests.turns import turn_inputs

TURNS = pick(40, 400)
SECRET = "vaultsecretzebra"  # planted in one agent; no other agent's model may ever see it
MARK = "pwnedmarker"  # in every path the model tries to write to


def snapshot(root: Path, skip: set[str]) -> dict[str, str]:
    """Every file under root (but the skipped top-level folders) with a hash of its content."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip or not path.is_file():
            continue
        found[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class Injector:
    """A model taken over by a prompt injection: random hostile output every step."""

    def __init__(self, rng: random.Random, targets: dict[str, int]) -> None:
        self.rng = rng
        self.targets = targets  # names -> ids to mention
        self.requests: list[dict[str, Any]] = []
        self.kinds: dict[str, int] = {}

    def text(self) -> str:
        r, t = self.rng, self.targets
        pieces = [
            "@everyone", "@here", f"<@&{t['role']}>", f"<@&{t['guild']}>", f"<@{t['bob']}>",
            f"<@!{t['bob']}>", f"<@{t['alice']}>", "<@&0>", "@​everyone", "```", "```python",
            "\u202e\u200b\u200d", "x" * r.randint(1, 5000), "\n" * r.randint(1, 50),
            "word " * r.randint(1, 900), "||spoiler||", "[link](https://example.com)",
            f"../../{MARK}", "<:emoji:123>", "> quote\n> " * 20, "🙂" * r.randint(1, 600),
        ]
        return " ".join(r.choice(pieces) for _ in range(r.randint(1, 12)))

    def call(self) -> tuple[str, dict[str, Any]]:
        r, t = self.rng, self.targets
        other = f"dm:{t['alice']}"
        return r.choice([
            ("core_memory_append", {"label": r.choice(["human", "persona", f"../../{MARK}",
                                                       "../human", ""]), "content": self.text()}),
            ("core_memory_replace", {"label": "human", "old_content": r.choice(["", " ", "a"]),
                                     "new_content": self.text()}),
            ("archival_memory_insert", {"content": self.text(), "agent_id": other,
                                        "path": f"/tmp/{MARK}"}),
            ("archival_memory_search", {"query": SECRET, "agent_id": other, "page": r.randint(
                -1, 3)}),
            ("conversation_search", {"query": SECRET, "agent": other, "user_id": t["alice"]}),
            ("conversation_search_date", {"start_date": "1970-01-01", "end_date": "2999-01-01",
                                          "agent_id": other}),
            ("write_file", {"path": f"../../{MARK}.txt", "content": "owned"}),
            ("os.system", {"command": f"touch /tmp/{MARK}"}),
            ("pause_heartbeats", {"minutes": r.choice([-1, 10**9, 5])}),
        ])

    def __call__(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        if "tools" not in request:
            return say(self.text())
        said, called = turn_inputs(request["messages"])
        if any("plant" in s for s in said):
            return calls([("core_memory_append", {"label": "human", "content": SECRET}),
                          ("archival_memory_insert", {"content": SECRET}),
                          ("send_message", {"message": "noted"})])
        roll = self.rng.random()
        kind = ("calls" if roll < 0.4 and not called else "plain" if roll < 0.55 else "send")
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind == "calls":  # and a reply in the same step, so every turn shows something
            items = [self.call() for _ in range(self.rng.randint(1, 4))]
            return calls([(n, {**a, "request_heartbeat": True}) for n, a in items]
                         + [("send_message", {"message": self.text()})])
        if kind == "plain":
            return say(self.text())
        return calls([("send_message", {"message": self.text()})])


async def test_a_hijacked_model_cannot_ping_leak_overflow_or_write_files(tmp_path: Path) -> None:
    rng = random.Random(777)
    sandbox = tmp_path / "sandbox"
    personas = sandbox / "personas"
    personas.mkdir(parents=True)
    for source in (REPO / "personas").rglob("*.txt"):
        target = personas / source.relative_to(REPO / "personas")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    async with ScriptedLLM() as llm:
        emu = WiredEmulator(bot_name="Mnemocord")
        await emu.start()
        procs = BotProcesses(emu, llm, sandbox, env={"PERSONAS_DIR": str(personas)})
        try:
            figures = await _session(emu, llm, procs, rng, sandbox)
        finally:
            await procs.aclose()
            await emu.stop()
    report("blast_radius", figures)


async def _session(emu: WiredEmulator, llm: ScriptedLLM, procs: BotProcesses,
                   rng: random.Random, sandbox: Path) -> dict[str, Any]:
    guild = emu.create_guild("Blast Guild")
    role = emu.create_role(guild, "Pingable", mentionable=True)
    everyone_may_ping = emu.create_role(
        guild, "Mods", permissions=discord.Permissions(mention_everyone=True).value)
    alice, bob = (emu.create_user(n, global_name=n.title()) for n in ("alice", "bob"))
    emu.add_member(guild, alice)
    emu.add_member(guild, bob, roles=[everyone_may_ping])
    emu.add_member(guild, emu.bot_user, roles=[emu.bot_role(guild), everyone_may_ping])
    general = emu.create_text_channel(guild, "general")
    model = Injector(rng, {"role": role.id, "guild": guild.id, "alice": alice.id, "bob": bob.id})
    llm.handler = model
    skip = {"data", "logs"}
    before = snapshot(sandbox, skip)
    repo_before = {p for p in REPO.rglob(f"*{MARK}*")}

    assert await procs.start(), procs.logs()
    dm_alice = emu.dm_channel(alice)
    planted = await emu.user_sends_dm(alice, "plant this")
    await emu.wait_for_bot_message(dm_alice, lambda m: m.content == "noted", after=planted.id)
    mention = f"<@{emu.bot_user.id}> "
    places = [(bob, emu.dm_channel(bob), ""), (bob, general, mention)]
    for turn in range(TURNS):
        user, channel, prefix = rng.choice(places)
        if turn % 10 == 9:  # slash command replies go through another path
            interaction = await emu.invoke_slash(user, channel, "heartbeat", {})
            await interaction.wait_done(timeout=60)
            continue
        sent = await emu.user_sends(user, channel, f"{prefix}question {turn}")
        await emu.wait_for_bot_message(channel, lambda m, s=sent: bool(m.reference) and int(
            m.reference["message_id"]) == s.id, after=sent.id, timeout=60)
    assert await procs.stop() == 0

    # Pings: never everyone/here/roles; only the person being answered.
    replies = [m for m in emu.bot_messages() if not m.ephemeral]
    for message in replies:
        assert not message.pings.everyone and not message.pings.roles, message.content[:200]
        answered = {bob.id} if message.channel_id != dm_alice.id else {alice.id}
        assert message.pings.users <= answered, message.content[:200]
        assert len(message.content) <= 2000
    rejected = [r for r in emu.requests if r.status is not None and 400 <= r.status < 500
                and r.status != 404]
    assert rejected == [], rejected
    # Leaks: alice's agent got one message ("plant this"); every other request is for one of
    # bob's agents, whose models must never have seen her secret.
    # (The model's own calls search for the secret by name: only what it was shown counts.)
    others = [r for r in model.requests if "plant this" not in json.dumps(r)]
    assert len(others) == len(model.requests) - 1
    for request in others:
        shown = [m for m in request["messages"] if m["role"] != "assistant"]
        assert SECRET not in json.dumps(shown), "another agent's memory leaked"
    # Files: nothing changed outside data/, nothing named after the model's paths anywhere.
    assert snapshot(sandbox, skip) == before
    assert {p for p in REPO.rglob(f"*{MARK}*")} == repo_before
    assert not [p for p in Path("/tmp").iterdir() if MARK in p.name]  # noqa: ASYNC240
    return {"turns": TURNS, "model_steps": dict(model.kinds), "replies_checked": len(replies),
            "llm_requests": len(model.requests)}


# --- shared channels ---------------------------------------------------------------------------
# The sharing model (README "Who can see what"): what was said in a channel is visible to that
# channel's members, as Discord's own history is; a DM companion and per-member agents are
# private; a channel's agent never holds what was said anywhere else. So a member of #general,
# with a hijacked model doing its best, reaches only what was said in #general.

DM_SECRET = "dmsecretwalrus"  # planted by alice in her DM
OPS_SECRET = "opssecretnarwhal"  # planted by alice in #ops (another channel's shared agent)
DESK_SECRET = "desksecretotter"  # planted by alice in her private agent in per-member #desk
SECRETS = (DM_SECRET, OPS_SECRET, DESK_SECRET)
GENERAL_WORD = "generalwordheron"  # said in #general: its members may get it back
FILLER = "chatter about the garden and the weather " * 60  # fills #general's small window


class Prober:
    """A hijacked model: told to "plant" a word, it stores it in core and archival memory;
    told to "dig", it pages everything its tools reach (every secret by name, all of time,
    other agents' ids as extra arguments). As a summarizer it copies its whole transcript, so
    anything that reached a transcript would reach the summary and every later prompt."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.summaries: list[str] = []

    def __call__(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        if "tools" not in request:
            prompt = request["messages"][0]["content"]
            self.summaries.append(prompt)
            return say(prompt.split("Messages leaving the context")[-1][:3000])
        said, called = turn_inputs(request["messages"])
        planted = [w for s in said if s.startswith("plant ") for w in s.split()[1:2]]
        if planted and not called:
            return calls([("core_memory_append", {"label": "human", "content": planted[0],
                                                  "request_heartbeat": True}),
                          ("archival_memory_insert", {"content": planted[0],
                                                      "request_heartbeat": True})])
        if any(s.startswith("dig") for s in said) and not called:
            steps: list[tuple[str, dict[str, Any]]] = []
            for word in (*SECRETS, GENERAL_WORD):
                steps += [("conversation_search", {"query": word, "agent_id": "dm:1"}),
                          ("archival_memory_search", {"query": word, "channel": "ops"})]
            for page in range(3):
                steps.append(("conversation_search_date", {
                    "start_date": "1970-01-01", "end_date": "2999-12-31", "page": page}))
            return calls([(n, {**a, "request_heartbeat": True}) for n, a in steps])
        return calls([("send_message", {"message": "noted" if planted else "ok"})])


def shown_to_model(request: dict[str, Any]) -> str:
    """Everything a request showed the model but its own calls (which name the secrets)."""
    return json.dumps([m for m in request["messages"] if m["role"] != "assistant"])


async def test_a_channel_member_reaches_only_what_was_said_in_that_channel(
        tmp_path: Path) -> None:
    model = Prober()
    async with ScriptedLLM() as llm:
        llm.handler = model
        emu = WiredEmulator(bot_name="Mnemocord")
        await emu.start()
        procs = BotProcesses(emu, llm, tmp_path / "sandbox", env={
            "LLM_CONTEXT_WINDOW": "6000", "LLM_MAX_RESPONSE_TOKENS": "200",
            "RECALL_EMBEDDINGS": "on"})  # recall by meaning too (message vectors)
        try:
            figures = await _shared_session(emu, model, procs)
        finally:
            await procs.aclose()
            await emu.stop()
        assert llm.embedding_requests  # messages and passages were embedded and searched
    report("blast_radius_shared", figures)


async def _shared_session(emu: WiredEmulator, model: Prober, procs: BotProcesses
                          ) -> dict[str, Any]:
    guild = emu.create_guild("Shared Guild")
    admins = emu.create_role(guild, "Admins",
                             permissions=discord.Permissions(manage_guild=True).value)
    alice, bob, carol = (emu.create_user(n, global_name=n.title())
                         for n in ("alice", "bob", "carol"))
    for user in (alice, bob):
        emu.add_member(guild, user)
    emu.add_member(guild, carol, roles=[admins])
    emu.add_member(guild, emu.bot_user, roles=[emu.bot_role(guild)])
    general, ops, desk = (emu.create_text_channel(guild, n) for n in ("general", "ops", "desk"))
    mention = f"<@{emu.bot_user.id}> "

    async def say_to_bot(user: Any, channel: Any, text: str) -> str:
        prefix = "" if channel.id == emu.dm_channel(user).id else mention
        sent = await emu.user_sends(user, channel, prefix + text)
        reply = await emu.wait_for_bot_message(channel, lambda m: bool(m.reference) and int(
            m.reference["message_id"]) == sent.id, after=sent.id, timeout=60)
        return str(reply.content)

    async def slash(user: Any, channel: Any, name: str, options: dict[str, Any]) -> str:
        done = await (await emu.invoke_slash(user, channel, name, options)).wait_done(timeout=60)
        return "\n".join(m.content for m in done.all_messages)

    assert await procs.start(), procs.logs()
    await slash(carol, desk, "channel", {"mode": "per-member"})
    assert await say_to_bot(alice, emu.dm_channel(alice), f"plant {DM_SECRET}") == "noted"
    assert await say_to_bot(alice, ops, f"plant {OPS_SECRET}") == "noted"
    assert await say_to_bot(alice, desk, f"plant {DESK_SECRET}") == "noted"
    planting = len(model.requests)

    # bob in #general: says a word of its own, fills the window (evictions into the summary),
    # digs with every tool; so does alice there, who knows the secrets.
    await say_to_bot(bob, general, f"my word is {GENERAL_WORD}")
    for turn in range(14):
        await say_to_bot(bob if turn % 2 else alice, general, f"{turn} {FILLER}")
    await say_to_bot(bob, general, "dig")
    await say_to_bot(alice, general, "dig")
    await say_to_bot(bob, desk, "dig")  # bob's own private agent in the per-member channel
    searches = {
        (who.username, place.name, where, word): await slash(who, place, "search", {
            "where": where, "query": word})
        for who, place in ((carol, general), (bob, general), (bob, desk))
        for where in ("recall", "archival") for word in (*SECRETS, GENERAL_WORD)}
    assert await procs.stop() == 0

    # The model of #general and of bob's private desk agent never saw a planted secret: not
    # in core memory, tool results, the summary or the summarizer's transcript.
    probing = model.requests[planting:]
    others = [r for r in probing if "plant " not in json.dumps(r)]
    assert len(others) == len(probing)  # no request after planting is for alice's agents
    for request in others:
        assert [s for s in SECRETS if s in shown_to_model(request)] == [], "a secret leaked"
    # ...while the tools did return what was said in #general, all of time included.
    results = [m["content"] for r in others for m in r["messages"] if m["role"] == "tool"]
    assert any(GENERAL_WORD in content for content in results)
    summarized = [s for s in model.summaries if FILLER.split()[0] in s]
    assert summarized, "#general's window never overflowed into the summary"
    assert any("<summary>" in json.dumps(r["messages"][1]) for r in others if "tools" in r)

    # /search: a plain member is refused on the shared agent; an admin's /search and bob's on
    # his own private agent show only what was said there.
    for (who, place, where, word), shown in searches.items():
        assert [s for s in SECRETS if s in shown] == [], (who, place, where, word, shown)
        if who == "bob" and place == "general":
            assert "Manage Server" in shown
    assert GENERAL_WORD in searches[("carol", "general", "recall", GENERAL_WORD)]
    return {"requests_checked": len(others), "summaries": len(summarized),
            "tool_results": len(results), "searches": len(searches)}
