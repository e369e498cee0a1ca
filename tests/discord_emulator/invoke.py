"""Build INTERACTION_CREATE payloads the way Discord's client+API would for a user action."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import payloads
from .interactions import EmuInteraction
from .messaging import make_attachment
from .models import Attachment, Channel, Member, Message, Role, User
from .permissions import ADMINISTRATOR

if TYPE_CHECKING:
    from .models import AppCommand
    from .state import EmulatorState

STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = range(3, 12)
SUBCOMMAND, SUBCOMMAND_GROUP = 1, 2


def find_command(state: EmulatorState, channel: Channel, name: str, cmd_type: int) -> AppCommand:
    """Guild commands shadow global ones, as in Discord's client."""
    candidates = [c for c in state.commands.values() if c.name == name and c.type == cmd_type]
    for cmd in candidates:
        if cmd.guild_id is not None and cmd.guild_id == channel.guild_id:
            return cmd
    for cmd in candidates:
        if cmd.guild_id is None:
            return cmd
    known = sorted(c.name for c in state.commands.values())
    raise LookupError(
        f"command {name!r} (type {cmd_type}) is not registered here; "
        f"registered: {known}. Did the bot call tree.sync()?"
    )


def check_invocable(state: EmulatorState, cmd: AppCommand, channel: Channel, user: User) -> None:
    """Discord's client hides commands the user may not use here; mirror that as errors."""
    contexts = cmd.raw.get("contexts")
    ctx = 1 if channel.is_dm else 0
    if contexts is not None and ctx not in contexts:
        raise PermissionError(f"command {cmd.name!r} is not available in context {ctx}")
    if channel.is_dm and cmd.raw.get("dm_permission") is False:
        raise PermissionError(f"command {cmd.name!r} is disabled in DMs")
    required = cmd.raw.get("default_member_permissions")
    guild = state.guild_of(channel)
    opened = guild is not None and (guild.id, cmd.name) in state.command_overrides
    if required is not None and not channel.is_dm and not opened:
        perms = state.permissions(channel, user.id)
        need = int(required)
        if not perms & ADMINISTRATOR and (need == 0 or perms & need != need):
            raise PermissionError(f"{user.username} lacks permissions {need} for {cmd.name!r}")


def _id_of(value: Any) -> int:
    if isinstance(value, Member):
        return value.user.id
    if isinstance(value, User | Role | Channel | Message | Attachment):
        return value.id
    return int(value)


class Resolver:
    """Accumulates the `resolved` block for snowflake-typed options."""

    def __init__(self, state: EmulatorState, channel: Channel, user: User) -> None:
        self.state, self.channel, self.user = state, channel, user
        self.guild = state.guild_of(channel)
        self.resolved: dict[str, dict[str, Any]] = {}

    def add(self, kind: str, obj_id: int, data: dict[str, Any]) -> None:
        self.resolved.setdefault(kind, {})[str(obj_id)] = data

    def user_(self, value: Any) -> int:
        uid = _id_of(value)
        user = self.state.users[uid]
        self.add("users", uid, payloads.user_payload(user))
        if self.guild is not None and uid in self.guild.members:
            perms = self.state.permissions(self.channel, uid)
            member = payloads.member_payload(
                self.guild.members[uid], with_user=False, permissions=perms
            )
            self.add("members", uid, member)
        return uid

    def role(self, value: Any) -> int:
        rid = _id_of(value)
        assert self.guild is not None, "role options need a guild channel"
        self.add("roles", rid, payloads.role_payload(self.guild.roles[rid]))
        return rid

    def channel_(self, value: Any, spec: dict[str, Any]) -> int:
        target = self.state.channels[_id_of(value)]
        allowed = spec.get("channel_types")
        if allowed and target.type not in allowed:
            raise ValueError(f"option {spec['name']!r} accepts channel types {allowed}")
        perms = self.state.permissions(target, self.user.id)
        self.add(
            "channels", target.id, payloads.channel_payload(self.state, target, permissions=perms)
        )
        return target.id

    def attachment(self, value: Any) -> int:
        if isinstance(value, tuple):
            att = make_attachment(
                self.state,
                self.channel.id,
                value[0],
                value[1],
                value[2] if len(value) > 2 else None,
            )
        else:
            att = value
        self.state.ephemeral_attachments[att.id] = att
        self.add("attachments", att.id, payloads.attachment_payload(att))
        return att.id


def _convert(res: Resolver, spec: dict[str, Any], value: Any) -> dict[str, Any]:
    kind, name = spec["type"], spec["name"]
    out: Any
    if kind == STRING:
        out = str(value)
    elif kind == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"option {name!r} needs an int, got {value!r}")
        out = value
    elif kind == NUMBER:
        out = float(value)
    elif kind == BOOLEAN:
        out = bool(value)
    elif kind == USER:
        out = str(res.user_(value))
    elif kind == CHANNEL:
        out = str(res.channel_(value, spec))
    elif kind == ROLE:
        out = str(res.role(value))
    elif kind == MENTIONABLE:
        out = str(res.role(value) if isinstance(value, Role) else res.user_(value))
    elif kind == ATTACHMENT:
        out = str(res.attachment(value))
    else:
        raise ValueError(f"option {name!r} has unsupported type {kind}")
    choices = spec.get("choices")
    if choices and kind in (STRING, INTEGER, NUMBER) and out not in [c["value"] for c in choices]:
        raise ValueError(f"{out!r} is not one of the choices of option {name!r}")
    low, high = spec.get("min_value"), spec.get("max_value")
    if kind in (INTEGER, NUMBER) and (
        (low is not None and out < low) or (high is not None and out > high)
    ):
        raise ValueError(f"option {name!r} must be within [{low}, {high}]")
    return {"name": name, "type": kind, "value": out}


def build_options(
    res: Resolver,
    cmd: AppCommand,
    options: dict[str, Any],
    subcommand: str | None,
    focused: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Type options per the registered schema and nest them under (group) subcommands.
    With `focused` (name, typed text) build an autocomplete payload: that option carries
    the raw text and other required options may still be missing."""
    schema = cmd.options
    chain: list[dict[str, Any]] = []
    for part in (subcommand or "").split():
        spec = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
        if spec is None:
            raise ValueError(f"{cmd.name!r} has no subcommand {part!r}")
        chain.append(spec)
        schema = spec.get("options") or []
    if any(o["type"] in (SUBCOMMAND, SUBCOMMAND_GROUP) for o in schema):
        raise ValueError(f"{cmd.name!r} needs a subcommand: {[o['name'] for o in schema]}")
    unknown = (set(options) | ({focused[0]} if focused else set())) - {o["name"] for o in schema}
    if unknown:
        raise ValueError(f"{cmd.name!r} has no options {sorted(unknown)}")
    leaf = []
    for spec in schema:
        if focused and spec["name"] == focused[0]:
            leaf.append(
                {"name": spec["name"], "type": spec["type"], "value": focused[1], "focused": True}
            )
        elif spec["name"] in options:
            leaf.append(_convert(res, spec, options[spec["name"]]))
        elif spec.get("required") and not focused:
            raise ValueError(f"option {spec['name']!r} of {cmd.name!r} is required")
    for spec in reversed(chain):
        leaf = [{"name": spec["name"], "type": spec["type"], "options": leaf}]
    return leaf


def slash_data(
    state: EmulatorState,
    cmd: AppCommand,
    channel: Channel,
    user: User,
    options: dict[str, Any],
    subcommand: str | None,
) -> dict[str, Any]:
    res = Resolver(state, channel, user)
    data: dict[str, Any] = {
        "id": str(cmd.id),
        "name": cmd.name,
        "type": 1,
        "options": build_options(res, cmd, options, subcommand),
    }
    if res.resolved:
        data["resolved"] = res.resolved
    if cmd.guild_id is not None:
        data["guild_id"] = str(cmd.guild_id)
    return data


def context_menu_data(
    state: EmulatorState, cmd: AppCommand, channel: Channel, user: User, target: Any
) -> dict[str, Any]:
    res = Resolver(state, channel, user)
    if cmd.type == 2:
        target_id = res.user_(target)
    else:
        assert isinstance(target, Message)
        target_id = target.id
        res.add("messages", target.id, payloads.message_payload(state, target))
    data = {
        "id": str(cmd.id),
        "name": cmd.name,
        "type": cmd.type,
        "target_id": str(target_id),
        "resolved": res.resolved,
    }
    if cmd.guild_id is not None:
        data["guild_id"] = str(cmd.guild_id)
    return data


def modal_components(
    components: list[dict[str, Any]], values: dict[str, Any]
) -> list[dict[str, Any]]:
    """Mirror a modal's layout with submitted values (text inputs and selects)."""
    out: list[dict[str, Any]] = []
    for comp in components:
        kind = comp.get("type")
        if kind == 1:
            out.append({"type": 1, "components": modal_components(comp["components"], values)})
        elif kind == 18:
            inner = modal_components([comp["component"]], values)
            out.append({"type": 18, "component": inner[0]})
        elif kind == 4:
            cid = comp["custom_id"]
            value = values.get(cid, comp.get("value") or "")
            if not value and comp.get("required", True):
                raise ValueError(f"modal text input {cid!r} is required")
            out.append({"type": 4, "custom_id": cid, "value": str(value)})
        elif kind in (3, 5, 6, 7, 8):
            cid = comp["custom_id"]
            out.append({"type": kind, "custom_id": cid, "values": list(values.get(cid, []))})
    return out


def interaction_payload(
    state: EmulatorState, inter: EmuInteraction, context: int | None = None
) -> dict[str, Any]:
    channel, user, guild = inter.channel, inter.user, inter.guild
    user_perms = state.permissions(channel, user.id)
    payload: dict[str, Any] = {
        "id": str(inter.id),
        "application_id": str(state.application_id),
        "type": inter.type,
        "data": inter.data,
        "channel_id": str(channel.id),
        "channel": payloads.channel_payload(state, channel, permissions=user_perms),
        "token": inter.token,
        "version": 1,
        "app_permissions": str(state.permissions(channel, state.bot_user.id)),
        "locale": user.locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": state.upload_limit,
    }
    if guild is not None:
        member = guild.members.get(user.id)
        if member is None:
            raise ValueError(f"{user.username} is not a member of {guild.name}")
        payload.update(
            guild_id=str(guild.id),
            guild={"id": str(guild.id), "locale": guild.locale, "features": []},
            guild_locale=guild.locale,
            member=payloads.member_payload(member, permissions=user_perms),
            authorizing_integration_owners={"0": str(guild.id)},
            context=0 if context is None else context,
        )
    else:
        payload.update(
            user=payloads.user_payload(user),
            authorizing_integration_owners={"0": "0"},  # guild install used in the bot's DM
            context=1 if context is None else context,
        )
    if inter.source_message is not None:
        payload["message"] = payloads.message_payload(state, inter.source_message)
    return payload


def dispatch_interaction(
    state: EmulatorState, inter: EmuInteraction, context: int | None = None
) -> EmuInteraction:
    inter.payload = interaction_payload(state, inter, context)
    state.interactions[inter.id] = inter
    state.gateway.dispatch("INTERACTION_CREATE", inter.payload, guild_id=inter.channel.guild_id)
    return inter
