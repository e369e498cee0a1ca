"""Permissions: every slash command, run by the owner of the agent, a guild admin (Manage
Server), a plain member, a bot owner (the application owner, or DISCORD_OWNER_IDS) and a user
from another guild, in a DM, a shared channel and a per-member channel. Each is allowed or
refused exactly as README.md documents ("Permissions"), and a refusal changes nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from bot.config import Settings
from bot.discordbot.bot import Mnemocord
from bot.engine import Engine
from tests.discord_emulator import Channel, DiscordEmulator, User, run_client
from tests.llm_server import ScriptedLLM, call, say
from tests.sizes import report

MEMORY_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("memory", {}), ("dump", {"n": 5}), ("search", {"where": "recall", "query": "hello"}),
    ("search", {"where": "archival", "query": "hello"}), ("save", {"name": "cp"}),
    ("load", {"name": "cp"}), ("retry", {}), ("heartbeat", {}), ("memorywarning", {}),
    ("summarize", {}), ("pop", {"n": 1}), ("persona", {"name": "ada"}),
    ("attach", {"file": ("notes.txt", b"Some notes.", "text/plain")}), ("export", {}),
    ("reset", {}),
]
OTHER_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("channel", {"listen": "mentions"}), ("sync", {}), ("forget-me", {}), ("whoami", {}),
]
BOT_OWNERS = ("bot_owner", "listed_owner")
REFUSALS = ("only members with the Manage Server permission",
            "Only members with the Manage Server permission can change this.",
            "Channel settings only exist in servers.", "Only the bot's owner can do that.")


def expected(command: str, context: str, role: str) -> bool:
    """README.md, "Permissions": whether `role` may run `command` in `context`."""
    if command in ("whoami", "forget-me", "memory"):
        return True  # for everyone (in a shared channel /memory shows a member their own block)
    if command == "sync":
        return role in BOT_OWNERS
    if command == "channel":  # Manage Server, or a bot owner; only in servers
        return context != "dm" and (role == "admin" or role in BOT_OWNERS)
    if context in ("dm", "per-member"):
        return True  # your own private agent
    return role == "admin" or role in BOT_OWNERS  # a shared channel agent


def hidden(command: str, context: str, role: str) -> bool:
    """Discord's client hides /channel (Manage Server) and /sync (administrators) in servers
    from members without the permission (default_member_permissions); the bot checks too."""
    if context == "dm" or command not in ("channel", "sync"):
        return False
    return role != "admin" or command == "sync"  # "admin" has Manage Server, not Administrator


@dataclass
class Place:
    name: str
    channel: Channel
    mention: str = ""


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator(bot_name="Mnemocord")
    await emulator.start()
    yield emulator
    await emulator.stop()


async def test_every_command_for_every_role(emu: DiscordEmulator, llm: ScriptedLLM,
                                            make_settings: Callable[..., Settings]) -> None:
    boss = emu.create_user("gina", global_name="Gina")  # owns the guild; not a bot owner
    guild = emu.create_guild("Perm Guild", owner=boss)
    admins = emu.create_role(guild, "Admins",
                             permissions=discord.Permissions(manage_guild=True).value)
    roles = {name: emu.create_user(name, global_name=name.title())
             for name in ("alice", "carol", "bob", "dave")}
    roles["bot_owner"] = emu.owner  # the application's owner, a plain member here
    for name, user in roles.items():
        emu.add_member(guild, user, roles=[admins] if name == "carol" else [])
    who = {"owner": roles["alice"], "admin": roles["carol"], "member": roles["bob"],
           "listed_owner": roles["dave"], "bot_owner": roles["bot_owner"]}
    otto = emu.create_user("otto")
    outsider = emu.create_user("olga", global_name="Olga")
    elsewhere = emu.create_guild("Other Guild", owner=otto)
    emu.add_member(elsewhere, outsider)
    who["outsider"] = outsider
    general = emu.create_text_channel(guild, "general")
    desks = emu.create_text_channel(guild, "desks")
    lobby = emu.create_text_channel(elsewhere, "lobby")
    mention = f"<@{emu.bot_user.id}> "

    settings = make_settings(discord_token="unused", discord_owner_ids=[roles["dave"].id])
    llm.handler = lambda req: call("send_message", message="ok") if "tools" in req else say("s")
    outcomes: Counter[str] = Counter()
    async with Engine(settings) as engine, run_client(emu, Mnemocord(engine, settings)):
        await (await emu.invoke_slash(boss, desks, "channel", {
            "mode": "per-member", "listen": "all"})).wait_done()

        async def check(context: str, role: str, place: Place) -> None:
            user = who[role]
            # Something to retry, pop and summarize: the user (or a member) talks first.
            speaker = roles["alice"] if place.channel is general else user
            said = await emu.user_sends(speaker, place.channel, f"{place.mention}hello there")
            await emu.wait_for_bot_message(place.channel, lambda m: bool(m.reference) and int(
                m.reference["message_id"]) == said.id, after=said.id)
            for command, options in MEMORY_COMMANDS + OTHER_COMMANDS:
                if command == "channel" and context == "per-member":
                    options = {"mode": "per-member", "listen": "all"}
                before = await state(engine, place.channel)
                if hidden(command, context, role):
                    with pytest.raises(PermissionError):  # default_member_permissions
                        await emu.invoke_slash(user, place.channel, command, options)
                    outcomes["hidden"] += 1
                    continue
                response = await run(emu, user, place.channel, command, options)
                refused = any(r in response.content for r in REFUSALS)
                assert refused != expected(command, context, role), (
                    f"/{command} by {role} in {context}: {response.content!r}")
                if refused:
                    assert response.ephemeral
                    assert await state(engine, place.channel) == before, f"/{command} changed"
                elif command in ("reset", "forget-me"):
                    assert response.custom_ids == ["confirm", "cancel"]
                    await emu.click_button(user, response, "cancel")
                else:
                    assert "Something went wrong" not in response.content
                outcomes["allowed" if not refused else "refused"] += 1

        dms = {role: Place("dm", emu.dm_channel(who[role])) for role in who}
        for role in who:
            await check("dm", role, dms[role])
        for role in ("admin", "member", "bot_owner", "listed_owner"):
            await check("shared", role, Place("shared", general, mention))
        for role in ("owner", "admin", "member"):
            await check("per-member", role, Place("per-member", desks))
            shown = await run(emu, who[role], desks, "whoami", {})
            assert f"member:{who[role].id}`" in shown.content  # always one's own agent
        await check("shared", "outsider", Place("shared", lobby, mention))  # their own guild
        with pytest.raises((ValueError, PermissionError, LookupError)):  # Discord stops this
            await emu.invoke_slash(outsider, general, "memory", {})
    report("permissions", {"interactions": sum(outcomes.values()), **outcomes})


async def run(emu: DiscordEmulator, user: User, channel: Channel, command: str,
              options: dict[str, Any]) -> Any:
    return await (await emu.invoke_slash(user, channel, command, options)).wait_done()


async def state(engine: Engine, channel: Channel) -> str:
    """Everything a command could change about the conversations in a channel."""
    agents = [a["id"] for a in await engine.list_agents() if str(channel.id) in a["id"]]
    exports = [await engine.export(a) for a in agents]
    for data in exports:
        data.pop("exported_at")
    setting = await engine.get_setting(f"discord:channel:{channel.id}")
    return json.dumps([exports, setting], sort_keys=True, default=str)
