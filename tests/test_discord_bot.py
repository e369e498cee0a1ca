"""The Discord adapter end to end: the real discord.py client against the emulator, the real
engine on SQLite + Chroma, and the scripted LLM over HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.discordbot.bot import Mnemocord
from bot.engine import AgentSpec, Engine
from bot.messages import unpack_event
from tests.discord_emulator import run_client
from tests.discord_world import World, next_reply, reply_with
from tests.llm_server import call, last_user_text


async def test_startup_syncs_once_and_owner_can_force(world: World) -> None:
    async with Engine(world.settings) as engine:
        async with run_client(world.emu, Mnemocord(engine, world.settings)):
            pass
        assert len(world.emu.command_syncs) == 1
        names = set(world.emu.command_syncs[0].names)
        assert {"memory", "pop", "heartbeat", "memorywarning", "dump", "save", "load", "retry",
                "summarize", "search", "persona", "attach", "reset", "export",
                "forget-me", "channel", "sync"} <= names
        async with run_client(world.emu, Mnemocord(engine, world.settings)):
            pass  # unchanged commands: no second sync on restart
        assert len(world.emu.command_syncs) == 1
        async with run_client(world.emu, Mnemocord(engine, world.settings)):
            world.emu.open_command(world.guild, "sync")  # hidden from members unless opened
            refused = await (await world.emu.invoke_slash(world.alice, world.general, "sync")
                             ).wait_done()
            assert refused.ephemeral and "owner" in refused.content
            done = await (await world.emu.invoke_slash(world.emu.owner, world.emu.dm_channel(
                world.emu.owner), "sync")).wait_done()
            assert "synced" in done.content
        assert len(world.emu.command_syncs) == 2


async def test_mention_gets_typing_then_a_reply(world: World, bot: Mnemocord) -> None:
    world.llm.push(reply_with("Hello Alice!"))
    asked = await world.emu.user_sends(world.alice, world.general, f"{world.mention()} hi!")
    reply = await next_reply(world, world.general)
    assert reply.content == "Hello Alice!"
    assert reply.reference and int(reply.reference["message_id"]) == asked.id
    typing = [t for t in world.emu.typings if t.channel_id == world.general.id]
    assert typing and typing[0].seq < reply.seq
    event = unpack_event(world.llm.requests[0]["messages"][-1]["content"])
    assert event is not None and event.text == "hi!" and event.name == "Alice"
    assert event.sender_id == str(world.alice.id)


async def test_ignores_unaddressed_messages_bots_and_everyone(world: World,
                                                              bot: Mnemocord) -> None:
    other_bot = world.emu.create_user("robot", bot=True)
    world.emu.add_member(world.guild, other_bot)
    await world.emu.user_sends(world.alice, world.general, "just chatting")
    await world.emu.user_sends(world.alice, world.general, "@everyone look")
    await world.emu.user_sends(other_bot, world.general, f"{world.mention()} beep")
    world.llm.push(reply_with("only this one"))
    await world.emu.user_sends(world.bob, world.general, f"{world.mention()} now you")
    reply = await next_reply(world, world.general)
    assert reply.content == "only this one" and world.llm.chat_calls == 1


async def test_dm_memory_persists_across_a_bot_restart(world: World) -> None:
    for round_number in range(2):
        async with (
            Engine(world.settings) as engine,
            run_client(world.emu, Mnemocord(engine, world.settings)),
        ):
            if round_number == 0:
                world.llm.push(
                    call("core_memory_append", label="human", content="Alice plays oboe.",
                         request_heartbeat=True),
                    reply_with("An oboist!"))
                await world.emu.user_sends_dm(world.alice, "I play the oboe")
            else:
                world.llm.push(reply_with("Still the oboe?"))
                await world.emu.user_sends_dm(world.alice, "remember me?")
            reply = await next_reply(world, world.emu.dm_channel(world.alice))
    assert reply.content == "Still the oboe?"
    system = world.llm.requests[-1]["messages"][0]["content"]
    assert "Alice plays oboe." in system
    history = json.dumps(world.llm.requests[-1]["messages"])
    assert "I play the oboe" in history


async def test_shared_channel_keeps_speakers_apart(world: World, bot: Mnemocord) -> None:
    world.llm.handler = lambda req: reply_with(f"ok {len(world.llm.requests)}")
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} I'm a baker")
    await next_reply(world, world.general)
    await world.emu.user_sends(world.bob, world.general, f"{world.mention()} I'm a pilot")
    await next_reply(world, world.general)
    events = [unpack_event(m["content"]) for m in world.llm.requests[-1]["messages"]
              if m["role"] == "user"]
    assert [(e.name, e.sender_id, e.text) for e in events if e and e.kind == "user_message"] == [
        ("Alice", str(world.alice.id), "I'm a baker"), ("Bob", str(world.bob.id), "I'm a pilot")]
    assert "<human" in world.llm.requests[-1]["messages"][0]["content"]
    assert "shared channel" in world.llm.requests[-1]["messages"][0]["content"]


async def test_per_member_mode_isolates_members(world: World, bot: Mnemocord) -> None:
    world.emu.open_command(world.guild, "channel")  # past the client's hiding: the bot refuses
    refused = await (await world.emu.invoke_slash(
        world.alice, world.general, "channel", {"mode": "per-member"})).wait_done()
    assert refused.ephemeral and "Manage Server" in refused.content
    done = await (await world.emu.invoke_slash(
        world.carol, world.general, "channel", {"mode": "per-member", "listen": "all"})
    ).wait_done()
    assert "per-member" in done.content
    world.llm.handler = lambda req: reply_with("noted")
    await world.emu.user_sends(world.alice, world.general, "my secret is 4711")
    await next_reply(world, world.general)
    await world.emu.user_sends(world.bob, world.general, "what's alice's secret?")
    await next_reply(world, world.general)
    assert "4711" not in json.dumps(world.llm.requests[-1])
    agents = {row["id"] for row in await bot.engine.list_agents()}
    assert agents == {f"channel:{world.general.id}:member:{world.alice.id}",
                      f"channel:{world.general.id}:member:{world.bob.id}"}
    # Bob's /memory shows his own private agent, not Alice's.
    view = await (await world.emu.invoke_slash(world.bob, world.general, "memory")).wait_done()
    assert f"member:{world.bob.id}" in view.content and view.ephemeral


async def test_threads_follow_their_parent_channel(world: World, bot: Mnemocord) -> None:
    thread = world.emu.create_thread(world.general, "topic", owner=world.alice)
    world.llm.handler = lambda req: reply_with("in thread")
    await world.emu.user_sends(world.alice, thread, f"{world.mention()} hello from a thread")
    reply = await next_reply(world, thread)
    assert reply.content == "in thread"
    assert [a["id"] for a in await bot.engine.list_agents()] == [f"channel:{world.general.id}"]


async def test_long_answers_are_split_without_breaking_code(world: World,
                                                            bot: Mnemocord) -> None:
    code = "```python\n" + "\n".join(f"print({i})  # line {i}" for i in range(150)) + "\n```"
    long_text = ("word " * 500).strip() + "\n\n" + code + "\n\nThat's all."
    world.llm.push(reply_with(long_text))
    await world.emu.user_sends_dm(world.alice, "show me code")
    dm = world.emu.dm_channel(world.alice)
    first = await next_reply(world, dm)
    parts = [first]
    while not parts[-1].content.endswith("That's all."):
        parts.append(await next_reply(world, dm))
    assert len(parts) >= 3 and all(len(p.content) <= 2000 for p in parts)
    assert all(p.content.count("```") % 2 == 0 for p in parts)  # every chunk renders alone
    joined = "".join(p.content for p in parts)
    assert "print(149)" in joined and "word word" in joined


async def test_no_mass_pings_even_when_the_model_writes_them(world: World,
                                                             bot: Mnemocord) -> None:
    role = world.emu.create_role(world.guild, "Everyone-ish", mentionable=True)
    world.llm.push(reply_with(
        f"@everyone @here <@&{role.id}> <@{world.bob.id}> and you <@{world.alice.id}>"))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} ping everybody")
    reply = await next_reply(world, world.general)
    assert not reply.pings.everyone and not reply.pings.roles
    assert reply.pings.users <= {world.alice.id}


async def test_incoming_mentions_are_resolved_to_names(world: World, bot: Mnemocord) -> None:
    world.llm.push(reply_with("ok"))
    await world.emu.user_sends(world.alice, world.general,
                               f"{world.mention()} say hi to <@{world.bob.id}> in"
                               f" <#{world.general.id}>")
    await next_reply(world, world.general)
    said = json.loads(world.llm.requests[-1]["messages"][-1]["content"])["text"]
    assert said == "say hi to @Bob in #general"


async def test_rate_limited_send_is_retried_and_lands_once(world: World, bot: Mnemocord) -> None:
    world.emu.fail_next("POST", "/channels/{channel_id}/messages", status=429, retry_after=0.01)
    world.llm.push(reply_with("after the rate limit"))
    await world.emu.user_sends_dm(world.alice, "hello")
    dm = world.emu.dm_channel(world.alice)
    reply = await next_reply(world, dm)
    assert reply.content == "after the rate limit"
    assert [m.content for m in world.emu.bot_messages(dm)] == ["after the rate limit"]
    assert any(r.status == 429 for r in world.emu.requests)


async def test_gateway_resume_mid_conversation_keeps_the_reply(world: World,
                                                               bot: Mnemocord) -> None:
    release = asyncio.Event()

    async def slow(request: dict[str, Any]) -> Any:
        if "first" in last_user_text(request):
            await release.wait()
        return reply_with("re: " + json.loads(last_user_text(request))["text"])

    world.llm.handler = slow
    dm = world.emu.dm_channel(world.alice)
    await world.emu.user_sends_dm(world.alice, "first question")
    await world.llm.wait_for_requests(1)
    await world.emu.drop_gateway(resume=True)
    await world.emu.user_sends_dm(world.alice, "second question")  # sent while disconnected
    release.set()
    await world.emu.wait_for_resume()
    replies = [await next_reply(world, dm) for _ in range(2)]
    contents = " ".join(r.content for r in replies)
    assert "first question" in contents and "second question" in contents


async def test_messages_arriving_while_thinking_are_answered_in_order(
    world: World, bot: Mnemocord
) -> None:
    release = asyncio.Event()

    async def handler(request: dict[str, Any]) -> Any:
        if world.llm.chat_calls == 1:
            await release.wait()
        texts = [e.text for e in (unpack_event(m["content"]) for m in request["messages"]
                                  if m["role"] == "user") if e and e.kind == "user_message"]
        return reply_with(" | ".join(texts))

    world.llm.handler = handler
    dm = world.emu.dm_channel(world.alice)
    await world.emu.user_sends_dm(world.alice, "one")
    await world.llm.wait_for_requests(1)
    await world.emu.user_sends_dm(world.alice, "two")
    await world.emu.user_sends_dm(world.alice, "three")
    await bot.wait_for("message", check=lambda m: m.content == "three")
    release.set()
    first = await next_reply(world, dm)
    second = await next_reply(world, dm)
    assert first.content == "one"
    assert second.content in ("one | two | three", "one | two")  # batched, in order


async def test_after_a_crash_replies_are_delivered_once_and_pending_messages_answered(
    world: World,
) -> None:
    dm = world.emu.dm_channel(world.alice)
    asked = await world.emu.user_sends_dm(world.alice, "question one")  # bot is offline
    unanswered = await world.emu.user_sends_dm(world.alice, "question two")
    async with Engine(world.settings) as engine:
        # The last run committed the answer to question one, then died before sending it...
        world.llm.push(reply_with("answer one"))
        await engine.send(f"dm:{world.alice.id}", "question one", sender_name="Alice",
                          external_id=f"{dm.id}:{asked.id}", spec=AgentSpec(human="basic"))
    assert [m.content for m in world.emu.bot_messages(dm)] == []
    async with Engine(world.settings) as engine:
        # ...and accepted question two without answering it.
        await engine.accept(f"dm:{world.alice.id}", "question two", sender_name="Alice",
                            external_id=f"{dm.id}:{unanswered.id}")
        world.llm.push(reply_with("answer two"))
        async with run_client(world.emu, Mnemocord(engine, world.settings)):
            first = await next_reply(world, dm)
            second = await next_reply(world, dm)
        assert await engine.undelivered() == [] and await engine.pending_agent_ids() == []
    assert (first.content, int(first.reference["message_id"])) == ("answer one", asked.id)
    assert (second.content, int(second.reference["message_id"])) == ("answer two",
                                                                      unanswered.id)
    async with (
        Engine(world.settings) as engine,
        run_client(world.emu, Mnemocord(engine, world.settings)),
    ):
        pass  # a further restart delivers nothing twice
    assert [m.content for m in world.emu.bot_messages(dm)] == ["answer one", "answer two"]


async def test_small_text_attachments_reach_the_agent(world: World, bot: Mnemocord) -> None:
    world.llm.push(call("archival_memory_insert", content="Recipe: flour, water, salt.",
                        request_heartbeat=True), reply_with("Saved your recipe."))
    await world.emu.user_sends_dm(world.alice, "please remember this file",
                                  attachments=[("recipe.txt", b"flour, water, salt", "text/plain"),
                                               ("photo.png", b"\x89PNG....", "image/png")])
    reply = await next_reply(world, world.emu.dm_channel(world.alice))
    assert reply.content == "Saved your recipe."
    said = json.loads(world.llm.requests[0]["messages"][-1]["content"])["text"]
    assert "[attached file recipe.txt]\nflour, water, salt\n[end of file]" in said
    assert "[attached file: photo.png (image/png" in said
    assert (await bot.engine.memory(f"dm:{world.alice.id}")).archival_count == 1
