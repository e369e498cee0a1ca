"""Discord's rate limits: per-route buckets keyed by the top-level resource, and the global
limit of 50 requests per second, with the headers and 429 bodies Discord sends.

Source: discord/discord-api-docs developers/topics/rate-limits.mdx --
  * per-route limits "account for top-level resources within the path": channel_id,
    guild_id, webhook_id (+ webhook_token); X-RateLimit-Bucket is the same for every channel
    ("non-inclusive of top-level resources");
  * headers X-RateLimit-Limit / -Remaining / -Reset (epoch seconds) / -Reset-After (seconds,
    with decimals) / -Bucket on every limited response; on a 429 also X-RateLimit-Scope
    (user / global / shared) and X-RateLimit-Global for the global limit, plus Retry-After;
  * the 429 body is {"message", "retry_after" (float seconds), "global"};
  * "All bots can make up to 50 requests per second"; "Interaction endpoints are not bound to
    the bot's Global Rate Limit".
The per-route numbers are not documented (Discord says not to hard-code them); message
create is 5 per 5 s per channel, the figure Discord sends today and the docs' header example.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from aiohttp import web

from .clock import EmuClock
from .errors import json_response

MESSAGES = "/channels/{channel_id}/messages"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"
# Interaction endpoints (callback and the interaction webhook) skip the global limit.
_INTERACTION_PREFIXES = ("/interactions/", "/webhooks/")
_MAJOR = ("channel_id", "guild_id", "webhook_id", "webhook_token")


@dataclass
class RouteLimit:
    limit: int
    per: float  # seconds until a bucket refills


@dataclass
class _Window:
    used: int
    resets_at: float  # on the emulator clock


def bucket_hash(method: str, template: str) -> str:
    return hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:32]


class RateLimiter:
    """Fixed-window buckets on the emulator clock. Change `routes`, `default` or `global_limit`
    in a test to hit a limit with fewer requests; `advance()` on the clock refills them."""

    def __init__(self, clock: EmuClock) -> None:
        self.clock = clock
        self.routes: dict[tuple[str, str], RouteLimit] = {
            ("POST", MESSAGES): RouteLimit(5, 5.0),
            ("PATCH", MESSAGE): RouteLimit(5, 5.0),
            ("DELETE", MESSAGE): RouteLimit(5, 1.0),
        }
        self.default = RouteLimit(50, 1.0)  # undocumented routes: roomy but real
        self.global_limit = RouteLimit(50, 1.0)
        self._buckets: dict[str, _Window] = {}
        self._global: _Window | None = None

    def _take(self, window: _Window | None, rule: RouteLimit) -> tuple[_Window, bool]:
        now = self.clock.now()
        if window is None or now >= window.resets_at:
            window = _Window(0, now + rule.per)
        if window.used >= rule.limit:
            return window, False
        window.used += 1
        return window, True

    def check(
        self, request: web.Request, template: str
    ) -> tuple[dict[str, str], web.Response | None, str]:
        """Count the request. Returns the headers for a normal response, or a 429 to send
        instead (counted as nothing), and the bucket key."""
        method = request.method
        path = request.path
        is_interaction = any(p in path for p in _INTERACTION_PREFIXES)
        if not is_interaction:
            window, ok = self._take(self._global, self.global_limit)
            self._global = window
            if not ok:
                return {}, self._global_429(window), "global"
        rule = self.routes.get((method, template), self.default)
        bucket = bucket_hash(method, template)
        major = ":".join(request.match_info.get(k, "") for k in _MAJOR)
        key = f"{bucket}:{major}"
        window, ok = self._take(self._buckets.get(key), rule)
        self._buckets[key] = window
        if not ok and self._global is not None and not is_interaction:
            self._global.used -= 1  # the rejected request was not served
        headers = self._headers(window, rule, bucket)
        if ok:
            return headers, None, key
        return headers, self._route_429(window, headers), key

    def _headers(self, window: _Window, rule: RouteLimit, bucket: str) -> dict[str, str]:
        reset_after = max(0.0, window.resets_at - self.clock.now())
        return {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Remaining": str(max(0, rule.limit - window.used)),
            "X-RateLimit-Reset": f"{self.clock.wall() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    def _route_429(self, window: _Window, headers: dict[str, str]) -> web.Response:
        retry_after = max(0.001, window.resets_at - self.clock.now())
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(retry_after, 3),
            "global": False,
        }
        return json_response(body, 429, headers | self._429_headers(retry_after, "user"))

    def _global_429(self, window: _Window) -> web.Response:
        retry_after = max(0.001, window.resets_at - self.clock.now())
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(retry_after, 3),
            "global": True,
        }
        headers = self._429_headers(retry_after, "global") | {"X-RateLimit-Global": "true"}
        return json_response(body, 429, headers)

    @staticmethod
    def _429_headers(retry_after: float, scope: str) -> dict[str, str]:
        return {
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": scope,
            # Discord's edge adds Via; without it discord.py takes a 429 for a Cloudflare
            # ban and raises (Rapptz/discord.py discord/http.py, HTTPClient.request).
            "Via": "1.1 google",
        }
