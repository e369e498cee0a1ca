"""Plain in-memory records the emulator keeps; payload shaping lives in payloads.py."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interactions import EmuInteraction

DISCORD_EPOCH_MS = 1420070400000

# Channel types (subset of Discord's enum that the emulator models).
GUILD_TEXT = 0
DM = 1
GUILD_CATEGORY = 4
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12

# Message flags the emulator interprets.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7


class Snowflakes:
    """Monotonic snowflake source built on wall-clock ms so snowflake_time() is sensible."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


@dataclass(eq=False)
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    accepts_dms: bool = True
    locale: str = "en-US"

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    mentionable: bool = False
    managed: bool = False
    color: int = 0
    hoist: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>" if self.id != self.guild_id else "@everyone"


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: float = field(default_factory=time.time)


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    locale: str = "en-US"

    @property
    def default_role(self) -> Role:
        return self.roles[self.id]


@dataclass
class Overwrite:
    id: int
    type: int  # 0 = role, 1 = member
    allow: int = 0
    deny: int = 0


@dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    parent_id: int | None = None
    position: int = 0
    topic: str | None = None
    nsfw: bool = False
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    recipients: list[User] = field(default_factory=list)
    owner_id: int | None = None
    archived: bool = False
    locked: bool = False
    last_message_id: int | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def is_dm(self) -> bool:
        return self.type == DM

    @property
    def is_thread(self) -> bool:
        return self.type in (PUBLIC_THREAD, PRIVATE_THREAD)

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class Attachment:
    id: int
    filename: str
    data: bytes
    url: str
    content_type: str | None = None
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Pings:
    """Who a message actually notifies under Discord's allowed_mentions rules."""

    everyone: bool = False
    users: set[int] = field(default_factory=set)
    roles: set[int] = field(default_factory=set)

    @property
    def anyone(self) -> bool:
        return self.everyone or bool(self.users) or bool(self.roles)

    def __getitem__(self, key: str) -> Any:
        # Allows pings["everyone"] as well as pings.everyone.
        return getattr(self, key)


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield every component in a (possibly nested, components v2) tree."""
    for comp in components:
        yield comp
        yield from walk_components(comp.get("components") or [])
        for key in ("component", "accessory"):
            if isinstance(comp.get(key), dict):
                yield from walk_components([comp[key]])


@dataclass(eq=False)
class Message:
    id: int
    channel_id: int
    author: User
    content: str = ""
    guild_id: int | None = None
    type: int = 0
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    tts: bool = False
    reference: dict[str, Any] | None = None
    allowed_mentions: dict[str, Any] | None = None
    pings: Pings = field(default_factory=Pings)
    mention_everyone: bool = False
    mention_user_ids: list[int] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    nonce: str | int | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction: EmuInteraction | None = None
    reactions: dict[str, set[int]] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    created_clock: float = 0.0  # EmuClock.now() at creation (for the nonce window)
    edited_at: float | None = None
    deleted: bool = False
    seq: int = 0  # global order of emulator events (typing vs. messages)
    edits: list[dict[str, Any]] = field(default_factory=list)  # raw PATCH bodies, in order

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    @property
    def files(self) -> dict[str, bytes]:
        return {a.filename: a.data for a in self.attachments}

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [c for c in walk_components(self.components) if c.get("type") == 2]

    def component(self, custom_id: str) -> dict[str, Any] | None:
        return next(
            (c for c in walk_components(self.components) if c.get("custom_id") == custom_id),
            None,
        )

    @property
    def reply_to(self) -> int | None:
        ref = self.reference
        return int(ref["message_id"]) if ref and ref.get("message_id") else None


@dataclass
class Typing:
    channel_id: int
    user_id: int
    seq: int
    at: float = field(default_factory=time.time)


@dataclass(eq=False)
class AppCommand:
    id: int
    application_id: int
    guild_id: int | None
    raw: dict[str, Any]
    version: int

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def type(self) -> int:
        return int(self.raw.get("type", 1))

    @property
    def options(self) -> list[dict[str, Any]]:
        return list(self.raw.get("options") or [])


@dataclass
class CommandSync:
    """One bulk-overwrite PUT of application commands."""

    guild_id: int | None
    payload: list[dict[str, Any]]
    at: float = field(default_factory=time.time)

    @property
    def names(self) -> list[str]:
        return [c.get("name", "") for c in self.payload]


@dataclass
class RequestRecord:
    method: str
    path: str
    template: str | None
    status: int = 0
    injected: bool = False
    bucket: str | None = None  # X-RateLimit-Bucket + top-level resource, when limited
    remaining: int | None = None  # X-RateLimit-Remaining the emulator answered
    scope: str | None = None  # X-RateLimit-Scope of an emulator-made 429 (user/global)


# Gateway intents the emulator filters on.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_GUILD_MESSAGE_TYPING = 1 << 11
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_DIRECT_MESSAGE_TYPING = 1 << 14
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT
