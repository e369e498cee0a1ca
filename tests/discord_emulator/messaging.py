"""Creating, editing and deleting messages with Discord's validation rules, and the
MESSAGE_* gateway events (including MESSAGE_CONTENT intent stripping)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from . import payloads
from .components import validate_components
from .errors import (
    CANNOT_DM_USER,
    CANNOT_EDIT_OTHERS,
    CANNOT_REPLY_WITHOUT_HISTORY,
    EMPTY_MESSAGE,
    MISSING_PERMISSIONS,
    REQUEST_TOO_LARGE,
    ApiError,
    form_error,
)
from .models import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    Attachment,
    Channel,
    Message,
    Pings,
    User,
)
from .permissions import (
    ATTACH_FILES,
    MENTION_EVERYONE,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    compute_pings,
    mentioned_ids,
    validate_allowed_mentions,
)

if TYPE_CHECKING:
    from .gateway import Session
    from .interactions import EmuInteraction
    from .state import EmulatorState

MAX_CONTENT = 2000
# Flags a bot may set on a message; ephemeral only through interactions.
_SETTABLE_FLAGS = (1 << 2) | (1 << 12) | (1 << 15)
_EMBED_LIMITS = {"title": 256, "description": 4096}


@dataclass
class Upload:
    index: int
    filename: str
    data: bytes
    content_type: str | None


async def read_body(request: web.Request) -> tuple[dict[str, Any], list[Upload]]:
    """JSON body, or multipart with `payload_json` plus `files[n]` parts."""
    if not request.content_type.startswith("multipart/"):
        if not request.can_read_body:
            return {}, []
        return await request.json(), []
    body: dict[str, Any] = {}
    uploads: list[Upload] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # nested multipart: Discord does not use it
        name = part.name or ""
        data = await part.read()
        if name == "payload_json":
            body = json.loads(data)
        elif name.startswith("files[") or name.startswith("file"):
            index = int(name[6:-1]) if name.startswith("files[") else len(uploads)
            ctype = part.headers.get("Content-Type")
            uploads.append(Upload(index, part.filename or f"file{index}", bytes(data), ctype))
    return body, uploads


def validate_body(body: dict[str, Any]) -> None:
    content = body.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT:
        raise form_error(
            ["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
        )
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        raise form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in _EMBED_LIMITS.items():
            size = len(embed.get(key) or "")
            total += size
            if size > limit:
                raise form_error(
                    ["embeds", i, key],
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limit} or fewer in length.",
                )
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise form_error(
                ["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for f in fields:
            total += len(f.get("name") or "") + len(f.get("value") or "")
        total += len((embed.get("footer") or {}).get("text") or "")
        total += len((embed.get("author") or {}).get("name") or "")
    if total > 6000:
        raise form_error(
            ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    validate_allowed_mentions(body.get("allowed_mentions"))
    validate_components(list(body.get("components") or []), int(body.get("flags") or 0))
    nonce = body.get("nonce")
    # developers/resources/message.mdx (Create Message): nonce is "up to 25 characters".
    if isinstance(nonce, str) and len(nonce) > 25:
        raise form_error(["nonce"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")


def _is_empty(msg: Message) -> bool:
    return not (msg.content.strip() or msg.embeds or msg.attachments or msg.components)


def _attachments(
    state: EmulatorState, channel_id: int, body: dict[str, Any], uploads: list[Upload]
) -> list[Attachment]:
    meta = {str(a.get("id")): a for a in body.get("attachments") or []}
    out = []
    for up in uploads:
        info = meta.get(str(up.index), {})
        filename = info.get("filename") or up.filename
        out.append(
            make_attachment(
                state, channel_id, filename, up.data, up.content_type, info.get("description")
            )
        )
    return out


def make_attachment(
    state: EmulatorState,
    channel_id: int,
    filename: str,
    data: bytes,
    content_type: str | None = None,
    description: str | None = None,
) -> Attachment:
    att_id = state.ids.next()
    url = f"{state.base_url}/attachments/{channel_id}/{att_id}/{filename}"
    return Attachment(att_id, filename, data, url, content_type, description)


def resolve_pings(
    state: EmulatorState,
    channel: Channel,
    author: User,
    content: str,
    allowed: dict[str, Any] | None,
    replied_to: Message | None,
) -> Pings:
    guild = state.guild_of(channel)
    perms = state.permissions(channel, author.id)
    return compute_pings(
        content,
        allowed,
        in_guild=guild is not None,
        can_mention_everyone=bool(perms & MENTION_EVERYONE),
        mentionable_roles={r.id for r in guild.roles.values() if r.mentionable} if guild else set(),
        replied_user_id=replied_to.author.id if replied_to else None,
    )


def resolve_reference(
    state: EmulatorState, channel: Channel, ref: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, Message | None]:
    """Validate message_reference like Discord: unknown target is a 50035 unless
    fail_if_not_exists is false, in which case the reply silently becomes a plain message."""
    if not ref or ref.get("message_id") is None:
        return None, None
    target = state.messages.get(int(ref["message_id"]))
    ref_channel = int(ref.get("channel_id") or channel.id)
    if target is None or target.deleted or target.channel_id != ref_channel:
        if ref.get("fail_if_not_exists", True):
            raise form_error(
                ["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
            )
        return None, None
    out = {"type": 0, "message_id": str(target.id), "channel_id": str(target.channel_id)}
    if target.guild_id:
        out["guild_id"] = str(target.guild_id)
    return out, target


def check_can_send(state: EmulatorState, channel: Channel, uploads: list[Upload]) -> None:
    if channel.is_dm and not channel.recipients[0].accepts_dms:
        raise ApiError(403, CANNOT_DM_USER, "Cannot send messages to this user")
    perms = state.permissions(channel, state.bot_user.id)
    need = VIEW_CHANNEL | (SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES)
    if uploads:
        need |= ATTACH_FILES
    if perms & need != need:
        raise ApiError(403, MISSING_PERMISSIONS, "Missing Permissions")


def check_can_reply(state: EmulatorState, channel: Channel, ref: dict[str, Any] | None) -> None:
    """A reply needs Read Message History in a guild channel, whether or not the target
    exists: developers/topics/opcodes-and-status-codes.mdx (JSON error codes) lists 160002
    "Cannot reply without permission to read message history", answered with 403."""
    if not ref or ref.get("message_id") is None or channel.is_dm:
        return
    if not state.permissions(channel, state.bot_user.id) & READ_MESSAGE_HISTORY:
        raise ApiError(
            403,
            CANNOT_REPLY_WITHOUT_HISTORY,
            "Cannot reply without permission to read message history",
        )


def create_bot_message(
    state: EmulatorState,
    channel: Channel,
    body: dict[str, Any],
    uploads: list[Upload],
    *,
    interaction: EmuInteraction | None = None,
    extra_flags: int = 0,
    msg_type: int = 0,
) -> Message:
    """Validate and store a message the bot sends (REST or interaction/webhook), then
    dispatch MESSAGE_CREATE back to the bot unless it is ephemeral."""
    validate_body(body)
    if sum(len(u.data) for u in uploads) > state.upload_limit:
        raise ApiError(413, REQUEST_TOO_LARGE, "Request entity too large")
    if interaction is None:
        check_can_send(state, channel, uploads)
        check_can_reply(state, channel, body.get("message_reference"))
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            # Only "in the past few minutes" (state.nonce_window): an older twin is no
            # match, and the repeat becomes a second message.
            oldest = state.clock.now() - state.nonce_window
            for old in state.bot_messages(channel):
                if old.nonce == nonce and old.created_clock >= oldest:
                    return old  # Discord de-duplicates retried sends with the same nonce
    ref, target = resolve_reference(state, channel, body.get("message_reference"))
    flags = int(body.get("flags") or 0) & (_SETTABLE_FLAGS | (FLAG_EPHEMERAL if interaction else 0))
    content = str(body.get("content") or "")
    pings = resolve_pings(
        state, channel, state.bot_user, content, body.get("allowed_mentions"), target
    )
    msg = Message(
        id=state.ids.next(),
        channel_id=channel.id,
        guild_id=channel.guild_id,
        author=state.bot_user,
        content=content,
        type=19 if ref else msg_type,
        embeds=list(body.get("embeds") or []),
        components=list(body.get("components") or []),
        attachments=_attachments(state, channel.id, body, uploads),
        flags=flags | extra_flags,
        tts=bool(body.get("tts")),
        reference=ref,
        allowed_mentions=body.get("allowed_mentions"),
        pings=pings,
        mention_everyone=pings.everyone,
        mention_user_ids=sorted(pings.users),
        mention_role_ids=sorted(pings.roles),
        nonce=body.get("nonce"),
        interaction=interaction,
    )
    if interaction is not None:
        msg.webhook_id = msg.application_id = state.application_id
    if _is_empty(msg) and not msg.loading:
        raise ApiError(400, EMPTY_MESSAGE, "Cannot send an empty message")
    state.store_message(msg)
    if not msg.ephemeral:
        dispatch_message(state, "MESSAGE_CREATE", msg)
    return msg


def create_user_message(
    state: EmulatorState,
    author: User,
    channel: Channel,
    content: str,
    attachments: list[Attachment],
    reference: Message | None,
    mention_author: bool,
) -> Message:
    users, roles, _ = mentioned_ids(content)
    pings = resolve_pings(state, channel, author, content, None, None)
    ref = None
    if reference is not None:
        ref = {"type": 0, "message_id": str(reference.id), "channel_id": str(reference.channel_id)}
        if mention_author:
            users.append(reference.author.id)
    msg = Message(
        id=state.ids.next(),
        channel_id=channel.id,
        guild_id=channel.guild_id,
        author=author,
        content=content,
        type=19 if ref else 0,
        attachments=attachments,
        reference=ref,
        pings=pings,
        mention_everyone=pings.everyone,
        mention_user_ids=list(dict.fromkeys(users)),
        mention_role_ids=roles,
    )
    state.store_message(msg)
    dispatch_message(state, "MESSAGE_CREATE", msg)
    return msg


def edit_message(
    state: EmulatorState, msg: Message, body: dict[str, Any], uploads: list[Upload]
) -> Message:
    if msg.author.id != state.bot_user.id:
        raise ApiError(403, CANNOT_EDIT_OTHERS, "Cannot edit a message authored by another user")
    validate_body(body)
    channel = state.channel(msg.channel_id)
    if "content" in body:
        msg.content = str(body["content"] or "")
    for key in ("embeds", "components"):
        if key in body:
            setattr(msg, key, list(body[key] or []))
    if "attachments" in body:
        keep = {str(a.get("id")) for a in body["attachments"] or []}
        msg.attachments = [a for a in msg.attachments if str(a.id) in keep]
    msg.attachments += _attachments(state, channel.id, body, uploads)
    if "flags" in body and body["flags"] is not None:
        msg.flags = (msg.flags & FLAG_EPHEMERAL) | (int(body["flags"]) & _SETTABLE_FLAGS)
    msg.flags &= ~FLAG_LOADING  # editing a deferred "thinking" message resolves it
    if "allowed_mentions" in body:
        msg.allowed_mentions = body["allowed_mentions"]
    target = state.messages.get(msg.reply_to or 0)
    msg.pings = resolve_pings(state, channel, msg.author, msg.content, msg.allowed_mentions, target)
    if _is_empty(msg):
        raise ApiError(400, EMPTY_MESSAGE, "Cannot send an empty message")
    msg.edited_at = time.time()
    msg.edits.append(body)
    state.signal.notify()
    if not msg.ephemeral:
        dispatch_message(state, "MESSAGE_UPDATE", msg)
    return msg


def delete_message(state: EmulatorState, msg: Message) -> None:
    # docs/events/gateway-events.mdx (Message Delete): only id, channel_id and guild_id.
    msg.deleted = True
    state.signal.notify()
    if msg.ephemeral:
        return
    data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
    if msg.guild_id:
        data["guild_id"] = str(msg.guild_id)
    intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
    state.gateway.dispatch("MESSAGE_DELETE", data, guild_id=msg.guild_id, intent=intent)


def bulk_delete_messages(state: EmulatorState, channel_id: int, messages: list[Message]) -> None:
    """A moderator's bulk delete (docs/resources/message.mdx, Bulk Delete Messages: 2 to 100
    messages of one channel) as one MESSAGE_DELETE_BULK event with ids, channel_id, guild_id."""
    if not 2 <= len(messages) <= 100 or any(m.channel_id != channel_id for m in messages):
        raise ValueError("a bulk delete takes 2 to 100 messages of one channel")
    for msg in messages:
        msg.deleted = True
    state.signal.notify()
    guild_id = messages[0].guild_id
    data: dict[str, Any] = {"ids": [str(m.id) for m in messages], "channel_id": str(channel_id)}
    if guild_id:
        data["guild_id"] = str(guild_id)
    intent = INTENT_GUILD_MESSAGES if guild_id else INTENT_DIRECT_MESSAGES
    state.gateway.dispatch("MESSAGE_DELETE_BULK", data, guild_id=guild_id, intent=intent)


def dispatch_message(state: EmulatorState, event: str, msg: Message) -> None:
    data = payloads.message_payload(state, msg, with_nonce=event == "MESSAGE_CREATE")
    if event == "MESSAGE_UPDATE":
        # docs/events/gateway-events.mdx (Message Update): a whole message object with the
        # extra fields of MESSAGE_CREATE; "the value for tts will always be false".
        data["tts"] = False
    bot_id = state.bot_user.id
    # Discord withholds content from bots lacking MESSAGE_CONTENT, except in DMs, for the
    # bot's own messages, and for messages that mention the bot.
    privileged = msg.guild_id is None or msg.author.id == bot_id or bot_id in msg.mention_user_ids

    def strip(session: Session, d: dict[str, Any]) -> dict[str, Any]:
        if privileged or session.intents & INTENT_MESSAGE_CONTENT:
            return d
        return d | {"content": "", "embeds": [], "attachments": [], "components": []}

    intent = INTENT_GUILD_MESSAGES if msg.guild_id else INTENT_DIRECT_MESSAGES
    state.gateway.dispatch(event, data, guild_id=msg.guild_id, intent=intent, transform=strip)
