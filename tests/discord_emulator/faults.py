"""Request middleware: auth, fault injection (429/5xx), rate limits (ratelimit.py), request log."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .errors import ApiError, json_response
from .models import RequestRecord
from .ratelimit import bucket_hash

if TYPE_CHECKING:
    from .state import EmulatorState

API_PREFIX = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes authenticated by the token in the URL (webhooks, interaction callbacks).
_TOKEN_ROUTES = ("/webhooks/", "/interactions/")


@dataclass
class Fault:
    method: str
    route: str
    status: int
    remaining: int
    retry_after: float = 1.0
    is_global: bool = False
    code: int = 0
    message: str | None = None

    def matches(self, method: str, template: str | None, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        return self.route in (template, path)


def route_template(request: web.Request) -> str | None:
    """The discord.py-style template ("/channels/{channel_id}/messages") of the route hit."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    canonical = resource.canonical
    return canonical[len(API_PREFIX) :] if canonical.startswith(API_PREFIX) else canonical


def _bucket(template: str | None, method: str) -> str:
    return bucket_hash(method, str(template))


def _fault_response(fault: Fault, template: str | None, method: str) -> web.Response:
    if fault.status == 429:
        body = {
            "message": fault.message or "You are being rate limited.",
            "retry_after": fault.retry_after,
            "global": fault.is_global,
        }
        # Without a Via header discord.py assumes a Cloudflare ban and raises instead of retrying.
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, math.ceil(fault.retry_after))),
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
            "X-RateLimit-Bucket": _bucket(template, method),
            "X-RateLimit-Scope": "global" if fault.is_global else "user",
        }
        if fault.is_global:
            headers["X-RateLimit-Global"] = "true"
        return json_response(body, 429, headers)
    reason = web.Response(status=fault.status).reason
    body2 = {"message": fault.message or f"{fault.status}: {reason}", "code": fault.code}
    return json_response(body2, fault.status)


class FaultInjector:
    def __init__(self) -> None:
        self.pending: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self.pending.append(fault)
        return fault

    def take(self, method: str, template: str | None, path: str) -> Fault | None:
        for fault in self.pending:
            if fault.remaining > 0 and fault.matches(method, template, path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.pending.remove(fault)
                return fault
        return None


def make_middleware(
    state: EmulatorState, faults: FaultInjector
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith(API_PREFIX):
            return await handler(request)  # gateway socket and attachment downloads
        api_path = path[len(API_PREFIX) :]
        template = route_template(request)
        record = RequestRecord(request.method, api_path, template)
        state.requests.append(record)
        # receiving-and-responding.mdx: the initial response is due within 3 seconds of the
        # event; note what the bot asked of Discord before giving it.
        for waiting in state.interactions.values():
            if not waiting.acknowledged and not waiting.expired and waiting.token not in path:
                waiting.before_ack.append(record)
        fault = faults.take(request.method, template, api_path)
        if fault is not None:
            record.status, record.injected = fault.status, True
            state.signal.notify()
            return _fault_response(fault, template, request.method)
        try:
            if not api_path.startswith(_TOKEN_ROUTES) and (
                request.headers.get("Authorization") != f"Bot {state.token}"
            ):
                raise ApiError(401, 0, "401: Unauthorized")
            if template is None:
                state.unhandled_requests.append(record)
                raise ApiError(404, 0, "404: Not Found")
            headers, limited, key = state.ratelimits.check(request, template)
            record.bucket = key
            if limited is not None:
                record.status, record.scope = 429, limited.headers["X-RateLimit-Scope"]
                state.signal.notify()
                return limited
            record.remaining = int(headers.get("X-RateLimit-Remaining", -1))
            try:
                response = await handler(request)
            except ApiError as exc:
                response = json_response(exc.body(), exc.status)
            # Discord sends the bucket's headers on errors too (rate-limits.mdx, "For most
            # API requests made").
            response.headers.update(headers)
        except ApiError as exc:
            response = json_response(exc.body(), exc.status)
        record.status = response.status
        state.signal.notify()
        return response

    return middleware
