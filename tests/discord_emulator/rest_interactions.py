"""Interaction callbacks and the interaction webhook (followups, @original)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import payloads
from .components import validate_choices
from .errors import (
    ALREADY_ACKNOWLEDGED,
    INVALID_WEBHOOK_TOKEN,
    UNKNOWN_INTERACTION,
    UNKNOWN_MESSAGE,
    UNKNOWN_WEBHOOK,
    ApiError,
    form_error,
    json_response,
)
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_MESSAGE,
    DEFERRED_UPDATE,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    EmuInteraction,
)
from .messaging import create_bot_message, delete_message, edit_message, read_body
from .models import FLAG_LOADING, Message

if TYPE_CHECKING:
    from .state import EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _invalid_callback() -> ApiError:
    return form_error(
        ["type"],
        "INTERACTION_RESPONSE_TYPE_INVALID",
        "Interaction callback type is invalid for this interaction type",
    )


class InteractionRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, app: web.Application, prefix: str) -> None:
        add = app.router.add_route
        add(
            "POST",
            prefix + "/interactions/{webhook_id}/{webhook_token}/callback",
            self._tracked(self.callback),
        )
        hook = prefix + "/webhooks/{webhook_id}/{webhook_token}"
        add("GET", hook, self._tracked(self.get_webhook))
        add("POST", hook, self._tracked(self.followup))
        # "@original" must be registered before the {message_id} variant.
        for suffix in ("/messages/@original", "/messages/{message_id}"):
            add("GET", hook + suffix, self._tracked(self.get_message))
            add("PATCH", hook + suffix, self._tracked(self.edit_message))
            add("DELETE", hook + suffix, self._tracked(self.delete_message))

    def _tracked(self, handler: Handler) -> Handler:
        """Record every Discord error on the interaction so tests can await it."""

        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ApiError as exc:
                inter = self._lookup(request)
                if inter is not None:
                    inter.record_error(exc.body() | {"status": exc.status, "route": request.path})
                raise

        return wrapper

    def _lookup(self, request: web.Request) -> EmuInteraction | None:
        token = request.match_info["webhook_token"]
        return next((i for i in self.state.interactions.values() if i.token == token), None)

    # -- initial response ---------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.StreamResponse:
        inter = self.state.interactions.get(int(request.match_info["webhook_id"]))
        if inter is None or inter.token != request.match_info["webhook_token"]:
            raise ApiError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        body, uploads = await read_body(request)
        if inter.acknowledged:
            raise ApiError(400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
        # receiving-and-responding.mdx: "you must send an initial response within 3 seconds
        # of receiving the event. If the 3 second deadline is exceeded, the token will be
        # invalidated" -- Discord then answers 404 10062 Unknown interaction.
        if inter.expired or inter.age() >= inter.deadline:
            raise ApiError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        kind, data = int(body.get("type", 0)), body.get("data") or {}
        component_like = inter.source_message is not None
        msg: Message | None = None
        if kind in (CHANNEL_MESSAGE, DEFERRED_MESSAGE) and inter.type != AUTOCOMPLETE:
            extra = FLAG_LOADING if kind == DEFERRED_MESSAGE else 0
            body_in = data if kind == CHANNEL_MESSAGE else {"flags": data.get("flags")}
            msg = create_bot_message(
                self.state,
                inter.channel,
                body_in,
                uploads,
                interaction=inter,
                extra_flags=extra,
                msg_type=self._message_type(inter),
            )
        elif kind in (DEFERRED_UPDATE, UPDATE_MESSAGE) and component_like:
            msg = inter.source_message
            assert msg is not None
            if kind == UPDATE_MESSAGE:
                edit_message(self.state, msg, data, uploads)
        elif kind == AUTOCOMPLETE_RESULT and inter.type == AUTOCOMPLETE:
            validate_choices(list(data.get("choices") or []))
            inter.choices = list(data.get("choices") or [])
        elif kind == MODAL and inter.type not in (AUTOCOMPLETE, MODAL_SUBMIT):
            for key in ("custom_id", "title", "components"):
                if not data.get(key):
                    raise form_error(["data", key], "BASE_TYPE_REQUIRED", "This field is required")
            inter.modal = data
        else:
            raise _invalid_callback()
        inter.response_type, inter.response_data, inter.message = kind, data, msg
        inter.cancel_timer()
        if kind not in (DEFERRED_MESSAGE, DEFERRED_UPDATE):
            inter.mark_done()
        self.state.signal.notify()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        result: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.type,
                "response_message_loading": kind == DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(msg and msg.ephemeral),
            },
            "resource": {"type": kind},
        }
        if msg is not None:
            result["interaction"]["response_message_id"] = str(msg.id)
            result["resource"]["message"] = payloads.message_payload(self.state, msg)
        return json_response(result)

    @staticmethod
    def _message_type(inter: EmuInteraction) -> int:
        if inter.type == APPLICATION_COMMAND:
            return 20 if inter.data.get("type", 1) == 1 else 23
        return 0

    # -- webhook ------------------------------------------------------------------------

    def _interaction(self, request: web.Request) -> EmuInteraction:
        if int(request.match_info["webhook_id"]) != self.state.application_id:
            raise ApiError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")
        inter = self._lookup(request)
        if inter is None:
            raise ApiError(401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        if not inter.token_valid():
            raise ApiError(401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")
        if not inter.acknowledged:
            raise ApiError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")
        return inter

    def _target(self, request: web.Request, inter: EmuInteraction) -> Message:
        mid = request.match_info.get("message_id")
        if mid is None:  # @original
            msg = inter.message
        else:
            msg = next((m for m in inter.all_messages if m.id == int(mid)), None)
        if msg is None or msg.deleted:
            raise ApiError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return msg

    async def get_webhook(self, request: web.Request) -> web.Response:
        inter = self._interaction(request)
        return json_response(
            {
                "id": str(self.state.application_id),
                "type": 3,
                "name": self.state.bot_user.username,
                "avatar": None,
                "application_id": str(self.state.application_id),
                "channel_id": str(inter.channel.id),
                "token": inter.token,
            }
        )

    async def followup(self, request: web.Request) -> web.StreamResponse:
        inter = self._interaction(request)
        body, uploads = await read_body(request)
        original = inter.message
        if inter.response_type == DEFERRED_MESSAGE and original is not None and original.loading:
            # Discord turns the first followup after a "thinking" defer into the response.
            body = {k: v for k, v in body.items() if k != "flags"}
            msg = edit_message(self.state, original, body, uploads)
        else:
            msg = create_bot_message(
                self.state,
                inter.channel,
                body,
                uploads,
                interaction=inter,
                msg_type=self._message_type(inter),
            )
            inter.followups.append(msg)
        inter.mark_done()
        if request.query.get("wait") in ("0", "false", None):
            return web.Response(status=204)
        return json_response(payloads.message_payload(self.state, msg))

    async def get_message(self, request: web.Request) -> web.Response:
        inter = self._interaction(request)
        return json_response(payloads.message_payload(self.state, self._target(request, inter)))

    async def edit_message(self, request: web.Request) -> web.Response:
        inter = self._interaction(request)
        msg = self._target(request, inter)
        body, uploads = await read_body(request)
        edit_message(self.state, msg, body, uploads)
        inter.mark_done()
        return json_response(payloads.message_payload(self.state, msg))

    async def delete_message(self, request: web.Request) -> web.Response:
        inter = self._interaction(request)
        msg = self._target(request, inter)
        delete_message(self.state, msg)
        inter.mark_done()
        return web.Response(status=204)
