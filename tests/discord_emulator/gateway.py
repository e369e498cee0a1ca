"""Gateway websocket: HELLO/IDENTIFY/READY, heartbeats, dispatch with intents, RESUME replay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from . import payloads
from .models import PRIVILEGED_INTENTS

if TYPE_CHECKING:
    from .state import EmulatorState

# Opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME, RECONNECT = 0, 1, 2, 3, 4, 6, 7
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11

Transform = Callable[["Session", dict[str, Any]], "dict[str, Any] | None"]


@dataclass
class _Close:
    code: int


class Connection:
    """One websocket. A writer task drains a queue so dispatch() can stay synchronous
    while frames still leave in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | _Close] = asyncio.Queue()
        self.session: Session | None = None
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, frame: dict[str, Any] | str) -> None:
        self.queue.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    def close(self, code: int) -> None:
        self.queue.put_nowait(_Close(code))

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                if isinstance(item, _Close):
                    await self.ws.close(code=item.code)
                    return
                await self.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return  # client went away; frames stay in the session buffer for RESUME


@dataclass(eq=False)
class Session:
    id: str
    intents: int
    shard: tuple[int, int] | None
    seq: int = 0
    # Every dispatched frame (seq, json) so RESUME can replay what the client missed.
    buffer: list[tuple[int, str]] = field(default_factory=list)
    conn: Connection | None = None
    invalidated: bool = False

    def handles_guild(self, guild_id: int) -> bool:
        shard_id, count = self.shard or (0, 1)
        return (guild_id >> 22) % count == shard_id

    def send_dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        text = json.dumps({"op": DISPATCH, "t": event, "s": self.seq, "d": data})
        self.buffer.append((self.seq, text))
        if self.conn is not None:
            self.conn.send(text)


@dataclass
class ResumeRecord:
    session_id: str
    from_seq: int
    replayed: int


class Gateway:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.heartbeat_interval_ms = 41250
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.identifies: list[Session] = []
        self.resumes: list[ResumeRecord] = []
        self.close_codes: list[int] = []  # codes the emulator closed client sockets with

    @property
    def url(self) -> str:
        return self.state.base_url.replace("http://", "ws://") + "/gateway"

    @property
    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.conn is not None and not s.invalidated]

    # -- dispatch -----------------------------------------------------------------------

    def dispatch(
        self,
        event: str,
        data: dict[str, Any],
        *,
        guild_id: int | None = None,
        intent: int = 0,
        transform: Transform | None = None,
    ) -> None:
        """Queue an event for every identified session whose intents/shard want it.
        Disconnected-but-resumable sessions buffer it for replay."""
        for session in list(self.sessions.values()):
            if session.invalidated or (intent and not session.intents & intent):
                continue
            if guild_id is not None and not session.handles_guild(guild_id):
                continue
            out = transform(session, data) if transform else data
            if out is not None:
                session.send_dispatch(event, out)

    # -- test controls ------------------------------------------------------------------

    def drop(self, *, resume: bool = True, via: str = "close", code: int = 4000) -> None:
        """Disconnect live sessions. via="close": close the socket with `code`;
        via="reconnect": send op 7. resume=False sends INVALID_SESSION(false) instead, so
        the client must IDENTIFY again. The session detaches immediately so anything
        dispatched afterwards is only buffered and must arrive through RESUME."""
        for session in self.live_sessions:
            conn = session.conn
            assert conn is not None
            session.conn = None
            if not resume:
                session.invalidated = True
                conn.send({"op": INVALID_SESSION, "d": False})
            elif via == "reconnect":
                conn.send({"op": RECONNECT, "d": None})
            else:
                self.close_codes.append(code)
                conn.close(code)
        self.state.signal.notify()

    async def close_all(self) -> None:
        for conn in list(self.connections):
            if conn.session is not None:
                conn.session.conn = None
            conn.close(1001)
        writers = [c.writer for c in self.connections]
        if writers:
            await asyncio.wait(writers, timeout=5)
        for conn in list(self.connections):
            conn.writer.cancel()
            with contextlib.suppress(Exception):
                await conn.ws.close()

    # -- websocket handler --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # Text frames only: discord.py asks for compress=zlib-stream but decodes plain
        # text frames regardless, so the emulator skips compression entirely.
        ws = web.WebSocketResponse(compress=False, max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        conn = Connection(ws)
        self.connections.add(conn)
        conn.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._on_frame(conn, json.loads(msg.data))
        finally:
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self.connections.discard(conn)
            conn.writer.cancel()
            self.state.signal.notify()
        return ws

    async def _on_frame(self, conn: Connection, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == HEARTBEAT:
            conn.send({"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            self._identify(conn, data or {})
        elif op == RESUME:
            self._resume(conn, data or {})
        elif op == PRESENCE:
            self.state.presence = data
            self.state.signal.notify()
        elif op == REQUEST_MEMBERS:
            self._request_members(conn, data or {})

    def _fail(self, conn: Connection, code: int) -> None:
        self.close_codes.append(code)
        conn.close(code)

    def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            return self._fail(conn, 4005)  # already authenticated
        if data.get("token") != self.state.token:
            return self._fail(conn, 4004)
        if "intents" not in data:
            return self._fail(conn, 4013)
        intents = int(data["intents"])
        if intents & PRIVILEGED_INTENTS and not self.state.privileged_intents_enabled:
            return self._fail(conn, 4014)
        shard = data.get("shard")
        if shard is not None and not (0 <= shard[0] < shard[1]):
            return self._fail(conn, 4010)
        session = Session(secrets.token_hex(16), intents, tuple(shard) if shard else None)
        session.conn = conn
        conn.session = session
        self.sessions[session.id] = session
        self.identifies.append(session)
        state = self.state
        guilds = [g for g in state.guilds.values() if session.handles_guild(g.id)]
        user = payloads.user_payload(state.bot_user) | {"verified": True, "mfa_enabled": False}
        ready: dict[str, Any] = {
            "v": 10,
            "user": user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.url,
            "application": {"id": str(state.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "_trace": ["discord-emulator"],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        session.send_dispatch("READY", ready)
        # Guilds stream in lazily after READY, as on Discord.
        for guild in guilds:
            session.send_dispatch("GUILD_CREATE", payloads.guild_create_payload(state, guild))
        state.signal.notify()

    def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self.state.token:
            return self._fail(conn, 4004)
        if session is None or session.invalidated:
            conn.send({"op": INVALID_SESSION, "d": False})
            return None
        if session.conn is not None and session.conn is not conn:
            session.conn.close(4000)  # a stale socket still attached
        from_seq = int(data.get("seq") or 0)
        missed = [text for seq, text in session.buffer if seq > from_seq]
        session.conn = conn
        conn.session = session
        for text in missed:
            conn.send(text)
        session.send_dispatch("RESUMED", {"_trace": ["discord-emulator"]})
        self.resumes.append(ResumeRecord(session.id, from_seq, len(missed)))
        self.state.signal.notify()
        return None

    def _request_members(self, conn: Connection, data: dict[str, Any]) -> None:
        session = conn.session
        guild = self.state.guilds.get(int(data.get("guild_id", 0)))
        if session is None or guild is None:
            return
        members = list(guild.members.values())
        if data.get("user_ids"):
            wanted = {int(u) for u in data["user_ids"]}
            members = [m for m in members if m.user.id in wanted]
        elif data.get("query"):
            q = str(data["query"]).lower()
            members = [m for m in members if m.user.username.lower().startswith(q)]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [payloads.member_payload(m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("presences"):
            chunk["presences"] = []
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        session.send_dispatch("GUILD_MEMBERS_CHUNK", chunk)
