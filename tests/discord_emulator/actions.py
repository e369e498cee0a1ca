"""Things users do in Discord (post, edit, type, run commands, click), as async actions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    EmuInteraction,
)
from .invoke import (
    Resolver,
    build_options,
    check_invocable,
    context_menu_data,
    dispatch_interaction,
    find_command,
    modal_components,
    slash_data,
)
from .messaging import (
    bulk_delete_messages,
    create_user_message,
    delete_message,
    dispatch_message,
    make_attachment,
    resolve_pings,
)
from .models import (
    INTENT_DIRECT_MESSAGE_TYPING,
    INTENT_GUILD_MESSAGE_TYPING,
    Attachment,
    Channel,
    Message,
    Typing,
    User,
)
from .permissions import mentioned_ids
from .state import EmulatorState

AttachmentSpec = tuple[str, bytes] | tuple[str, bytes, str] | Attachment


class UserActions(EmulatorState):
    """Each action stores what Discord would store and dispatches the gateway event(s)."""

    async def user_sends(
        self,
        user: User,
        channel: Channel,
        content: str = "",
        *,
        reference: Message | None = None,
        attachments: Sequence[AttachmentSpec] = (),
        mention_author: bool = True,
    ) -> Message:
        """A user posts in a channel; dispatches MESSAGE_CREATE and returns the message."""
        guild = self.guild_of(channel)
        if guild is not None and user.id not in guild.members:
            raise ValueError(f"{user.username} is not a member of {guild.name}")
        atts = [
            a if isinstance(a, Attachment) else make_attachment(self, channel.id, *a)
            for a in attachments
        ]
        return create_user_message(self, user, channel, content, atts, reference, mention_author)

    async def user_sends_dm(self, user: User, content: str = "", **kwargs: Any) -> Message:
        return await self.user_sends(user, self.dm_channel(user), content, **kwargs)

    async def user_edits(self, message: Message, content: str) -> Message:
        """A user edits their message; mentions are re-parsed and MESSAGE_UPDATE sent."""
        channel = self.channels[message.channel_id]
        users, roles, _ = mentioned_ids(content)
        message.pings = resolve_pings(self, channel, message.author, content, None, None)
        message.mention_everyone = message.pings.everyone
        message.mention_user_ids, message.mention_role_ids = users, roles
        message.content = content
        message.edited_at = time.time()
        self.signal.notify()
        dispatch_message(self, "MESSAGE_UPDATE", message)
        return message

    async def user_types(self, user: User, channel: Channel) -> Typing:
        typing = self.record_typing(channel.id, user.id)
        data: dict[str, Any] = {
            "channel_id": str(channel.id),
            "user_id": str(user.id),
            "timestamp": int(typing.at),
        }
        intent = INTENT_GUILD_MESSAGE_TYPING if channel.guild_id else INTENT_DIRECT_MESSAGE_TYPING
        if channel.guild_id:
            data["guild_id"] = str(channel.guild_id)
        self.gateway.dispatch("TYPING_START", data, guild_id=channel.guild_id, intent=intent)
        return typing

    async def delete_message(self, channel: Channel | int, message: Message | int) -> None:
        """Someone (a user or moderator) deletes a message: MESSAGE_DELETE is dispatched."""
        cid = channel.id if isinstance(channel, Channel) else channel
        mid = message.id if isinstance(message, Message) else message
        delete_message(self, self.message(cid, mid))

    async def bulk_delete(self, channel: Channel, messages: Sequence[Message]) -> None:
        """A moderator deletes several messages at once: one MESSAGE_DELETE_BULK."""
        bulk_delete_messages(self, channel.id, list(messages))

    async def invoke_slash(
        self,
        user: User,
        channel: Channel,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        context: int | None = None,
    ) -> EmuInteraction:
        """Run a registered slash command as `user` would from Discord's client.
        `subcommand` is "sub" or "group sub"; options are typed per the registered schema
        (users/channels/roles as records, attachments as (filename, bytes[, type]))."""
        cmd = find_command(self, channel, name, 1)
        check_invocable(self, cmd, channel, user)
        data = slash_data(self, cmd, channel, user, options or {}, subcommand)
        inter = EmuInteraction(
            self, type=APPLICATION_COMMAND, user=user, channel=channel, data=data, command_name=name
        )
        return dispatch_interaction(self, inter, context)

    async def invoke_context_menu(
        self, user: User, channel: Channel, name: str, target: User | Message
    ) -> EmuInteraction:
        cmd = find_command(self, channel, name, 3 if isinstance(target, Message) else 2)
        check_invocable(self, cmd, channel, user)
        data = context_menu_data(self, cmd, channel, user, target)
        inter = EmuInteraction(
            self, type=APPLICATION_COMMAND, user=user, channel=channel, data=data, command_name=name
        )
        return dispatch_interaction(self, inter)

    async def invoke_autocomplete(
        self,
        user: User,
        channel: Channel,
        name: str,
        focused: str,
        typed: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
    ) -> EmuInteraction:
        """User is typing `typed` into option `focused`; read inter.choices after wait_done."""
        cmd = find_command(self, channel, name, 1)
        res = Resolver(self, channel, user)
        opts = build_options(res, cmd, options or {}, subcommand, (focused, typed))
        data: dict[str, Any] = {"id": str(cmd.id), "name": cmd.name, "type": 1, "options": opts}
        if cmd.guild_id is not None:
            data["guild_id"] = str(cmd.guild_id)
        inter = EmuInteraction(
            self, type=AUTOCOMPLETE, user=user, channel=channel, data=data, command_name=name
        )
        return dispatch_interaction(self, inter)

    def _component_message(self, target: Message | EmuInteraction, custom_id: str) -> Message:
        if isinstance(target, Message):
            candidates = [target]
        else:
            candidates = list(reversed(target.all_messages))
        for msg in candidates:
            if msg.component(custom_id) is not None and not msg.deleted:
                return msg
        raise LookupError(f"no component {custom_id!r} on {candidates!r}")

    async def _component(
        self,
        user: User,
        target: Message | EmuInteraction,
        custom_id: str,
        kind: int,
        extra: dict[str, Any],
    ) -> EmuInteraction:
        msg = self._component_message(target, custom_id)
        comp = msg.component(custom_id) or {}
        if comp.get("type") != kind:
            raise ValueError(f"component {custom_id!r} has type {comp.get('type')}, not {kind}")
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        channel = self.channels[msg.channel_id]
        data = {"custom_id": custom_id, "component_type": kind, **extra}
        inter = EmuInteraction(
            self, type=MESSAGE_COMPONENT, user=user, channel=channel, data=data, source_message=msg
        )
        return dispatch_interaction(self, inter)

    async def click_button(
        self, user: User, target: Message | EmuInteraction, custom_id: str
    ) -> EmuInteraction:
        """Click a button on a message (or on an interaction's latest message having it)."""
        return await self._component(user, target, custom_id, 2, {})

    async def select_option(
        self, user: User, target: Message | EmuInteraction, custom_id: str, values: list[str]
    ) -> EmuInteraction:
        """Pick `values` in a string select menu."""
        msg = self._component_message(target, custom_id)
        comp = msg.component(custom_id) or {}
        allowed = [o["value"] for o in comp.get("options") or []]
        if any(v not in allowed for v in values):
            raise ValueError(f"{values} not all in select options {allowed}")
        if not comp.get("min_values", 1) <= len(values) <= comp.get("max_values", 1):
            raise ValueError(f"select {custom_id!r} needs between min/max values")
        return await self._component(user, msg, custom_id, 3, {"values": values})

    async def submit_modal(
        self, user: User, inter: EmuInteraction, values: dict[str, Any]
    ) -> EmuInteraction:
        """Fill in and submit the modal `inter` was answered with."""
        if inter.modal is None:
            raise ValueError(f"{inter!r} was not answered with a modal")
        comps = modal_components(inter.modal["components"], values)
        data = {"custom_id": inter.modal["custom_id"], "components": comps}
        submit = EmuInteraction(
            self,
            type=MODAL_SUBMIT,
            user=user,
            channel=inter.channel,
            data=data,
            source_message=inter.source_message,
        )
        return dispatch_interaction(self, submit)
