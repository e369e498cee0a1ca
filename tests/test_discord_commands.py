"""Every slash command over the emulator: as the owner of a DM agent, and the permission rules
for shared channel agents (refused for plain members, allowed for Manage Server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.discordbot.bot import Mnemocord
from tests.discord_emulator.models import Channel, User
from tests.discord_world import World, next_reply, reply_with
from tests.llm_server import call, say


async def slash(world: World, user: User, channel: Channel, name: str,
                options: dict[str, Any] | None = None) -> Any:
    interaction = await world.emu.invoke_slash(user, channel, name, options or {})
    return await interaction.wait_done()


async def confirm(world: World, user: User, prompt: Any, button: str = "confirm") -> Any:
    await world.emu.click_button(user, prompt, button)
    return await world.emu.wait_for(
        lambda: prompt.message if prompt.message.content.startswith(("Done", "Cancelled"))
        else None)


async def test_every_command_in_a_dm(world: World, bot: Mnemocord) -> None:
    dm = world.emu.dm_channel(world.alice)
    alice = world.alice
    world.llm.push(reply_with("Tea is lovely."))
    await world.emu.user_sends_dm(alice, "I love tea")
    await next_reply(world, dm)

    shown = await slash(world, alice, dm, "memory")
    assert shown.ephemeral and f"dm:{alice.id}" in shown.content and "**persona**" in shown.content
    assert "I love tea" in (await slash(world, alice, dm, "dump", {"n": 5})).content
    assert "Saved checkpoint `cp1`" in (await slash(world, alice, dm, "save", {"name": "cp1"})
                                        ).content
    assert "not a valid name" in (await slash(world, alice, dm, "save", {"name": "../x"})
                                  ).content
    assert "Loaded checkpoint" in (await slash(world, alice, dm, "load", {"name": "cp1"})).content
    assert "no checkpoint" in (await slash(world, alice, dm, "load", {"name": "nope"})).content
    found = await slash(world, alice, dm, "search", {"where": "recall", "query": "tea"})
    assert "I love tea" in found.content and found.ephemeral
    stored = await slash(world, alice, dm, "attach",
                         {"file": ("notes.txt", b"Alice's cat is named Pixel.", "text/plain")})
    assert "Stored `notes.txt`" in stored.content
    binary = await slash(world, alice, dm, "attach", {"file": ("x.bin", b"\x00\x01" * 50)})
    assert "binary" in binary.content
    found = await slash(world, alice, dm, "search", {"where": "archival", "query": "cat's name"})
    assert "Pixel" in found.content
    assert "Persona updated" in (await slash(world, alice, dm, "persona", {"name": "ada"})
                                 ).content
    assert "I am Ada" in (await slash(world, alice, dm, "memory")).content
    assert "either" in (await slash(world, alice, dm, "persona")).content
    assert "No persona named" in (await slash(world, alice, dm, "persona", {"name": "zork"})
                                  ).content

    world.llm.push(reply_with("Heartbeat here."), reply_with("Saving things now."),
                   reply_with("Tea, again!"), say("We talked about tea."))
    beat = await slash(world, alice, dm, "heartbeat")
    assert beat.content == "Heartbeat here." and not beat.ephemeral
    assert (await slash(world, alice, dm, "memorywarning")).content == "Saving things now."
    assert (await slash(world, alice, dm, "retry")).content == "Tea, again!"
    assert "Removed the last" in (await slash(world, alice, dm, "pop", {"n": 2})).content
    summarized = await slash(world, alice, dm, "summarize")
    assert summarized.ephemeral and "ummarize" in summarized.content

    exported = await slash(world, alice, dm, "export")
    [(name, data)] = exported.files.items()
    assert name == f"dm-{alice.id}.json"
    payload = json.loads(data)
    assert any(m["text"] == "I love tea" for m in payload["messages"])
    assert "sk-test-secret" not in data.decode()
    whoami = await slash(world, alice, dm, "whoami")
    assert "your private agent" in whoami.content

    prompt = await slash(world, alice, dm, "reset")
    assert prompt.ephemeral and prompt.custom_ids == ["confirm", "cancel"]
    cancelled = await confirm(world, alice, prompt, "cancel")
    assert cancelled.content.startswith("Cancelled") and await bot.engine.exists(f"dm:{alice.id}")
    prompt = await slash(world, alice, dm, "reset")
    await confirm(world, alice, prompt)
    assert not await bot.engine.exists(f"dm:{alice.id}")


# /memory shows a member their own block instead (tests/test_discord_people.py).
MEMORY_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("dump", {}), ("pop", {}), ("save", {"name": "x"}), ("load", {"name": "x"}),
    ("search", {"where": "recall", "query": "x"}), ("persona", {"name": "ada"}),
    ("attach", {"file": ("a.txt", b"text")}), ("heartbeat", {}), ("memorywarning", {}),
    ("retry", {}), ("summarize", {}), ("export", {}), ("reset", {}),
]


@pytest.mark.parametrize(("name", "options"), MEMORY_COMMANDS, ids=[c for c, _ in MEMORY_COMMANDS])
async def test_shared_channel_memory_needs_manage_server(
    world: World, bot: Mnemocord, name: str, options: dict[str, Any]
) -> None:
    world.llm.handler = lambda request: (say("summary") if "tools" not in request
                                         else reply_with("ok"))
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} hello")
    await next_reply(world, world.general)
    refused = await slash(world, world.alice, world.general, name, options)
    assert refused.ephemeral and "Manage Server" in refused.content
    calls_before = world.llm.chat_calls
    allowed = await slash(world, world.carol, world.general, name, options)
    assert "Manage Server" not in allowed.content
    if name in ("heartbeat", "memorywarning", "retry"):
        assert world.llm.chat_calls > calls_before


async def test_channel_settings_and_listen_all(world: World, bot: Mnemocord) -> None:
    with pytest.raises(PermissionError):  # default_member_permissions: hidden from bob
        await world.emu.invoke_slash(world.bob, world.general, "channel", {"listen": "all"})
    world.emu.open_command(world.guild, "channel")  # an admin opens it: the bot still checks
    refused = await slash(world, world.bob, world.general, "channel", {"listen": "all"})
    assert "Manage Server" in refused.content
    done = await slash(world, world.carol, world.general, "channel",
                       {"listen": "all", "persona": "moth"})
    assert "answering **all**" in done.content and "moth" in done.content
    world.llm.push(reply_with("I hear everything now"))
    await world.emu.user_sends(world.bob, world.general, "no mention at all")
    assert (await next_reply(world, world.general)).content == "I hear everything now"
    assert "I am Moth" in world.llm.requests[-1]["messages"][0]["content"]
    bad = await slash(world, world.carol, world.general, "channel", {"persona": "../../x"})
    assert "not a valid name" in bad.content


async def test_forget_me_erases_a_person_everywhere(world: World, bot: Mnemocord) -> None:
    engine = bot.engine
    world.llm.push(reply_with("hi Alice"))
    await world.emu.user_sends_dm(world.alice, "private stuff")
    await next_reply(world, world.emu.dm_channel(world.alice))
    world.llm.push(
        call("core_memory_append", label="human", content=f"Alice ({world.alice.id}) likes tea.",
             request_heartbeat=True),
        reply_with("noted, Alice"),
        call("core_memory_append", label="human", content="Carol likes coffee.",
             request_heartbeat=True),
        reply_with("noted, Carol"),
    )
    await world.emu.user_sends(world.alice, world.general, f"{world.mention()} I like tea")
    await next_reply(world, world.general)
    await world.emu.user_sends(world.carol, world.general, f"{world.mention()} I like coffee")
    await next_reply(world, world.general)

    prompt = await slash(world, world.alice, world.general, "forget-me")
    stranger = await world.emu.click_button(world.bob, prompt, "confirm")
    assert "isn't yours" in (await stranger.wait_done()).content
    done = await confirm(world, world.alice, prompt)
    assert "Erased 1 private agent" in done.content
    assert not await engine.exists(f"dm:{world.alice.id}")
    shared = f"channel:{world.general.id}"
    exported = json.dumps(await engine.export(shared))
    for needle in ("I like tea", "likes tea"):
        assert needle not in exported, exported[max(0, exported.index(needle) - 400):][:600]
    assert "I like coffee" in exported and "Carol likes coffee." in exported
