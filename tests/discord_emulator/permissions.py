"""Permission arithmetic and mention/ping resolution, following Discord's documented rules."""

from __future__ import annotations

import re
from typing import Any

from .errors import form_error
from .models import Channel, Guild, Member, Pings

CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

# What @everyone gets in a fresh guild (roughly Discord's defaults).
DEFAULT_EVERYONE = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | SEND_MESSAGES_IN_THREADS
)

# The bot's managed role. MENTION_EVERYONE is included on purpose so an unfiltered
# "@everyone" from the bot shows up in Message.pings (the worst case tests care about).
DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE | MANAGE_MESSAGES

# Permissions Discord reports for a DM channel.
DM_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)


def base_permissions(guild: Guild, member: Member) -> int:
    if member.user.id == guild.owner_id:
        return ALL_PERMISSIONS
    perms = guild.default_role.permissions
    for role_id in member.roles:
        role = guild.roles.get(role_id)
        if role is not None:
            perms |= role.permissions
    return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms


def channel_permissions(
    guild: Guild, channel: Channel, member: Member, parent: Channel | None
) -> int:
    """Discord's overwrite algorithm: @everyone, then the union of roles, then the member."""
    perms = base_permissions(guild, member)
    if perms & ADMINISTRATOR or member.user.id == guild.owner_id:
        return ALL_PERMISSIONS
    # Threads inherit their parent's overwrites.
    source = parent if channel.is_thread and parent is not None else channel
    everyone = source.overwrites.get(guild.id)
    if everyone is not None:
        perms = (perms & ~everyone.deny) | everyone.allow
    allow = deny = 0
    for role_id in member.roles:
        ow = source.overwrites.get(role_id)
        if ow is not None and ow.type == 0:
            allow |= ow.allow
            deny |= ow.deny
    perms = (perms & ~deny) | allow
    mine = source.overwrites.get(member.user.id)
    if mine is not None and mine.type == 1:
        perms = (perms & ~mine.deny) | mine.allow
    if not perms & VIEW_CHANNEL:
        return 0
    return perms


USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")


def mentioned_ids(content: str) -> tuple[list[int], list[int], bool]:
    """User ids, role ids, and whether @everyone/@here appears, in order of appearance."""
    users = list(dict.fromkeys(int(m) for m in USER_MENTION.findall(content)))
    roles = list(dict.fromkeys(int(m) for m in ROLE_MENTION.findall(content)))
    everyone = "@everyone" in content or "@here" in content
    return users, roles, everyone


def validate_allowed_mentions(allowed: dict[str, Any] | None) -> None:
    if allowed is None:
        return
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        ids = allowed.get(kind) or []
        if kind in parse and ids:
            raise form_error(
                ["allowed_mentions"],
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )
        if len(ids) > 100:
            raise form_error(["allowed_mentions", kind], "BASE_TYPE_MAX_LENGTH", "Too many ids")


def compute_pings(
    content: str,
    allowed: dict[str, Any] | None,
    *,
    in_guild: bool,
    can_mention_everyone: bool,
    mentionable_roles: set[int],
    replied_user_id: int | None,
) -> Pings:
    """Resolve actual notifications. No allowed_mentions means 'parse everything' and, for
    replies, pinging the replied-to author; an explicit object defaults replied_user to false."""
    users, roles, everyone_token = mentioned_ids(content)
    if allowed is None:
        parse = {"users", "roles", "everyone"}
        allowed_users: set[int] = set()
        allowed_roles: set[int] = set()
        replied = True
    else:
        parse = set(allowed.get("parse") or [])
        allowed_users = {int(x) for x in allowed.get("users") or []}
        allowed_roles = {int(x) for x in allowed.get("roles") or []}
        replied = bool(allowed.get("replied_user", False))
    pinged_users = {u for u in users if "users" in parse or u in allowed_users}
    if replied and replied_user_id is not None:
        pinged_users.add(replied_user_id)
    pinged_roles: set[int] = set()
    if in_guild:
        pinged_roles = {
            r
            for r in roles
            if ("roles" in parse or r in allowed_roles)
            and (r in mentionable_roles or can_mention_everyone)
        }
    everyone = in_guild and everyone_token and "everyone" in parse and can_mention_everyone
    return Pings(everyone=everyone, users=pinged_users, roles=pinged_roles)
