"""Core REST routes: identity, gateway discovery, channels, messages, DMs, guilds, threads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from . import payloads
from .errors import (
    CANNOT_DM_USER,
    MISSING_PERMISSIONS,
    UNKNOWN_GUILD,
    UNKNOWN_MEMBER,
    UNKNOWN_USER,
    ApiError,
    form_error,
    not_found,
)
from .errors import json_response as jr
from .messaging import create_bot_message, delete_message, edit_message, read_body
from .models import FLAG_EPHEMERAL, INTENT_GUILD_MESSAGE_REACTIONS, Channel, Guild
from .permissions import (
    ADD_REACTIONS,
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    VIEW_CHANNEL,
)

if TYPE_CHECKING:
    from .state import EmulatorState


class CoreRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, app: web.Application, p: str) -> None:
        r = app.router
        r.add_get(p + "/users/@me", self.me)
        r.add_post(p + "/users/@me/channels", self.open_dm)
        r.add_get(p + "/users/{user_id}", self.get_user)
        r.add_get(p + "/gateway", self.gateway)
        r.add_get(p + "/gateway/bot", self.gateway_bot)
        r.add_get(p + "/oauth2/applications/@me", self.application)
        r.add_get(p + "/applications/@me", self.application)
        r.add_get(p + "/guilds/{guild_id}", self.get_guild)
        r.add_get(p + "/guilds/{guild_id}/channels", self.guild_channels)
        r.add_get(p + "/guilds/{guild_id}/roles", self.guild_roles)
        r.add_get(p + "/guilds/{guild_id}/members/{member_id}", self.get_member)
        r.add_get(p + "/channels/{channel_id}", self.get_channel)
        r.add_post(p + "/channels/{channel_id}/typing", self.typing)
        r.add_get(p + "/channels/{channel_id}/messages", self.history)
        r.add_post(p + "/channels/{channel_id}/messages", self.send)
        r.add_post(p + "/channels/{channel_id}/threads", self.start_thread)
        m = p + "/channels/{channel_id}/messages/{message_id}"
        r.add_get(m, self.get_message)
        r.add_patch(m, self.edit)
        r.add_delete(m, self.delete)
        r.add_post(m + "/threads", self.start_thread)
        r.add_put(m + "/reactions/{emoji}/@me", self.react)
        r.add_delete(m + "/reactions/{emoji}/@me", self.unreact)
        # Downloads for attachment URLs the emulator hands out (outside /api, like the CDN).
        r.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.download)

    # -- helpers ------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> Guild:
        guild = self.state.guilds.get(int(request.match_info["guild_id"]))
        if guild is None or self.state.bot_user.id not in guild.members:
            raise not_found(UNKNOWN_GUILD, "Guild")
        return guild

    def _channel(self, request: web.Request, need: int = VIEW_CHANNEL) -> Channel:
        channel = self.state.channel(request.match_info["channel_id"])
        perms = self.state.permissions(channel, self.state.bot_user.id)
        if perms & need != need:
            raise ApiError(403, MISSING_PERMISSIONS, "Missing Permissions")
        return channel

    # -- identity & discovery -----------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        user = payloads.user_payload(self.state.bot_user)
        return jr(user | {"verified": True, "mfa_enabled": False, "email": None, "bio": ""})

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.state.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise not_found(UNKNOWN_USER, "User")
        return jr(payloads.user_payload(user))

    async def gateway(self, request: web.Request) -> web.Response:
        return jr({"url": self.state.gateway.url})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1}
        return jr(
            {
                "url": self.state.gateway.url,
                "shards": self.state.recommended_shards,
                "session_start_limit": limit,
            }
        )

    async def application(self, request: web.Request) -> web.Response:
        s = self.state
        return jr(
            {
                "id": str(s.application_id),
                "name": s.bot_user.username,
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": payloads.user_payload(s.owner),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "bot": payloads.user_payload(s.bot_user),
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(s.guilds),
                "redirect_uris": [],
                "tags": [],
                "install_params": None,
                "integration_types_config": {"0": {}},
            }
        )

    # -- guilds -------------------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.Response:
        return jr(payloads.guild_create_payload(self.state, self._guild(request)))

    async def guild_channels(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        chans = [self.state.channels[c] for c in guild.channel_ids]
        return jr([payloads.channel_payload(self.state, c) for c in chans if not c.is_thread])

    async def guild_roles(self, request: web.Request) -> web.Response:
        return jr([payloads.role_payload(r) for r in self._guild(request).roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        member = self._guild(request).members.get(int(request.match_info["member_id"]))
        if member is None:
            raise not_found(UNKNOWN_MEMBER, "Member")
        return jr(payloads.member_payload(member))

    # -- channels & DMs -----------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        return jr(payloads.channel_payload(self.state, self._channel(request)))

    async def open_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = self.state.users.get(int(body.get("recipient_id", 0)))
        if user is None:
            raise form_error(["recipient_id"], "USER_UNKNOWN", "Unknown user")
        if user.bot:
            raise ApiError(403, CANNOT_DM_USER, "Cannot send messages to this user")
        return jr(payloads.channel_payload(self.state, self.state.dm_channel(user)))

    async def typing(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        self.state.record_typing(channel.id, self.state.bot_user.id)
        return web.Response(status=204)

    # -- messages -----------------------------------------------------------------------

    async def history(self, request: web.Request) -> web.Response:
        channel = self._channel(request, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        q = request.query
        limit = max(1, min(100, int(q.get("limit", 50))))
        msgs = [m for m in self.state.messages_in(channel) if not m.flags & FLAG_EPHEMERAL]
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])][-limit:]
        elif "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])][:limit]
        elif "around" in q:
            pivot = int(q["around"])
            older = [m for m in msgs if m.id <= pivot][-(limit // 2 + 1) :]
            msgs = older + [m for m in msgs if m.id > pivot][: limit - len(older)]
        else:
            msgs = msgs[-limit:]
        # Discord returns newest first.
        return jr([payloads.message_payload(self.state, m) for m in reversed(msgs)])

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        msg = self.state.message(channel.id, request.match_info["message_id"])
        return jr(payloads.message_payload(self.state, msg))

    async def send(self, request: web.Request) -> web.Response:
        channel = self.state.channel(request.match_info["channel_id"])
        body, uploads = await read_body(request)
        msg = create_bot_message(self.state, channel, body, uploads)
        return jr(payloads.message_payload(self.state, msg, with_nonce=True))

    async def edit(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        msg = self.state.message(channel.id, request.match_info["message_id"])
        body, uploads = await read_body(request)
        edit_message(self.state, msg, body, uploads)
        return jr(payloads.message_payload(self.state, msg))

    async def delete(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        msg = self.state.message(channel.id, request.match_info["message_id"])
        if msg.author.id != self.state.bot_user.id:
            if channel.is_dm:
                raise ApiError(403, 50003, "Cannot execute action on a DM channel")
            if not self.state.permissions(channel, self.state.bot_user.id) & MANAGE_MESSAGES:
                raise ApiError(403, MISSING_PERMISSIONS, "Missing Permissions")
        delete_message(self.state, msg)
        return web.Response(status=204)

    # -- reactions ----------------------------------------------------------------------

    def _reaction(self, request: web.Request, add: bool) -> None:
        channel = self._channel(request, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        msg = self.state.message(channel.id, request.match_info["message_id"])
        emoji = unquote(request.match_info["emoji"])
        users = msg.reactions.setdefault(emoji, set())
        perms = self.state.permissions(channel, self.state.bot_user.id)
        # Joining an existing reaction needs no ADD_REACTIONS, starting a new one does.
        if add and not users and not perms & ADD_REACTIONS:
            raise ApiError(403, MISSING_PERMISSIONS, "Missing Permissions")
        bot_id = self.state.bot_user.id
        (users.add if add else users.discard)(bot_id)
        self.state.signal.notify()
        data: dict[str, Any] = {
            "user_id": str(bot_id),
            "channel_id": str(channel.id),
            "message_id": str(msg.id),
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if channel.guild_id:
            data["guild_id"] = str(channel.guild_id)
        event = "MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"
        intent = INTENT_GUILD_MESSAGE_REACTIONS if channel.guild_id else 1 << 13
        self.state.gateway.dispatch(event, data, guild_id=channel.guild_id, intent=intent)

    async def react(self, request: web.Request) -> web.Response:
        self._reaction(request, add=True)
        return web.Response(status=204)

    async def unreact(self, request: web.Request) -> web.Response:
        self._reaction(request, add=False)
        return web.Response(status=204)

    # -- threads & downloads ------------------------------------------------------------

    async def start_thread(self, request: web.Request) -> web.Response:
        body = await request.json()
        parent = self.state.channel(request.match_info["channel_id"])
        private = int(body.get("type", 11)) == 12 and "message_id" not in request.match_info
        need = VIEW_CHANNEL | (CREATE_PRIVATE_THREADS if private else CREATE_PUBLIC_THREADS)
        if parent.is_dm or parent.is_thread:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        if self.state.permissions(parent, self.state.bot_user.id) & need != need:
            raise ApiError(403, MISSING_PERMISSIONS, "Missing Permissions")
        source = None
        if "message_id" in request.match_info:
            source = self.state.message(parent.id, request.match_info["message_id"])
        if not 1 <= len(str(body.get("name", ""))) <= 100:
            raise form_error(
                ["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        thread = self.state.create_thread(
            parent,
            str(body["name"]),
            owner=self.state.bot_user,
            private=private,
            from_message=source,
        )
        return jr(payloads.channel_payload(self.state, thread), 201)

    async def download(self, request: web.Request) -> web.Response:
        att_id = int(request.match_info["attachment_id"])
        att = self.state.ephemeral_attachments.get(att_id)
        if att is None:
            msgs = self.state.messages_in(int(request.match_info["channel_id"]))
            att = next((a for m in msgs for a in m.attachments if a.id == att_id), None)
        if att is None:
            return web.Response(status=404)
        ctype = att.content_type or "application/octet-stream"
        return web.Response(body=att.data, headers={"Content-Type": ctype})
