"""The gateway websocket: HELLO, heartbeats, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay
of missed events, member chunks. Plain TEXT frames: discord.py only inflates binary ones.

Routing follows Discord's sharding rule: a session that identified with `shard: [i, n]` gets the
guilds with `(guild_id >> 22) % n == i` (in READY, GUILD_CREATE and every event of those guilds,
interactions included), shard 0 also gets DMs; a session without `shard` gets everything. Discord
computes this per session, so two sessions on one shard both get its events and a shard that no
session holds gets none: events are neither queued for a shard that has not identified nor sent
elsewhere (an interaction nobody receives fails at its 3 s deadline). A session whose socket
dropped keeps collecting its events for RESUME while it is the newest one on its shard; older
sessions on that shard are left behind (tests restart the bot against the same emulator)."""

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
MAX_RECEIVED = 100_000


def _valid_shard(shard: Any) -> bool:
    """`[shard_id, num_shards]` with 0 <= shard_id < num_shards (else Discord closes with 4010)."""
    return (isinstance(shard, list) and len(shard) == 2 and all(isinstance(x, int) for x in shard)
            and 0 <= shard[0] < shard[1])


def shard_of(guild_id: int, num_shards: int) -> int:
    """The shard that receives a guild's events (Discord's sharding formula)."""
    return (guild_id >> 22) % num_shards


@dataclass
class Session:
    id: str
    shard: list[int] | None = None
    seq: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)  # the last frames, for RESUME
    ws: web.WebSocketResponse | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    order: int = 0  # when it identified (a higher number is newer)
    #: (event name, guild id or None) of everything dispatched to it, for tests to ask who got what
    received: list[tuple[str, int | None]] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int] | None:
        return (self.shard[0], self.shard[1]) if self.shard else None

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def owns(self, guild_id: int | None) -> bool:
        """Whether this session receives the events of `guild_id` (None: a DM)."""
        if self.shard is None:
            return True
        shard_id, num_shards = self.shard
        return shard_id == (0 if guild_id is None else shard_of(guild_id, num_shards))

    def got(self, event: str) -> list[int | None]:
        """Guild ids of the `event`s dispatched to this session, in order."""
        return [g for e, g in self.received if e == event]


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

    async def _dispatch_to(self, session: Session, event: str, data: Any, guild_id: int | None = None) -> None:
        session.received.append((event, guild_id))
        del session.received[:-MAX_RECEIVED]
        session.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.events.append((session.seq, frame))
        del session.events[:-REPLAY_BUFFER]
        ws = session.ws
        if ws is not None and not ws.closed:
            async with session.lock:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(frame)

    def owners(self, guild_id: int | None) -> list[Session]:
        """The sessions that get `guild_id`'s events (None: a DM): each one on the guild's shard
        whose socket is open, and the newest one per shard even with its socket down (it may
        RESUME). Sessions that closed and were followed by a newer one on their shard get none."""
        newest: dict[tuple[int, int] | None, Session] = {}
        for s in self.sessions.values():
            if s.key not in newest or s.order > newest[s.key].order:
                newest[s.key] = s
        return [s for s in self.sessions.values()
                if s.owns(guild_id) and (s.open or newest[s.key] is s)]

    async def dispatch(self, event: str, data: Any, *, guild_id: int | None = None) -> list[str]:
        """Send an event of `guild_id` (None: not tied to a guild, so shard 0 and unsharded
        sessions) to the sessions that own it; returns their ids (empty: delivered to nobody)."""
        targets = self.owners(guild_id)
        for session in targets:
            await self._dispatch_to(session, event, data, guild_id)
        return [s.id for s in targets]

    def shard_guilds(self, shard: list[int] | None) -> list[int]:
        """The guild ids a session identified with `shard` holds."""
        probe = Session("probe", shard=shard)
        return [gid for gid in self.emu.guilds if probe.owns(gid)]

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
                    await self._members_chunk(session, d or {})
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.emu._changed()
        return ws

    async def _members_chunk(self, session: Session, d: dict) -> None:
        """Op 8 REQUEST_GUILD_MEMBERS: one chunk per asked guild this session holds."""
        asked = d.get("guild_id")
        for gid in asked if isinstance(asked, list) else [asked]:
            guild = self.emu.guilds.get(int(gid)) if str(gid).isdigit() else None
            if guild is None or not session.owns(guild.id):
                continue
            await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", {
                "guild_id": str(guild.id), "chunk_index": 0, "chunk_count": 1, "not_found": [],
                "members": [wire.member_obj(u, guild=guild) for u in guild.members.values()],
                **({"nonce": d["nonce"]} if d.get("nonce") else {})}, guild.id)

    async def _identify(self, ws: web.WebSocketResponse, d: dict) -> Session | None:
        token = str(d.get("token", ""))
        if token.removeprefix("Bot ") != self.emu.bot_token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard = d.get("shard")
        if shard is not None and not _valid_shard(shard):
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        self.identifies += 1
        session = Session(secrets.token_hex(16), shard=shard, ws=ws, order=self.identifies)
        self.sessions[session.id] = session
        self.current = session
        emu = self.emu
        guild_ids = self.shard_guilds(shard)
        ready: dict[str, Any] = {
            "v": 10, "user": {**wire.user_obj(emu.bot_user), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids], "session_id": session.id,
            "resume_gateway_url": emu.gateway_url, "application": {"id": str(emu.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "geo_ordered_rtc_regions": [],
            "session_type": "normal", "auth": {}, "user_settings": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._dispatch_to(session, "READY", ready)
        for gid in guild_ids:
            await self._dispatch_to(session, "GUILD_CREATE", wire.guild_obj(emu, full=True, guild=emu.guilds[gid]), gid)
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
