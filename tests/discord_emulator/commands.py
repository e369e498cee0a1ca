"""Application command registration routes, with Discord's schema checks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import UNKNOWN_APP_COMMAND, UNKNOWN_APPLICATION, UNKNOWN_GUILD, ApiError, form_error
from .errors import json_response as jr
from .models import AppCommand, CommandSync

if TYPE_CHECKING:
    from .state import EmulatorState

# Discord allows lowercase letters/digits/-/_ (plus other scripts) for slash command and
# option names; context-menu command names are free-form (1-32 chars).
_NAME = re.compile(r"^[-_\w]{1,32}$", re.UNICODE)


def _check_options(path: list[str | int], options: list[dict[str, Any]]) -> None:
    if len(options) > 25:
        raise form_error(
            [*path, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
        )
    seen_optional = False
    names: set[str] = set()
    for i, opt in enumerate(options):
        where: list[str | int] = [*path, "options", i]
        name = str(opt.get("name", ""))
        if not _NAME.match(name) or name != name.lower():
            raise form_error(
                [*where, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        if name in names:
            raise form_error(
                [*where, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(name)
        if not 1 <= len(str(opt.get("description", ""))) <= 100:
            raise form_error(
                [*where, "description"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        if opt.get("type") in (1, 2):
            _check_options(where, opt.get("options") or [])
            continue
        if opt.get("required"):
            if seen_optional:
                raise form_error(
                    where,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(opt.get("choices") or []) > 25:
            raise form_error(
                [*where, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )


def validate_command(index: int | None, raw: dict[str, Any]) -> None:
    path: list[str | int] = [] if index is None else [index]
    kind = int(raw.get("type", 1))
    name = str(raw.get("name", ""))
    if kind == 1:
        if not _NAME.match(name) or name != name.lower():
            raise form_error(
                [*path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        if not 1 <= len(str(raw.get("description", ""))) <= 100:
            raise form_error(
                [*path, "description"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        _check_options(path, raw.get("options") or [])
    elif not 1 <= len(name) <= 32:
        raise form_error(
            [*path, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length."
        )


def command_payload(cmd: AppCommand) -> dict[str, Any]:
    data = {
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": None,
        "nsfw": False,
        "contexts": None,
        "integration_types": [0],
        **cmd.raw,
        "id": str(cmd.id),
        "application_id": str(cmd.application_id),
        "version": str(cmd.version),
    }
    if cmd.guild_id is not None:
        data["guild_id"] = str(cmd.guild_id)
    return data


class CommandRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, app: web.Application, prefix: str) -> None:
        for base in (
            "/applications/{application_id}",
            "/applications/{application_id}/guilds/{guild_id}",
        ):
            r = prefix + base + "/commands"
            app.router.add_get(r, self.list)
            app.router.add_put(r, self.bulk_overwrite)
            app.router.add_post(r, self.upsert)
            app.router.add_get(r + "/{command_id}", self.get)
            app.router.add_patch(r + "/{command_id}", self.edit)
            app.router.add_delete(r + "/{command_id}", self.delete)

    def _scope(self, request: web.Request) -> int | None:
        if int(request.match_info["application_id"]) != self.state.application_id:
            raise ApiError(404, UNKNOWN_APPLICATION, "Unknown Application")
        gid = request.match_info.get("guild_id")
        if gid is None:
            return None
        if int(gid) not in self.state.guilds:
            raise ApiError(404, UNKNOWN_GUILD, "Unknown Guild")
        return int(gid)

    def _find(self, request: web.Request) -> AppCommand:
        scope = self._scope(request)
        cmd = self.state.commands.get(int(request.match_info["command_id"]))
        if cmd is None or cmd.guild_id != scope:
            raise ApiError(404, UNKNOWN_APP_COMMAND, "Unknown application command")
        return cmd

    def _store(self, scope: int | None, raw: dict[str, Any]) -> AppCommand:
        # Discord keeps a command's id across overwrites when name and type match.
        kind = int(raw.get("type", 1))
        existing = next(
            (
                c
                for c in self.state.registered_commands(scope)
                if c.name == raw.get("name") and c.type == kind
            ),
            None,
        )
        cmd_id = existing.id if existing else self.state.ids.next()
        cmd = AppCommand(cmd_id, self.state.application_id, scope, dict(raw), self.state.ids.next())
        self.state.commands[cmd_id] = cmd
        return cmd

    async def list(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        return jr([command_payload(c) for c in self.state.registered_commands(scope)])

    async def bulk_overwrite(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        body = await request.json()
        if not isinstance(body, list):
            raise form_error([], "BASE_TYPE_ARRAY", "Must be an array.")
        seen: set[tuple[int, str]] = set()
        for i, raw in enumerate(body):
            validate_command(i, raw)
            key = (int(raw.get("type", 1)), str(raw.get("name")))
            if key in seen:
                raise form_error(
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add(key)
        self.state.command_syncs.append(CommandSync(scope, body))
        stored = [self._store(scope, raw) for raw in body]
        keep = {c.id for c in stored}
        for cmd in self.state.registered_commands(scope):
            if cmd.id not in keep:
                del self.state.commands[cmd.id]
        self.state.signal.notify()
        return jr([command_payload(c) for c in stored])

    async def upsert(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        raw = await request.json()
        validate_command(None, raw)
        cmd = self._store(scope, raw)
        self.state.signal.notify()
        return jr(command_payload(cmd), 201)

    async def get(self, request: web.Request) -> web.Response:
        return jr(command_payload(self._find(request)))

    async def edit(self, request: web.Request) -> web.Response:
        cmd = self._find(request)
        raw = cmd.raw | await request.json()
        validate_command(None, raw)
        cmd.raw, cmd.version = raw, self.state.ids.next()
        return jr(command_payload(cmd))

    async def delete(self, request: web.Request) -> web.Response:
        cmd = self._find(request)
        del self.state.commands[cmd.id]
        return web.Response(status=204)
