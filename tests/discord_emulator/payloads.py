"""Turn emulator records into the JSON shapes Discord (and so discord.py) uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import (
    Attachment,
    Channel,
    Guild,
    Member,
    Message,
    Role,
    User,
    iso,
)

if TYPE_CHECKING:
    from .state import EmulatorState


def user_payload(user: User) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(user.id),
        "username": user.username,
        "discriminator": "0",
        "global_name": user.global_name,
        "avatar": None,
        "public_flags": 0,
        "flags": 0,
    }
    if user.bot:
        data["bot"] = True
    return data


def member_payload(
    member: Member, *, with_user: bool = True, permissions: int | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "roles": [str(r) for r in member.roles],
        "nick": member.nick,
        "avatar": None,
        "joined_at": iso(member.joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user_payload(member.user)
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def role_payload(role: Role) -> dict[str, Any]:
    return {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": role.color,
        "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
        "hoist": role.hoist,
        "managed": role.managed,
        "mentionable": role.mentionable,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def channel_payload(
    state: EmulatorState, channel: Channel, *, permissions: int | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(channel.id),
        "type": channel.type,
        "last_message_id": str(channel.last_message_id) if channel.last_message_id else None,
        "flags": 0,
    }
    if channel.is_dm:
        data["recipients"] = [user_payload(u) for u in channel.recipients]
    else:
        data.update(
            guild_id=str(channel.guild_id),
            name=channel.name,
            position=channel.position,
            parent_id=str(channel.parent_id) if channel.parent_id else None,
            nsfw=channel.nsfw,
            rate_limit_per_user=0,
        )
    if channel.is_thread:
        count = len(state.channel_messages.get(channel.id, []))
        data.update(
            owner_id=str(channel.owner_id),
            message_count=count,
            total_message_sent=count,
            member_count=1,
            thread_metadata={
                "archived": channel.archived,
                "locked": channel.locked,
                "auto_archive_duration": 1440,
                "archive_timestamp": iso(channel.created_at),
                "create_timestamp": iso(channel.created_at),
                "invitable": True,
            },
        )
    elif not channel.is_dm:
        data.update(
            topic=channel.topic,
            permission_overwrites=[
                {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                for o in channel.overwrites.values()
            ],
        )
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def guild_create_payload(state: EmulatorState, guild: Guild) -> dict[str, Any]:
    channels = [state.channels[c] for c in guild.channel_ids]
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "preferred_locale": guild.locale,
        "features": [],
        "roles": [role_payload(r) for r in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "member_count": len(guild.members),
        "members": [member_payload(m) for m in guild.members.values()],
        "channels": [channel_payload(state, c) for c in channels if not c.is_thread],
        "threads": [channel_payload(state, c) for c in channels if c.is_thread and not c.archived],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "large": False,
        "unavailable": False,
        "joined_at": iso(guild.members[state.bot_user.id].joined_at),
        "system_channel_id": None,
        "rules_channel_id": None,
        "vanity_url_code": None,
        "premium_progress_bar_enabled": False,
    }


def attachment_payload(att: Attachment) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(att.id),
        "filename": att.filename,
        "size": att.size,
        "url": att.url,
        "proxy_url": att.url,
        "content_type": att.content_type,
    }
    if att.description is not None:
        data["description"] = att.description
    return data


def message_payload(
    state: EmulatorState, msg: Message, *, nested: bool = False, with_nonce: bool = False
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(msg.id),
        "channel_id": str(msg.channel_id),
        "type": msg.type,
        "author": user_payload(msg.author),
        "content": msg.content,
        "timestamp": iso(msg.created_at),
        "edited_timestamp": iso(msg.edited_at) if msg.edited_at else None,
        "tts": msg.tts,
        "mention_everyone": msg.mention_everyone,
        "mentions": [],
        "mention_roles": [str(r) for r in msg.mention_role_ids],
        "attachments": [attachment_payload(a) for a in msg.attachments],
        "embeds": msg.embeds,
        "components": msg.components,
        "pinned": False,
        "flags": msg.flags,
        "reactions": [
            {
                "emoji": {"id": None, "name": emoji},
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": state.bot_user.id in users,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in msg.reactions.items()
            if users
        ],
    }
    guild = state.guilds.get(msg.guild_id) if msg.guild_id else None
    if guild is not None:
        data["guild_id"] = str(guild.id)
        author_member = guild.members.get(msg.author.id)
        if author_member is not None and msg.webhook_id is None:
            data["member"] = member_payload(author_member, with_user=False)
    for uid in msg.mention_user_ids:
        user = state.users.get(uid)
        if user is None:
            continue
        entry = user_payload(user)
        if guild is not None and uid in guild.members:
            entry["member"] = member_payload(guild.members[uid], with_user=False)
        data["mentions"].append(entry)
    # developers/resources/message.mdx (Create Message): the nonce "will appear in the Message
    # Create event" -- and the create response -- but Discord does not keep it: fetched
    # messages (history, get) have none, so it cannot be looked up later.
    if with_nonce and msg.nonce is not None:
        data["nonce"] = msg.nonce
    if msg.webhook_id is not None:
        data["webhook_id"] = str(msg.webhook_id)
    if msg.application_id is not None:
        data["application_id"] = str(msg.application_id)
    if msg.reference is not None:
        data["message_reference"] = msg.reference
        if not nested and msg.type == 19:
            ref = state.messages.get(msg.reply_to or 0)
            alive = ref is not None and not ref.deleted
            data["referenced_message"] = (
                message_payload(state, ref, nested=True) if alive and ref else None
            )
    if msg.interaction is not None:
        data.update(msg.interaction.message_metadata(msg))
    return data
