"""Text in and out of Discord: mentions resolved to names, replies split at Discord's limit."""

from __future__ import annotations

import re

import discord

MESSAGE_LIMIT = 2000
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


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split into chunks of at most `limit` characters, at line or word boundaries, closing and
    reopening code fences so each chunk renders on its own."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    chunks: list[str] = []
    current = ""
    fence: str | None = None  # the opening line of the code block we are inside
    for line in text.split("\n"):
        for piece in _pieces(line, limit - 16):
            reopen = f"{fence}\n" if fence and not current else ""
            candidate = f"{current}\n{piece}" if current else f"{reopen}{piece}"
            closing = "\n```" if fence else ""
            if len(candidate) + len(closing) > limit and current:
                chunks.append(current + closing)
                current = f"{fence}\n{piece}" if fence else piece
            else:
                current = candidate
        match = _FENCE.match(line)
        if match:
            fence = None if fence else f"{match.group(1)}{match.group(2)}"
    if current.strip():
        chunks.append(current)
    return chunks


def _pieces(line: str, width: int) -> list[str]:
    """A line cut at word boundaries into pieces no longer than width (long words are cut)."""
    if len(line) <= width:
        return [line]
    pieces: list[str] = []
    current = ""
    for word in line.split(" "):
        while len(word) > width:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:width])
            word = word[width:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > width:
            pieces.append(current)
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces
