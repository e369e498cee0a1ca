"""Each Discord rule the emulator enforces rejects a violation the way Discord does (sources
are cited beside the rules in tests/discord_emulator/), and discord.py copes with the real
rate-limit buckets. Time-bound rules are driven with the emulator clock, never with sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_emulator import DiscordEmulator
from tests.discord_emulator.permissions import READ_MESSAGE_HISTORY
from tests.discord_emulator.ratelimit import MESSAGES, RouteLimit

# `world` is the emulator tests' own fixture (a guild with alice and #general).
from tests.test_discord_emulator import TIMEOUT, Seen, World, make_bot, world_fixture  # noqa: F401


async def api(
    emu: DiscordEmulator, method: str, path: str, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    """A raw REST call as the bot (so a test can send what discord.py would not)."""
    headers = {"Authorization": f"Bot {emu.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, emu.api_base + path, json=body, headers=headers) as resp,
    ):
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data, dict(resp.headers)


def error_at(data: dict[str, Any], path: list[str | int]) -> str:
    """The first error code in Discord's 50035 `errors` tree at `path`."""
    assert data["code"] == 50035, data
    node = data["errors"]
    for key in path:
        node = node[str(key)]
    return str(node["_errors"][0]["code"])


# -- replies need Read Message History -------------------------------------------------


async def test_reply_without_read_message_history_is_403_160002(world: World) -> None:
    emu = world.emu
    asked = await emu.user_sends(world.alice, world.chan, "question")
    emu.deny_bot(world.chan, READ_MESSAGE_HISTORY)
    async with emu.run_client(make_bot(Seen())) as bot:
        channel = bot.get_channel(world.chan.id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.Forbidden) as refused:
            await channel.send("answer", reference=channel.get_partial_message(asked.id))
        assert refused.value.status == 403 and refused.value.code == 160002
        plain = await channel.send("answer")  # a plain message needs no history
    assert emu.messages[plain.id].reference is None
    assert [m.content for m in emu.bot_messages(world.chan)] == ["answer"]


# -- nonces ----------------------------------------------------------------------------


async def test_nonce_deduplicates_only_within_the_window(world: World) -> None:
    emu = world.emu
    async with emu.run_client(make_bot(Seen())) as bot:
        channel = bot.get_channel(world.chan.id)
        assert isinstance(channel, discord.TextChannel)
        first = await channel.send("once", nonce="retry-1")
        again = await channel.send("once", nonce="retry-1")
        assert again.id == first.id  # enforce_nonce: Discord returns the earlier message
        emu.advance_clock(emu.nonce_window + 1)
        late = await channel.send("once", nonce="retry-1")
        assert late.id != first.id  # past the window the nonce is forgotten
        assert first.nonce == "retry-1"  # in the create response...
        fetched = [m async for m in channel.history(limit=5)]
        assert fetched and all(m.nonce is None for m in fetched)  # ...never when fetched
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x", nonce="n" * 26)
        assert too_long.value.code == 50035
    assert [m.content for m in emu.bot_messages(world.chan)] == ["once", "once"]


# -- application commands --------------------------------------------------------------


def _slash(**extra: Any) -> dict[str, Any]:
    return {"type": 1, "name": "ok", "description": "fine"} | extra


def _opt(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": 3, "name": name, "description": "an option"} | extra


BAD_COMMANDS: list[tuple[str, dict[str, Any], list[str | int], str]] = [
    ("upper case", _slash(name="Remember"), [0, "name"], "APPLICATION_COMMAND_INVALID_NAME"),
    ("space", _slash(name="forget me"), [0, "name"], "APPLICATION_COMMAND_INVALID_NAME"),
    ("33 chars", _slash(name="a" * 33), [0, "name"], "APPLICATION_COMMAND_INVALID_NAME"),
    ("punctuation", _slash(name="what?"), [0, "name"], "APPLICATION_COMMAND_INVALID_NAME"),
    ("empty description", _slash(description=""), [0, "description"], "BASE_TYPE_BAD_LENGTH"),
    ("long description", _slash(description="d" * 101), [0, "description"],
     "BASE_TYPE_BAD_LENGTH"),
    ("option name", _slash(options=[_opt("Text")]), [0, "options", 0, "name"],
     "APPLICATION_COMMAND_INVALID_NAME"),
    ("option description", _slash(options=[_opt("text", description="x" * 101)]),
     [0, "options", 0, "description"], "BASE_TYPE_BAD_LENGTH"),
    ("required after optional",
     _slash(options=[_opt("a"), _opt("b", required=True)]), [0, "options", 1],
     "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"),
    ("26 options", _slash(options=[_opt(f"o{i}") for i in range(26)]), [0, "options"],
     "BASE_TYPE_MAX_LENGTH"),
    ("26 choices",
     _slash(options=[_opt("c", choices=[{"name": f"n{i}", "value": f"v{i}"} for i in range(26)])]),
     [0, "options", 0, "choices"], "BASE_TYPE_MAX_LENGTH"),
    ("choice name", _slash(options=[_opt("c", choices=[{"name": "n" * 101, "value": "v"}])]),
     [0, "options", 0, "choices", 0, "name"], "BASE_TYPE_BAD_LENGTH"),
    ("choice value", _slash(options=[_opt("c", choices=[{"name": "n", "value": "v" * 101}])]),
     [0, "options", 0, "choices", 0, "value"], "BASE_TYPE_MAX_LENGTH"),
    ("choices with autocomplete",
     _slash(options=[_opt("c", autocomplete=True, choices=[{"name": "n", "value": "v"}])]),
     [0, "options", 0, "autocomplete"],
     "APPLICATION_COMMAND_OPTION_CHOICES_AND_AUTOCOMPLETE_INVALID"),
    ("localized name", _slash(name_localizations={"de": "Merken"}),
     [0, "name_localizations", "de"], "APPLICATION_COMMAND_INVALID_NAME"),
    ("over 8000 characters",
     _slash(options=[_opt(f"o{i}", description="d" * 100, choices=[
         {"name": "n" * 100, "value": f"{j:0100d}"} for j in range(2)]) for i in range(25)]),
     [0], "APPLICATION_COMMAND_TOO_LARGE"),
]


@pytest.mark.parametrize(("case", "command", "path", "code"), BAD_COMMANDS,
                         ids=[c[0] for c in BAD_COMMANDS])
async def test_bulk_overwrite_rejects_what_discord_rejects(
    world: World, case: str, command: dict[str, Any], path: list[str | int], code: str
) -> None:
    emu = world.emu
    status, data, _ = await api(emu, "PUT", f"/applications/{emu.application_id}/commands",
                                [command])
    assert status == 400 and error_at(data, path) == code, (case, data)
    assert emu.registered_commands() == []


async def test_valid_names_and_the_100_command_limit(world: World) -> None:
    emu = world.emu
    route = f"/applications/{emu.application_id}/commands"
    fine = [_slash(name=n) for n in ("forget-me", "it's", "café", "नमस्ते", "สวัสดี", "日本")]
    fine.append({"type": 3, "name": "Forget This Message"})  # context menus: any case, spaces
    status, data, _ = await api(emu, "PUT", route, fine)
    assert status == 200, data
    hundred = [_slash(name=f"c{i}") for i in range(100)]
    assert (await api(emu, "PUT", route, hundred))[0] == 200
    status, data, _ = await api(emu, "PUT", route, [*hundred, _slash(name="c100")])
    assert status == 400 and data["code"] == 30032
    assert len(emu.registered_commands()) == 100


# -- components ------------------------------------------------------------------------


def _button(custom_id: str = "b", label: str = "OK") -> dict[str, Any]:
    return {"type": 2, "style": 1, "custom_id": custom_id, "label": label}


def _row(*children: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(children)}


BAD_COMPONENTS: list[tuple[str, list[dict[str, Any]], list[str | int], str]] = [
    ("custom_id 101", [_row(_button("c" * 101))], ["components", 0, "components", 0, "custom_id"],
     "BASE_TYPE_BAD_LENGTH"),
    ("label 81", [_row(_button(label="l" * 81))], ["components", 0, "components", 0, "label"],
     "BASE_TYPE_MAX_LENGTH"),
    ("6 per row", [_row(*[_button(f"b{i}") for i in range(6)])], ["components", 0, "components"],
     "BASE_TYPE_BAD_LENGTH"),
    ("6 rows", [_row(_button(f"b{i}")) for i in range(6)], ["components"],
     "BASE_TYPE_MAX_LENGTH"),
    ("duplicate custom_id", [_row(_button("same"), _button("same"))],
     ["components", 0, "components", 1, "custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED"),
    ("select beside a button",
     [_row({"type": 3, "custom_id": "s", "options": [{"label": "a", "value": "a"}]}, _button())],
     ["components", 0, "components"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED"),
]


@pytest.mark.parametrize(("case", "components", "path", "code"), BAD_COMPONENTS,
                         ids=[c[0] for c in BAD_COMPONENTS])
async def test_components_beyond_discords_limits_are_400(
    world: World, case: str, components: list[dict[str, Any]], path: list[str | int], code: str
) -> None:
    emu = world.emu
    route = f"/channels/{world.chan.id}/messages"
    ok = await api(emu, "POST", route, {"content": "x", "components": [_row(*[
        _button(f"b{i}", "l" * 80) for i in range(5)])]})
    assert ok[0] == 200  # the limits themselves are allowed
    status, data, _ = await api(emu, "POST", route, {"content": "x", "components": components})
    assert status == 400 and error_at(data, path) == code, (case, data)


# -- autocomplete ----------------------------------------------------------------------


@pytest.mark.parametrize(("choices", "path", "code"), [
    ([f"c{i}" for i in range(26)], ["data", "choices"], "BASE_TYPE_MAX_LENGTH"),
    (["n" * 101], ["data", "choices", 0, "name"], "BASE_TYPE_BAD_LENGTH"),
])
async def test_autocomplete_beyond_limits_is_400(
    world: World, choices: list[str], path: list[str | int], code: str
) -> None:
    emu = world.emu
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    async def complete(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=c, value="v") for c in choices]

    @bot.tree.command(description="Pick")
    @app_commands.autocomplete(thing=complete)
    async def pick(interaction: discord.Interaction, thing: str) -> None:
        await interaction.response.send_message(thing)

    async with emu.run_client(bot):
        await bot.tree.sync()
        inter = await emu.invoke_autocomplete(world.alice, world.chan, "pick", "thing", "")
        error = await inter.wait_error(50035, timeout=TIMEOUT)
    assert error["status"] == 400 and error_at(error, path) == code
    assert inter.choices is None


# -- interaction deadlines on the emulator clock ---------------------------------------


def deadline_bot(gate: asyncio.Event, seen: Seen) -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    @bot.tree.command(description="Answers when the test says so")
    async def later(interaction: discord.Interaction, defer: bool) -> None:
        if defer:
            await interaction.response.defer()
        await gate.wait()
        try:
            if defer:
                await interaction.followup.send("finally")
            else:
                await interaction.response.send_message("finally")
        except discord.HTTPException as error:
            seen.add(error)

    return bot


async def test_a_followup_after_15_minutes_is_401_50027(world: World) -> None:
    emu, gate, seen = world.emu, asyncio.Event(), Seen()
    async with emu.run_client(deadline_bot(gate, seen)) as bot:
        await bot.tree.sync()
        inter = await emu.invoke_slash(world.alice, world.chan, "later", {"defer": True})
        await emu.wait_for(lambda: inter.acknowledged, TIMEOUT, "the defer")
        emu.advance_clock(15 * 60)
        gate.set()
        error = await inter.wait_error(50027, timeout=TIMEOUT)
        failure = await seen.wait(lambda x: isinstance(x, discord.HTTPException))
    assert error["status"] == 401 and error["message"] == "Invalid Webhook Token"
    assert failure.status == 401 and failure.code == 50027
    assert inter.followups == []


async def test_a_first_response_after_3_seconds_is_404_10062(world: World) -> None:
    emu, gate, seen = world.emu, asyncio.Event(), Seen()
    async with emu.run_client(deadline_bot(gate, seen)) as bot:
        await bot.tree.sync()
        inter = await emu.invoke_slash(world.alice, world.chan, "later", {"defer": False})
        emu.advance_clock(3.0)
        assert inter.expired
        gate.set()
        error = await inter.wait_error(10062, timeout=TIMEOUT)
    assert error["status"] == 404 and not inter.done


# -- rate limits -----------------------------------------------------------------------


async def test_message_bucket_is_per_channel_with_real_headers(world: World) -> None:
    emu = world.emu
    emu.ratelimits.routes[("POST", MESSAGES)] = RouteLimit(5, 3600.0)  # no refill mid-test
    other = emu.create_text_channel(world.guild, "other")
    route = f"/channels/{world.chan.id}/messages"
    answers = [await api(emu, "POST", route, {"content": str(i)}) for i in range(6)]
    assert [a[0] for a in answers] == [200] * 5 + [429]
    assert [a[2]["X-RateLimit-Remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert {a[2]["X-RateLimit-Limit"] for a in answers} == {"5"}
    assert len({a[2]["X-RateLimit-Bucket"] for a in answers}) == 1
    _, body, headers = answers[5]
    assert body["global"] is False and 0 < body["retry_after"] <= 3600
    assert headers["X-RateLimit-Scope"] == "user" and "X-RateLimit-Global" not in headers
    assert float(headers["X-RateLimit-Reset-After"]) > 0 and int(headers["Retry-After"]) >= 1
    assert (await api(emu, "POST", f"/channels/{other.id}/messages", {"content": "x"}))[0] == 200
    emu.advance_clock(3600)
    assert (await api(emu, "POST", route, {"content": "refilled"}))[0] == 200
    assert [m.content for m in emu.bot_messages(world.chan)] == [*"01234", "refilled"]


async def test_the_global_limit_answers_a_global_429(world: World) -> None:
    emu = world.emu
    emu.ratelimits.global_limit = RouteLimit(50, 3600.0)
    answers = [await api(emu, "GET", f"/channels/{world.chan.id}") for _ in range(50)]
    emu.ratelimits.default = RouteLimit(1000, 3600.0)
    status, body, headers = await api(emu, "GET", "/users/@me")
    assert [a[0] for a in answers] == [200] * 50
    assert status == 429 and body["global"] is True
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert [r.scope for r in emu.requests if r.status == 429] == ["global"]


async def test_discord_py_honours_buckets_and_delivers_everything_in_order(world: World) -> None:
    emu = world.emu
    emu.ratelimits.routes[("POST", MESSAGES)] = RouteLimit(3, 0.2)
    async with emu.run_client(make_bot(Seen())) as bot:
        channel = bot.get_channel(world.chan.id)
        assert isinstance(channel, discord.TextChannel)
        for i in range(10):
            await channel.send(f"m{i}")
    sends = [r for r in emu.requests if r.template == MESSAGES]
    assert [m.content for m in emu.bot_messages(world.chan)] == [f"m{i}" for i in range(10)]
    assert any(r.remaining == 0 for r in sends)  # the bucket ran dry...
    assert all(r.status == 200 for r in sends)  # ...and discord.py waited instead of a 429


async def test_discord_py_retries_after_a_global_429(world: World) -> None:
    emu = world.emu
    chans = [world.chan, *(emu.create_text_channel(world.guild, f"c{i}") for i in range(2))]
    async with emu.run_client(make_bot(Seen())) as bot:
        emu.ratelimits.global_limit = RouteLimit(4, 0.2)

        async def burst(cid: int) -> None:
            channel = bot.get_channel(cid)
            assert isinstance(channel, discord.TextChannel)
            for i in range(4):
                await channel.send(f"{cid}:{i}")

        await asyncio.gather(*(burst(c.id) for c in chans))
    assert any(r.scope == "global" for r in emu.requests)
    for chan in chans:
        assert [m.content for m in emu.bot_messages(chan)] == [f"{chan.id}:{i}" for i in range(4)]
