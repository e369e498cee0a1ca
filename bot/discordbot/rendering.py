"""Text in and out of Discord: mentions resolved to names, replies split at Discord's limit."""

from __future__ import annotations

import re
from typing import NamedTuple

import discord

MESSAGE_LIMIT = 2000  # characters of content (discord-api-docs docs/resources/Message.md)
# "<@id> " in front of a message: a snowflake is a 64-bit integer, at most 20 digits.
MENTION_ROOM = len("<@18446744073709551615> ")
_MENTION = re.compile(r"<(@!?|@&|#)(\d{15,20})>")
_FENCE = re.compile(r"^\s*(```+)(\S*)")


def resolve_mentions(message: discord.Message, bot_id: int | None = None) -> str:
    """Replace <@id>, <@&id>, <#id> with readable names; drop a leading mention of the bot."""
    users = {u.id: u.display_name for u in message.mentions}
    roles = {r.id: r.name for r in message.role_mentions}
    channels = {c.id: getattr(c, "name", str(c.id)) for c in message.channel_mentions}
    text = message.content
    if bot_id is not None:
        text = re.sub(rf"^\s*<@!?{bot_id}>[\s,:]*", "", text)

    def name(match: re.Match[str]) -> str:
        kind, raw = match.group(1), int(match.group(2))
        if kind == "@&":
            return f"@{roles.get(raw, 'unknown-role')}"
        if kind == "#":
            guild = message.guild
            channel = guild.get_channel(raw) if guild else None
            return f"#{channels.get(raw) or getattr(channel, 'name', 'unknown-channel')}"
        member = message.guild.get_member(raw) if message.guild else None
        return f"@{users.get(raw) or getattr(member, 'display_name', 'unknown-user')}"

    return _MENTION.sub(name, text).strip()


QUOTED_CHARS = 500  # of a referenced message shown with a reply


def describe_reference(message: discord.Message, bot_id: int) -> str | None:
    """The message a reply answers, named like a mention: "[replying to Bob: ...]"."""
    reference = message.reference
    if reference is None or message.type != discord.MessageType.reply:
        return None
    target = reference.resolved or reference.cached_message
    if isinstance(target, discord.DeletedReferencedMessage):
        return "[replying to a deleted message]"
    if not isinstance(target, discord.Message):
        return None  # not sent along (Discord resolves only one level); not worth a fetch
    who = "your message" if target.author.id == bot_id else target.author.display_name
    said = resolve_mentions(target, bot_id) or describe_files(target)
    if len(said) > QUOTED_CHARS:
        said = said[:QUOTED_CHARS] + "…"
    return f"[replying to {who}: {said}]"


def describe_files(message: discord.Message) -> str:
    return " ".join(describe_attachment(a) for a in message.attachments)


async def message_text(message: discord.Message, bot_id: int) -> str:
    """What the agent stores of a Discord message: the message a reply answers, the text with
    mentions resolved, and small text files in full."""
    parts = (describe_reference(message, bot_id), resolve_mentions(message, bot_id),
             await read_attachments(message))
    return "\n".join(part for part in parts if part)


INLINE_TEXT_BYTES = 64_000
TEXT_SUFFIXES = (".txt", ".md", ".csv", ".json", ".log", ".py", ".yaml", ".yml", ".toml")


def is_small_text(attachment: discord.Attachment) -> bool:
    kind = (attachment.content_type or "").split(";")[0]
    textual = kind.startswith("text/") or attachment.filename.lower().endswith(TEXT_SUFFIXES)
    return textual and attachment.size <= INLINE_TEXT_BYTES


async def read_attachments(message: discord.Message) -> str:
    """Small text files are shown to the agent in full (so it can store them in archival
    memory when asked); other files are described."""
    parts = []
    for attachment in message.attachments:
        if is_small_text(attachment):
            try:
                data = await attachment.read()
            except discord.HTTPException:
                data = b""
            if data and b"\x00" not in data[:4096]:
                text = data.decode("utf-8", "replace")
                parts.append(f"[attached file {attachment.filename}]\n{text}\n[end of file]")
                continue
        parts.append(describe_attachment(attachment))
    return "\n".join(parts)


def describe_attachment(attachment: discord.Attachment) -> str:
    size = f"{attachment.size / 1024:.1f} KB"
    kind = attachment.content_type or "unknown type"
    label = f" — {attachment.description}" if attachment.description else ""
    return f"[attached file: {attachment.filename} ({kind}, {size}){label}]"


class Part(NamedTuple):
    """One message of a split reply: `body` is a slice of the reply, `reopen` and `close` the
    fence lines added so a code block cut in two renders in both messages."""

    reopen: str
    body: str
    close: str

    @property
    def rendered(self) -> str:
        return f"{self.reopen}{self.body}{self.close}"


def split_message(text: str, limit: int = MESSAGE_LIMIT, *, reserve: int = 0) -> list[str]:
    """Split into messages of at most `limit` characters (the first leaves `reserve` free for a
    mention in front of it), at line or word boundaries, closing and reopening code fences so
    each message renders on its own."""
    return [part.rendered for part in split_parts(text, limit, reserve=reserve)]


def split_parts(text: str, limit: int = MESSAGE_LIMIT, *, reserve: int = 0) -> list[Part]:
    """split_message with the added fence lines kept apart: the bodies joined are the text.

    A line starting (after blanks) with ``` opens or closes a code block, as a line appears in
    the message it lands in. Room for the fence lines is counted before a piece is added, so a
    closing fence never pushes a message over the limit."""
    text = text.strip()
    if not text:
        return []
    whole = Part("", text, _close(_advance(None, text)[2], text))  # an open block is closed
    if len(whole.rendered) + reserve <= limit:
        return [whole]
    width = limit - max(reserve, _REOPEN_MAX + 1) - len(_CLOSE_AFTER_TEXT)
    if width < 1:
        raise ValueError(f"a limit of {limit} leaves no room for text")
    parts: list[Part] = []
    budget = limit - reserve  # the first message keeps room for a mention
    reopen, body = "", ""
    # The open fence before the message's current line, that line so far, the open fence now.
    line_opener, line, opener = None, "", None
    for piece in _pieces(text, width):
        after = _advance(line_opener, line + piece)
        if body and len(reopen) + len(body) + len(piece) + len(_close(after[2], piece)) > budget:
            parts.append(Part(reopen, body, _close(opener, body)))
            reopen, body, budget = (f"{opener}\n" if opener else ""), "", limit
            after = _advance(opener, piece)  # the piece now starts a line after the reopening
        body += piece
        line_opener, line, opener = after
    parts.append(Part(reopen, body, _close(opener, body)))
    return parts


def _advance(opener: str | None, text: str) -> tuple[str | None, str, str | None]:
    """Read text that starts a line with `opener` open: the open fence before its last
    (possibly unfinished) line, that line, and the open fence counting that line too."""
    if "`" not in text:  # the common case, and no fence without a backtick
        return opener, text.rpartition("\n")[2], opener
    *lines, last = text.split("\n")
    for line in lines:
        opener = _toggle(opener, line)
    return opener, last, _toggle(opener, last)


_REOPEN_MAX = 32  # a longer fence line is reopened as a bare ``` (the info string is a hint)
_CLOSE_AFTER_TEXT = "\n```"


def _toggle(opener: str | None, line_start: str) -> str | None:
    """The open fence after a line that starts with `line_start`."""
    match = _FENCE.match(line_start)
    if not match:
        return opener
    if opener is not None:
        return None
    fence = f"{match.group(1)}{match.group(2)}"
    return fence if len(fence) <= _REOPEN_MAX else "```"


def _close(opener: str | None, body: str) -> str:
    if opener is None:
        return ""
    return "```" if body.endswith("\n") else _CLOSE_AFTER_TEXT


def _pieces(text: str, width: int) -> list[str]:
    """The text cut into lines (each keeps its newline), and a line longer than `width` into
    pieces at spaces (a space stays with the piece before it), a longer word cut hard."""
    pieces: list[str] = []
    for line in _LINES.findall(text):
        while len(line) > width:
            cut = line.rfind(" ", 0, width) + 1 or width
            pieces.append(line[:cut])
            line = line[cut:]
        if line:
            pieces.append(line)
    return pieces


_LINES = re.compile(r"[^\n]*\n|[^\n]+")
