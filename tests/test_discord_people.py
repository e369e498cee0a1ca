"""Per-person blocks over the emulator: /memory shows a member their own block (a manager any
block), /forget-me erases the person's block, /export includes the blocks."""

from __future__ import annotations

import json

from bot.discordbot.bot import Mnemocord
from tests.discord_world import World, next_reply, reply_with
from tests.llm_server import calls
from tests.test_discord_commands import confirm, slash


def noted(user_id: int, fact: str, answer: str) -> object:
    return calls([("core_memory_append", {"label": f"person:{user_id}", "content": fact,
                                          "request_heartbeat": False}),
                  ("send_message", {"message": answer})])


async def test_memory_forget_me_and_export_with_person_blocks(world: World, bot: Mnemocord
                                                              ) -> None:
    alice, bob, carol, general = world.alice, world.bob, world.carol, world.general
    world.llm.push(noted(alice.id, "Alice likes tea.", "noted, Alice"),
                   noted(bob.id, "Bob plays the cello.", "noted, Bob"))
    await world.emu.user_sends(alice, general, f"{world.mention()} I like tea")
    await next_reply(world, general)
    await world.emu.user_sends(bob, general, f"{world.mention()} I play the cello")
    await next_reply(world, general)
    # Both blocks were in the prompt of Bob's turn, labelled with id and name.
    system = world.llm.requests[-1]["messages"][0]["content"]
    assert f'<person:{alice.id} name="Alice">\nAlice likes tea.' in system
    assert f"<person:{bob.id} " in system

    own = await slash(world, alice, general, "memory")
    assert own.ephemeral and "Alice likes tea." in own.content
    assert "cello" not in own.content and "persona" not in own.content
    other = await slash(world, alice, general, "memory", {"person": bob})
    assert other.ephemeral and "Manage Server" in other.content and "cello" not in other.content
    everything = await slash(world, carol, general, "memory")
    assert "Alice likes tea." in everything.content and "Bob plays the cello." in everything.content
    one = await slash(world, carol, general, "memory", {"person": bob})
    assert "Bob plays the cello." in one.content and "tea" not in one.content

    shared = f"channel:{general.id}"
    exported = await bot.engine.export(shared)
    assert {p["value"] for p in exported["people"]} == {"Alice likes tea.",
                                                         "Bob plays the cello."}

    prompt = await slash(world, alice, general, "forget-me")
    done = await confirm(world, alice, prompt)
    assert "1 block(s) of notes about you" in done.content
    exported = json.dumps(await bot.engine.export(shared))
    assert "likes tea" not in exported and "Bob plays the cello." in exported
    empty = await slash(world, alice, general, "memory")
    assert "no notes about you" in empty.content
    world.llm.push(reply_with("hello again"))
    await world.emu.user_sends(bob, general, f"{world.mention()} still there?")
    await next_reply(world, general)
    assert "likes tea" not in world.llm.requests[-1]["messages"][0]["content"]
