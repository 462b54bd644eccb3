"""The gateway websocket: HELLO, heartbeats, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay
of missed events, member chunks, and dispatch to whichever client identified last (tests restart
the bot against the same emulator). Plain TEXT frames: discord.py only inflates binary ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from . import wire

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL_MS = 41250
REPLAY_BUFFER = 1000


@dataclass
class Session:
    id: str
    shard: list[int] | None = None
    seq: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Gateway:
    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu
        self.sessions: dict[str, Session] = {}
        self.current: Session | None = None
        self.connections = 0  # websocket connections accepted so far
        self.identifies = 0
        self.resumes = 0
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def connected(self) -> bool:
        s = self.current
        return s is not None and s.ws is not None and not s.ws.closed

    # -- sending -------------------------------------------------------------------------------
    async def _send(self, session: Session, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        async with session.lock:
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(json.dumps(payload))

    async def _dispatch_to(self, session: Session, event: str, data: Any) -> None:
        session.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.events.append((session.seq, frame))
        del session.events[:-REPLAY_BUFFER]
        ws = session.ws
        if ws is not None and not ws.closed:
            async with session.lock:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(frame)

    async def dispatch(self, event: str, data: Any) -> bool:
        """Send an event to the current session (buffered for RESUME when its socket is down).
        False when no client ever identified."""
        if self.current is None:
            return False
        await self._dispatch_to(self.current, event, data)
        return True

    # -- resilience hooks ----------------------------------------------------------------------
    async def disconnect(self, code: int = 4000) -> None:
        """Drop the current socket with a resumable code; the client resumes at resume_gateway_url."""
        s = self.current
        if s is not None and s.ws is not None:
            await s.ws.close(code=code, message=b"emulator disconnect")

    async def send_op(self, op: int, d: Any = None) -> None:
        s = self.current
        if s is not None and s.ws is not None:
            await self._send(s, s.ws, {"op": op, "d": d, "s": None, "t": None})

    async def close_all(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"emulator stopping")

    # -- the socket ----------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        self._sockets.add(ws)
        session: Session | None = None
        tmp = Session("pre-identify")
        await self._send(tmp, ws, {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                op, d = frame.get("op"), frame.get("d")
                lock_holder = session or tmp
                if op == 1:
                    await self._send(lock_holder, ws, {"op": 11, "d": None, "s": None, "t": None})
                elif op == 2:
                    session = await self._identify(ws, d or {})
                    if session is None:
                        break
                elif op == 6:
                    session = await self._resume(ws, d or {}, tmp)
                elif op == 8 and session is not None:
                    await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", {
                        "guild_id": str(self.emu.guild_id), "chunk_index": 0, "chunk_count": 1, "not_found": [],
                        "members": [wire.member_obj(u) for u in self.emu.guild.members.values()],
                        **({"nonce": d["nonce"]} if d and d.get("nonce") else {})})
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.emu._changed()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, d: dict) -> Session | None:
        token = str(d.get("token", ""))
        if token.removeprefix("Bot ") != self.emu.bot_token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        self.identifies += 1
        session = Session(secrets.token_hex(16), shard=d.get("shard"), ws=ws)
        self.sessions[session.id] = session
        self.current = session
        emu = self.emu
        ready: dict[str, Any] = {
            "v": 10, "user": {**wire.user_obj(emu.bot_user), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(emu.guild_id), "unavailable": True}], "session_id": session.id,
            "resume_gateway_url": emu.gateway_url, "application": {"id": str(emu.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "geo_ordered_rtc_regions": [],
            "session_type": "normal", "auth": {}, "user_settings": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._dispatch_to(session, "READY", ready)
        await self._dispatch_to(session, "GUILD_CREATE", wire.guild_obj(emu, full=True))
        emu._changed()
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: dict, tmp: Session) -> Session | None:
        session = self.sessions.get(str(d.get("session_id")))
        if session is None or str(d.get("token", "")).removeprefix("Bot ") != self.emu.bot_token:
            await self._send(tmp, ws, {"op": 9, "d": False, "s": None, "t": None})
            return None
        self.resumes += 1
        old = session.ws
        session.ws = ws
        self.current = session
        if old is not None and old is not ws:
            with contextlib.suppress(Exception):
                await old.close(code=4000)
        last = int(d.get("seq") or 0)
        async with session.lock:
            for seq, frame in list(session.events):
                if seq > last:
                    await ws.send_str(frame)
        await self._dispatch_to(session, "RESUMED", {})
        self.emu._changed()
        return session
