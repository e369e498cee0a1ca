"""Discord-shaped JSON errors and responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

# JSON error codes Discord returns for the situations the emulator enforces
# (discord/discord-api-docs developers/topics/opcodes-and-status-codes.mdx, JSON Error Codes).
UNKNOWN_APPLICATION = 10002
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_APP_COMMAND = 10063
UNKNOWN_INTERACTION = 10062
REQUEST_TOO_LARGE = 40005
ALREADY_ACKNOWLEDGED = 40060
CANNOT_EDIT_OTHERS = 50005
EMPTY_MESSAGE = 50006
CANNOT_DM_USER = 50007
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035
CANNOT_REPLY_WITHOUT_HISTORY = 160002


class ApiError(Exception):
    """Raised by handlers; the middleware turns it into Discord's error JSON."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def form_error(path: list[str | int], code: str, message: str) -> ApiError:
    """A 50035 'Invalid Form Body' with the nested `errors` tree Discord uses."""
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        tree = {str(key): tree}
    return ApiError(400, INVALID_FORM_BODY, "Invalid Form Body", tree)


def not_found(code: int, what: str) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # discord.py compares the content-type header for equality with "application/json",
    # so the charset suffix aiohttp's json_response adds must not appear.
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)
