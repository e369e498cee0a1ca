"""Slash commands that mirror the terminal: /memory, /pop, /heartbeat, /memorywarning, /dump,
/save, /load, /retry, /summarize, /search, /persona, /attach."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import personas
from bot.agent import TurnResult
from bot.commands import CommandError
from bot.discordbot.cogs.chat import ChatCog
from bot.discordbot.delivery import deliver
from bot.discordbot.permissions import Refused, can_manage_server, require_memory_access, route_of
from bot.discordbot.rendering import split_message
from bot.discordbot.routing import Route
from bot.messages import Message

if TYPE_CHECKING:
    from bot.discordbot.bot import Mnemocord

log = logging.getLogger(__name__)

Interaction = discord.Interaction["Mnemocord"]
MAX_ATTACHMENT_BYTES = 2_000_000
MAX_PEOPLE_SHOWN = 20  # person blocks listed by /memory (each up to PERSON_BLOCK_LIMIT chars)
AUTOCOMPLETE_SECONDS = 2.0  # of Discord's 3, leaving room for the answer's trip


async def respond(interaction: Interaction, text: str, *, ephemeral: bool = True) -> None:
    """Answer with any amount of text: the first chunk as the response, the rest as followups."""
    chunks = split_message(text) or ["(nothing)"]
    for chunk in chunks:
        if interaction.response.is_done():
            await interaction.followup.send(chunk, ephemeral=ephemeral,
                                            allowed_mentions=discord.AllowedMentions.none())
        else:
            await interaction.response.send_message(
                chunk, ephemeral=ephemeral, allowed_mentions=discord.AllowedMentions.none())


def persona_choices(bot: Mnemocord, current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete for persona names from the personas folder (Discord shows at most 25)."""
    names = personas.list_names(bot.settings.personas_dir)
    return [app_commands.Choice(name=n, value=n) for n in names if current in n][:25]


def quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.split("\n")) if text else "> *(empty)*"


def render_stored(message: Message) -> str:
    when = discord.utils.format_dt(message.created_at, "f")
    if message.kind == "user_message":
        return f"{when} **{message.sender_name or 'user'}**: {message.text}"
    if message.role == "assistant":
        parts = [f"💭 *{message.content}*"] if message.content else []
        if message.text:
            parts.append(f"🤖 {message.text}")
        parts += [f"⚡ `{c.name}`" for c in message.tool_calls if c.name != "send_message"]
        return f"{when} " + " ".join(parts)
    if message.role == "tool":
        return f"{when} ⚡ result of `{message.tool_name}`"
    return f"{when} ⚙ {message.kind}"


class MemoryCog(commands.Cog):
    def __init__(self, bot: Mnemocord) -> None:
        self.bot = bot

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return self.bot.engine

    async def _agent_route(self, interaction: Interaction, *, private: bool = True) -> Route:
        """Check access, acknowledge at once (loading an agent may take longer than Discord's
        3-second deadline), then make sure the agent exists."""
        task = asyncio.current_task()
        if task is not None:
            self.bot.track(task)  # a shutdown lets the command finish (and mark what it showed)
        # Acknowledge before any database or REST work (Discord's 3-second deadline). Where the
        # caller may not be allowed (only the database knows), defer privately so a refusal
        # stays private.
        public = not private and self._known_allowed(interaction)
        await interaction.response.defer(ephemeral=not public, thinking=True)
        route = await require_memory_access(interaction)
        await self.engine.agent(route.agent_id, route.spec)  # create on first use
        return route

    def _known_allowed(self, interaction: Interaction) -> bool:
        """Callers allowed before any lookup: in a DM, with Manage Server, or a bot owner."""
        return (interaction.guild is None or can_manage_server(interaction)
                or interaction.user.id in self.bot.settings.discord_owner_ids)

    @staticmethod
    async def _note(interaction: Interaction, text: str) -> None:
        """A private word to the caller; with the token run out (401 50027) it is dropped,
        which loses nothing (the answer itself goes through the outbox)."""
        try:
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as error:
            log.warning("could not answer /%s: %s", getattr(interaction.command, "name", "?"),
                        error)

    @staticmethod
    def _channel_address(interaction: Interaction) -> str:
        """The outbox address of the command's channel (no message to reply to): the answer
        is committed there, so an expired token or a crash before the followup loses nothing."""
        return f"{interaction.channel_id}:"

    async def _turn_followup(self, interaction: Interaction, result: TurnResult) -> None:
        """Show a turn's answer as the command's response. An answer to a person's message is
        in the outbox too (a /retry answers one again, a heartbeat may answer one waiting):
        once shown here it is marked delivered, or the next start would post it again."""
        texts = result.texts
        if not texts:
            await self._note(interaction, "*(the agent took a step but said nothing)*")
            return
        chat = self.bot.get_cog("ChatCog")
        if not self._known_allowed(interaction) and result.outbox and isinstance(chat, ChatCog):
            # Deferred privately (the caller's access was unknown), but the agent's answer is
            # meant for the channel: posted there like any reply, from the outbox.
            await chat.deliver_outbox(result.outbox)
            await self._note(interaction, "The agent answered in the channel.")
            return
        outbox_ids = [item.id for item in result.outbox]  # one per text, in order
        first, *rest = split_message(texts[0])
        try:
            await interaction.followup.send(
                first, allowed_mentions=discord.AllowedMentions(everyone=False, roles=False,
                                                                users=False))
        except discord.HTTPException as error:  # e.g. the interaction token ran out
            log.warning("could not show the answer to /%s: %s",
                        getattr(interaction.command, "name", "?"), error)
            if isinstance(chat, ChatCog):
                await chat.deliver_outbox(result.outbox)  # as replies to what they answer
            return
        shown: list[str] = []
        channel = interaction.channel
        for index, chunks in enumerate([rest, *([text] for text in texts[1:])]):
            sent = channel is not None or not chunks
            for chunk in chunks:
                if channel is None or not sent:
                    break  # left in the outbox: the next start delivers it
                sent = await deliver(channel, chunk, reply_to=None, ping=[])
            if sent and index < len(outbox_ids):
                shown.append(outbox_ids[index])
        await self.engine.mark_delivered(shown)

    async def _own_block(self, interaction: Interaction, route: Route) -> None:
        """In a shared channel a member without memory access sees only their own block
        (bot/memory/people.py)."""
        user = interaction.user
        block = (await self.engine.person_block(route.agent_id, str(user.id))
                 if await self.engine.exists(route.agent_id) else None)
        if block is None or not block["value"]:
            await respond(interaction, "I keep no notes about you in this channel yet. (Only"
                          " members with Manage Server can see the channel's whole memory.)")
            return
        await respond(interaction, f"**What I keep about you here** (`{block['label']}`)\n"
                      + quote(str(block["value"])) + "\nUse /forget-me to erase it.")

    @app_commands.command(name="memory", description="Show core memory and memory counts.")
    @app_commands.describe(person="In a shared channel: whose notes to show (yours unless you"
                                  " have Manage Server).")
    async def memory(self, interaction: Interaction, person: discord.User | None = None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.bot.track(task)
        await interaction.response.defer(ephemeral=True, thinking=True)  # before any lookup
        try:
            route = await require_memory_access(interaction)
        except Refused:
            route = await route_of(interaction)
            if route.private or (person is not None and person.id != interaction.user.id):
                raise
            await self._own_block(interaction, route)
            return
        await self.engine.agent(route.agent_id, route.spec)  # create on first use
        view = await self.engine.memory(route.agent_id)
        if person is not None:
            found = [b for b in view.people if b["person_id"] == str(person.id)]
            text = (f"**{found[0]['label']}** ({found[0]['name']})\n{quote(found[0]['value'])}"
                    if found else f"I keep no block for {person.mention} here.")
            await respond(interaction, text)
            return
        lines = [f"**Memory of `{route.agent_id}`**"]
        for block in view.blocks:
            value = str(block["value"])
            lines.append(f"**{block['label']}** ({len(value)}/{block['limit']} characters)")
            lines.append(quote(value))
        noted = [block for block in view.people if block["value"]]
        for block in noted[-MAX_PEOPLE_SHOWN:]:  # the latest to join; a big channel has many
            lines.append(f"**{block['label']}** ({block['name']})")
            lines.append(quote(str(block["value"])))
        if len(noted) > MAX_PEOPLE_SHOWN:
            lines.append(f"*{len(noted) - MAX_PEOPLE_SHOWN} more person blocks: see"
                         " `/memory person:` or /export.*")
        if view.summary:
            lines += ["**Summary of older conversation**", quote(view.summary)]
        lines.append(f"{view.in_context} messages in context · {view.recall_count} in recall"
                     f" memory · {view.archival_count} passages in archival memory")
        await respond(interaction, "\n".join(lines))

    @app_commands.command(name="pop", description="Undo the last messages.")
    @app_commands.describe(n="How many messages to remove (default 3).")
    async def pop(self, interaction: Interaction, n: app_commands.Range[int, 1, 50] = 3) -> None:
        route = await self._agent_route(interaction)
        try:
            removed = await self.engine.pop(route.agent_id, n)
        except CommandError as error:
            await respond(interaction, str(error))
            return
        await respond(interaction, f"Removed the last {removed} messages.")

    @app_commands.command(name="heartbeat", description="Wake the agent for a step.")
    async def heartbeat(self, interaction: Interaction) -> None:
        route = await self._agent_route(interaction, private=False)
        result = await self.engine.heartbeat(route.agent_id,
                                             external_id=self._channel_address(interaction))
        await self._turn_followup(interaction, result)

    @app_commands.command(name="memorywarning",
                          description="Send the agent a memory-pressure warning.")
    async def memorywarning(self, interaction: Interaction) -> None:
        route = await self._agent_route(interaction, private=False)
        result = await self.engine.memory_warning(route.agent_id,
                                                  external_id=self._channel_address(interaction))
        await self._turn_followup(interaction, result)

    @app_commands.command(name="retry", description="Answer the last message again.")
    async def retry(self, interaction: Interaction) -> None:
        route = await self._agent_route(interaction, private=False)
        try:
            result = await self.engine.retry(route.agent_id)
        except CommandError as error:
            await interaction.followup.send(str(error), ephemeral=True)
            return
        await self._turn_followup(interaction, result)

    @app_commands.command(name="dump", description="Show the last stored messages.")
    @app_commands.describe(n="How many messages (default 10).")
    async def dump(self, interaction: Interaction, n: app_commands.Range[int, 1, 100] = 10) -> None:
        route = await self._agent_route(interaction)
        messages = await self.engine.dump(route.agent_id, n)
        text = "\n".join(render_stored(m) for m in messages) or "No messages yet."
        await respond(interaction, text)

    @app_commands.command(name="save", description="Save a checkpoint of the agent's memory.")
    @app_commands.describe(name="Checkpoint name (letters, digits, - and _).")
    async def save(self, interaction: Interaction, name: app_commands.Range[str, 1, 64]) -> None:
        route = await self._agent_route(interaction)
        try:
            await self.engine.save(route.agent_id, name)
        except CommandError as error:
            await respond(interaction, str(error))
            return
        await respond(interaction, f"Saved checkpoint `{name}`.")

    @app_commands.command(name="load", description="Restore a saved checkpoint.")
    @app_commands.describe(name="Checkpoint name.")
    async def load(self, interaction: Interaction, name: app_commands.Range[str, 1, 64]) -> None:
        route = await self._agent_route(interaction)
        try:
            await self.engine.load(route.agent_id, name)
        except CommandError as error:
            await respond(interaction, str(error))
            return
        await respond(interaction, f"Loaded checkpoint `{name}`. Later messages stay in recall"
                                   " memory.")

    @load.autocomplete("name")
    async def _checkpoint_names(self, interaction: Interaction, current: str
                                ) -> list[app_commands.Choice[str]]:
        # An autocomplete cannot be deferred: its answer is the acknowledgement, so the reads
        # are bounded to answer (maybe with nothing) inside Discord's 3 seconds.
        try:
            async with asyncio.timeout(AUTOCOMPLETE_SECONDS):
                route = await require_memory_access(interaction)
                names = await self.engine.checkpoints(route.agent_id)
        except (app_commands.CheckFailure, TimeoutError):
            return []
        return [app_commands.Choice(name=n, value=n) for n in names if current in n][:25]

    @app_commands.command(name="summarize", description="Fold older messages into the summary.")
    async def summarize(self, interaction: Interaction) -> None:
        route = await self._agent_route(interaction)
        evicted = await self.engine.summarize(route.agent_id)
        await interaction.followup.send(
            f"Summarized {evicted} messages." if evicted else "Nothing to summarize yet.",
            ephemeral=True)

    @app_commands.command(name="search", description="Search the agent's memory.")
    @app_commands.describe(where="Recall (past messages) or archival (stored notes).",
                           query="What to look for.", page="Result page, from 0.")
    async def search(self, interaction: Interaction, where: Literal["recall", "archival"],
                     query: app_commands.Range[str, 1, 300],
                     page: app_commands.Range[int, 0, 1000] = 0) -> None:
        route = await self._agent_route(interaction)
        try:
            if where == "recall":
                result = await self.engine.search_recall(route.agent_id, query, page)
                lines = [result.header()] + [render_stored(m) for m in result.items]
            else:
                found = await self.engine.search_archival(route.agent_id, query, page)
                lines = [f"{found.total} passages, page {page} of 0-{found.pages - 1}:"]
                lines += [f"• {p.text}" for p in found.items]
        except CommandError as error:
            lines = [str(error)]
        await respond(interaction, "\n".join(lines))

    @app_commands.command(name="persona", description="Change who the agent is.")
    @app_commands.describe(name="A persona from the bot's personas folder.",
                           text="Or your own persona text.")
    async def persona(self, interaction: Interaction, name: str | None = None,
                      text: app_commands.Range[str, 1, 2000] | None = None) -> None:
        route = await self._agent_route(interaction)
        if (name is None) == (text is None):
            await respond(interaction, "Give either a persona `name` or your own `text`.")
            return
        try:
            if name is not None:
                text = personas.read(self.bot.settings.personas_dir, name)
            await self.engine.set_persona(route.agent_id, text or "")
        except ValueError as error:  # unknown/invalid name, over the block limit
            await respond(interaction, str(error))
            return
        await respond(interaction, "Persona updated.")

    @persona.autocomplete("name")
    async def _persona_names(self, interaction: Interaction, current: str
                             ) -> list[app_commands.Choice[str]]:
        return persona_choices(self.bot, current)

    @app_commands.command(name="attach", description="Store a text file in archival memory.")
    @app_commands.describe(file="A UTF-8 text file (at most 2 MB).")
    async def attach(self, interaction: Interaction, file: discord.Attachment) -> None:
        route = await self._agent_route(interaction)
        if file.size > MAX_ATTACHMENT_BYTES:
            await respond(interaction, "That file is larger than 2 MB.")
            return
        try:
            data = await file.read()
        except discord.HTTPException as error:  # the CDN lost it or refused: say so, once
            log.warning("could not download the attachment for /attach: %s", error)
            await interaction.followup.send("I couldn't download that file from Discord; please"
                                            " try again.", ephemeral=True)
            return
        if b"\x00" in data[:4096]:
            await interaction.followup.send("That looks like a binary file; attach a text file.",
                                            ephemeral=True)
            return
        try:
            count = await self.engine.attach(route.agent_id, data.decode("utf-8", "replace"),
                                             source=file.filename)
        except CommandError as error:
            await interaction.followup.send(str(error), ephemeral=True)
            return
        await interaction.followup.send(
            f"Stored `{file.filename}` in archival memory ({count} passages).", ephemeral=True)
