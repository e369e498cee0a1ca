"""Interaction records: what the bot answered, and when the answer became visible."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import payloads
from .models import Attachment, Channel, Guild, Message, RequestRecord, User

if TYPE_CHECKING:
    from .state import EmulatorState

# Interaction types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
# Callback types.
CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9


class EmuInteraction:
    """One INTERACTION_CREATE the emulator sent, and everything the bot did with it.

    `message` is the @original response message (for type 6/7 the component's message),
    `followups` the later webhook messages. wait_done() resolves at the first *visible*
    answer: an immediate message/update/modal/autocomplete, or, after a defer, the first
    followup or @original edit."""

    def __init__(
        self,
        state: EmulatorState,
        *,
        type: int,
        user: User,
        channel: Channel,
        data: dict[str, Any],
        source_message: Message | None = None,
        command_name: str | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.state = state
        self.id = state.ids.next()
        self.token = f"emu-interaction-{self.id}-{id(self):x}"
        self.type = type
        self.user = user
        self.channel = channel
        self.guild: Guild | None = state.guild_of(channel)
        self.data = data
        self.source_message = source_message
        self.command_name = command_name
        self.payload: dict[str, Any] = {}
        self.created_at = state.clock.now()
        self.deadline = state.interaction_deadline
        self.response_type: int | None = None
        self.response_data: dict[str, Any] = {}
        self.message: Message | None = None
        self.followups: list[Message] = []
        self.modal: dict[str, Any] | None = None
        self.choices: list[dict[str, Any]] | None = None
        self.errors: list[dict[str, Any]] = []  # Discord errors the bot's requests got
        # REST requests the bot made while this interaction waited for its initial response
        # (recorded by the request middleware; the acknowledgement should come first).
        self.before_ack: list[RequestRecord] = []
        self.attachments: list[Attachment] = []
        self._done: asyncio.Future[EmuInteraction] = loop.create_future()
        self._expired = asyncio.Event()
        self._timer = loop.call_later(self.deadline, self._expire)

    def __repr__(self) -> str:
        return (
            f"<EmuInteraction id={self.id} type={self.type} name={self.command_name!r} "
            f"response_type={self.response_type}>"
        )

    # -- lifecycle ------------------------------------------------------------------

    def _expire(self) -> None:
        self._expired.set()
        self.state.signal.notify()

    def check_deadline(self) -> None:
        """Expire now if the emulator clock was pushed past the deadline unacknowledged."""
        if not self.acknowledged and self.age() >= self.deadline and not self._expired.is_set():
            self._timer.cancel()
            self._expire()

    def age(self) -> float:
        return self.state.clock.now() - self.created_at

    @property
    def expired(self) -> bool:
        """True once the acknowledgement deadline passed without an acknowledgement."""
        return self._expired.is_set()

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def done(self) -> bool:
        return self._done.done()

    def token_valid(self) -> bool:
        # developers/interactions/receiving-and-responding.mdx: "Interaction tokens are valid
        # for 15 minutes" (interaction_token_ttl), counted on the emulator clock.
        return self.age() < self.state.interaction_token_ttl

    def mark_done(self) -> None:
        if not self._done.done():
            self._done.set_result(self)
        self.state.signal.notify()

    def record_error(self, body: dict[str, Any]) -> None:
        self.errors.append(body)
        self.state.signal.notify()

    def cancel_timer(self) -> None:
        self._timer.cancel()

    async def wait_done(self, timeout: float = 10.0) -> EmuInteraction:  # noqa: ASYNC109
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"emulator: {self!r} got no visible response within {timeout}s "
                f"(errors: {self.errors})"
            ) from None

    async def wait_expired(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Resolve once the deadline passed unacknowledged (the emulator's own timer)."""
        await asyncio.wait_for(self._expired.wait(), timeout)

    async def wait_error(self, code: int | None = None, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The first Discord error returned to the bot for this interaction (e.g. 10062)."""

        def find() -> dict[str, Any] | None:
            return next((e for e in self.errors if code is None or e.get("code") == code), None)

        return await self.state.signal.wait_for(find, timeout, f"error {code} on {self!r}")

    # -- what tests assert on ---------------------------------------------------------

    @property
    def deferred(self) -> bool:
        return self.response_type in (DEFERRED_MESSAGE, DEFERRED_UPDATE)

    @property
    def visible_message(self) -> Message | None:
        return self.message

    @property
    def content(self) -> str:
        return self.message.content if self.message else ""

    @property
    def ephemeral(self) -> bool:
        return bool(self.message and self.message.ephemeral)

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.message.embeds if self.message else []

    @property
    def files(self) -> dict[str, bytes]:
        return self.message.files if self.message else {}

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.message.components if self.message else []

    @property
    def custom_ids(self) -> list[str]:
        return self.message.custom_ids if self.message else []

    @property
    def all_messages(self) -> list[Message]:
        return ([self.message] if self.message else []) + self.followups

    # -- payloads ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        owners = self.payload.get("authorizing_integration_owners", {})
        meta: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "user": payloads.user_payload(self.user),
            "authorizing_integration_owners": owners,
        }
        if self.type == APPLICATION_COMMAND:
            meta["name"] = self.command_name
            meta["command_type"] = self.data.get("type", 1)
        if self.source_message is not None:
            meta["interacted_message_id"] = str(self.source_message.id)
        return meta

    def message_metadata(self, msg: Message) -> dict[str, Any]:
        """interaction_metadata (+ the deprecated `interaction`) for response messages."""
        if msg is self.source_message:
            return {}
        meta = self.metadata()
        if msg is not self.message and self.message is not None:
            meta["original_response_message_id"] = str(self.message.id)
        legacy = {
            "id": str(self.id),
            "type": self.type,
            "name": self.command_name or "",
            "user": payloads.user_payload(self.user),
        }
        return {"interaction_metadata": meta, "interaction": legacy}
