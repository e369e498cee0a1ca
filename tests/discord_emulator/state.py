"""The emulator's in-memory world plus the synchronous setup API tests use to build it."""

from __future__ import annotations

import base64
import itertools
import secrets
from typing import TYPE_CHECKING, Any

from . import payloads
from .clock import EmuClock
from .errors import UNKNOWN_CHANNEL, UNKNOWN_MESSAGE, not_found
from .gateway import Gateway
from .models import (
    DM,
    GUILD_TEXT,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILDS,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    AppCommand,
    Attachment,
    Channel,
    CommandSync,
    Guild,
    Member,
    Message,
    Overwrite,
    RequestRecord,
    Role,
    Snowflakes,
    Typing,
    User,
)
from .permissions import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE,
    DM_PERMISSIONS,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    channel_permissions,
)
from .ratelimit import RateLimiter
from .waiting import Signal

if TYPE_CHECKING:
    from .interactions import EmuInteraction


class EmulatorState:
    """Users, guilds, channels, messages, commands and interactions, all in memory."""

    def __init__(self, bot_name: str = "Mnemocord", *, owner_name: str = "owner") -> None:
        self.ids = Snowflakes()
        self.clock = EmuClock()
        self.clock.on_advance(self._clock_moved)
        self.ratelimits = RateLimiter(self.clock)
        self._seq = itertools.count(1)
        self.signal = Signal()
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.channel_messages: dict[int, list[int]] = {}
        self._dm_by_user: dict[int, int] = {}
        self.commands: dict[int, AppCommand] = {}
        self.command_syncs: list[CommandSync] = []
        # Per-guild command permission overrides an admin set in Server Settings → Integrations
        # (developers/interactions/application-commands.mdx, "Permissions": they take
        # precedence over default_member_permissions): (guild id, command name) open to all.
        self.command_overrides: set[tuple[int, str]] = set()
        self.typings: list[Typing] = []
        self.interactions: dict[int, EmuInteraction] = {}
        self.ephemeral_attachments: dict[int, Attachment] = {}  # slash-command uploads
        self.requests: list[RequestRecord] = []
        self.unhandled_requests: list[RequestRecord] = []
        self.presence: dict[str, Any] | None = None
        # Knobs tests may change.
        self.interaction_deadline = 3.0
        self.interaction_token_ttl = 15 * 60.0
        # discord/discord-api-docs developers/resources/message.mdx (Create Message,
        # enforce_nonce): a nonce is "checked for uniqueness in the past few minutes". No
        # number is documented, so the emulator takes the low end: a repeat more than two
        # minutes later creates a second message. Code must not rely on a longer window.
        self.nonce_window = 2 * 60.0
        self.upload_limit = 10 * 1024 * 1024
        self.recommended_shards = 1
        self.privileged_intents_enabled = True
        self.base_url = "http://127.0.0.1:0"

        self.bot_user = self.create_user(bot_name, bot=True)
        self.application_id = self.bot_user.id  # Discord reuses the bot's id for its app
        self.owner = self.create_user(owner_name, global_name=owner_name.title())
        raw_id = base64.b64encode(str(self.bot_user.id).encode()).decode().rstrip("=")
        self.token = f"{raw_id}.emu.{secrets.token_urlsafe(27)}"
        self.gateway = Gateway(self)

    # -- helpers ----------------------------------------------------------------------

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator clock forward (nonce window, interaction deadlines and token
        lifetime, rate-limit buckets) without sleeping."""
        self.clock.advance(seconds)

    def _clock_moved(self) -> None:
        for inter in self.interactions.values():
            inter.check_deadline()
        self.signal.notify()

    def next_seq(self) -> int:
        return next(self._seq)

    def _dispatch(
        self, event: str, data: dict[str, Any], *, guild_id: int | None = None, intent: int = 0
    ) -> None:
        self.gateway.dispatch(event, data, guild_id=guild_id, intent=intent)

    # -- setup API (synchronous; dispatches events if the bot is already connected) -----

    def create_user(
        self,
        username: str,
        *,
        global_name: str | None = None,
        bot: bool = False,
        accepts_dms: bool = True,
        locale: str = "en-US",
    ) -> User:
        user = User(self.ids.next(), username, global_name, bot, accepts_dms, locale)
        self.users[user.id] = user
        return user

    def create_guild(
        self,
        name: str,
        *,
        owner: User | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        locale: str = "en-US",
    ) -> Guild:
        """A guild with @everyone, the bot's managed role, the owner and the bot as members."""
        owner = owner or self.owner
        guild = Guild(self.ids.next(), name, owner.id, locale=locale)
        guild.roles[guild.id] = Role(guild.id, guild.id, "@everyone", everyone_permissions)
        bot_role = Role(
            self.ids.next(),
            guild.id,
            self.bot_user.username,
            bot_permissions,
            position=1,
            managed=True,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[owner.id] = Member(owner, guild.id)
        guild.members[self.bot_user.id] = Member(self.bot_user, guild.id, [bot_role.id])
        self.guilds[guild.id] = guild
        # A guild joined after READY arrives without "unavailable", so discord.py fires
        # on_guild_join (lazy-loaded READY guilds carry unavailable=false instead).
        data = payloads.guild_create_payload(self, guild)
        del data["unavailable"]
        self._dispatch("GUILD_CREATE", data, guild_id=guild.id, intent=INTENT_GUILDS)
        return guild

    def bot_role(self, guild: Guild) -> Role:
        return next(r for r in guild.roles.values() if r.managed)

    def create_role(
        self,
        guild: Guild,
        name: str,
        *,
        permissions: int = 0,
        mentionable: bool = False,
        position: int | None = None,
    ) -> Role:
        pos = position if position is not None else len(guild.roles)
        role = Role(self.ids.next(), guild.id, name, permissions, pos, mentionable)
        guild.roles[role.id] = role
        self._dispatch(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(guild.id), "role": payloads.role_payload(role)},
            guild_id=guild.id,
            intent=INTENT_GUILDS,
        )
        return role

    def add_member(
        self, guild: Guild, user: User, *, roles: list[Role] | None = None, nick: str | None = None
    ) -> Member:
        member = Member(user, guild.id, [r.id for r in roles or []], nick)
        guild.members[user.id] = member
        data = payloads.member_payload(member) | {"guild_id": str(guild.id)}
        self._dispatch("GUILD_MEMBER_ADD", data, guild_id=guild.id, intent=INTENT_GUILD_MEMBERS)
        return member

    def create_text_channel(
        self, guild: Guild, name: str, *, topic: str | None = None, nsfw: bool = False
    ) -> Channel:
        position = sum(1 for c in guild.channel_ids if not self.channels[c].is_thread)
        channel = Channel(
            self.ids.next(), GUILD_TEXT, name, guild.id, position=position, topic=topic, nsfw=nsfw
        )
        self._add_channel(guild, channel, "CHANNEL_CREATE")
        return channel

    def create_thread(
        self,
        parent: Channel,
        name: str,
        *,
        owner: User | None = None,
        private: bool = False,
        from_message: Message | None = None,
    ) -> Channel:
        """A thread under `parent`; one started from a message shares the message's id."""
        guild = self.guilds[parent.guild_id or 0]
        channel = Channel(
            from_message.id if from_message is not None else self.ids.next(),
            PRIVATE_THREAD if private else PUBLIC_THREAD,
            name,
            guild.id,
            parent_id=parent.id,
            owner_id=(owner or self.owner).id,
        )
        self._add_channel(guild, channel, "THREAD_CREATE")
        return channel

    def _add_channel(self, guild: Guild, channel: Channel, event: str) -> None:
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        guild.channel_ids.append(channel.id)
        data = payloads.channel_payload(self, channel)
        if event == "THREAD_CREATE":
            data["newly_created"] = True
        self._dispatch(event, data, guild_id=guild.id, intent=INTENT_GUILDS)

    def dm_channel(self, user: User) -> Channel:
        """The bot<->user DM channel, created on first use (no event, as on Discord)."""
        cid = self._dm_by_user.get(user.id)
        if cid is not None:
            return self.channels[cid]
        channel = Channel(self.ids.next(), DM, recipients=[user])
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        self._dm_by_user[user.id] = channel.id
        return channel

    def set_permissions(
        self, channel: Channel, target: Role | User | Member, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Set a permission overwrite (for a thread, set it on the parent)."""
        if isinstance(target, Role):
            ow = Overwrite(target.id, 0, allow, deny)
        else:
            user = target.user if isinstance(target, Member) else target
            ow = Overwrite(user.id, 1, allow, deny)
        channel.overwrites[ow.id] = ow
        self._dispatch(
            "CHANNEL_UPDATE",
            payloads.channel_payload(self, channel),
            guild_id=channel.guild_id,
            intent=INTENT_GUILDS,
        )

    def open_command(self, guild: Guild, name: str) -> None:
        """An admin lets @everyone use command `name` in `guild` (Integrations settings), over
        its default_member_permissions; the bot's own checks still apply."""
        self.command_overrides.add((guild.id, name))

    def deny_bot(
        self, channel: Channel, permissions: int = SEND_MESSAGES | SEND_MESSAGES_IN_THREADS
    ) -> None:
        """Make the bot lack `permissions` in `channel`; sends then fail with 403/50013."""
        target = self.parent(channel) if channel.is_thread else channel
        self.set_permissions(target or channel, self.bot_user, deny=permissions)

    # -- lookups ------------------------------------------------------------------------

    def channel(self, channel_id: int | str) -> Channel:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise not_found(UNKNOWN_CHANNEL, "Channel")
        return channel

    def message(self, channel_id: int | str, message_id: int | str) -> Message:
        msg = self.messages.get(int(message_id))
        if msg is None or msg.deleted or msg.channel_id != int(channel_id):
            raise not_found(UNKNOWN_MESSAGE, "Message")
        return msg

    def guild_of(self, channel: Channel) -> Guild | None:
        return self.guilds.get(channel.guild_id) if channel.guild_id else None

    def parent(self, channel: Channel) -> Channel | None:
        return self.channels.get(channel.parent_id) if channel.parent_id else None

    def permissions(self, channel: Channel, user_id: int) -> int:
        if channel.is_dm:
            return DM_PERMISSIONS
        guild = self.guild_of(channel)
        member = guild.members.get(user_id) if guild else None
        if guild is None or member is None:
            return 0
        return channel_permissions(guild, channel, member, self.parent(channel))

    # -- message bookkeeping ------------------------------------------------------------

    def store_message(self, msg: Message) -> Message:
        msg.seq = self.next_seq()
        msg.created_clock = self.clock.now()
        self.messages[msg.id] = msg
        self.channel_messages.setdefault(msg.channel_id, []).append(msg.id)
        self.channels[msg.channel_id].last_message_id = msg.id
        self.signal.notify()
        return msg

    def record_typing(self, channel_id: int, user_id: int) -> Typing:
        typing = Typing(channel_id, user_id, self.next_seq())
        self.typings.append(typing)
        self.signal.notify()
        return typing

    def messages_in(
        self, channel: Channel | int, *, include_deleted: bool = False
    ) -> list[Message]:
        """Every stored message in a channel, oldest first (ephemeral ones included)."""
        cid = channel.id if isinstance(channel, Channel) else int(channel)
        msgs = [self.messages[m] for m in self.channel_messages.get(cid, [])]
        return [m for m in msgs if include_deleted or not m.deleted]

    def bot_messages(self, channel: Channel | int | None = None) -> list[Message]:
        """Messages the bot authored (incl. interaction responses), oldest first."""
        if channel is None:
            msgs = sorted(self.messages.values(), key=lambda m: m.seq)
            msgs = [m for m in msgs if not m.deleted]
        else:
            msgs = self.messages_in(channel)
        return [m for m in msgs if m.author.id == self.bot_user.id]

    def typing_count(self, channel: Channel | int) -> int:
        cid = channel.id if isinstance(channel, Channel) else int(channel)
        return sum(1 for t in self.typings if t.channel_id == cid)

    def registered_commands(self, guild_id: Guild | int | None = None) -> list[AppCommand]:
        """Commands currently registered globally (guild_id=None) or for one guild."""
        gid = guild_id.id if isinstance(guild_id, Guild) else guild_id
        return [c for c in self.commands.values() if c.guild_id == gid]
