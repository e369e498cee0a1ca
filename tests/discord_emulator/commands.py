"""Application command registration routes, with Discord's schema checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .command_rules import check_command_count, validate_command
from .errors import UNKNOWN_APP_COMMAND, UNKNOWN_APPLICATION, UNKNOWN_GUILD, ApiError, form_error
from .errors import json_response as jr
from .models import AppCommand, CommandSync

if TYPE_CHECKING:
    from .state import EmulatorState


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
        check_command_count(body)
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
        others = [
            c.raw
            for c in self.state.registered_commands(scope)
            if not (c.name == raw.get("name") and c.type == int(raw.get("type", 1)))
        ]
        check_command_count([*others, raw])
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
