"""Bot-authenticated REST routes (users, gateway info, guild, channels, messages, commands) and
the middleware every /api call passes: call log, scripted faults, auth, rate-limit headers,
JSON errors (unknown routes answer a JSON 404 that names the route)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.base import Fault

from . import messages, wire
from . import permissions as P
from .commands import GLOBAL, check_app
from .errors import (
    ApiError,
    FormErrors,
    json_response,
    missing_access,
    missing_permissions,
    unauthorized,
    unknown_channel,
    unknown_message,
)
from .ratelimits import RateLimiter
from .state import Guild, Message

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

API = "/api/v10"
CALL = web.RequestKey("call", object)  # the Call being recorded for this request
RL_HEADERS = web.RequestKey("rl_headers", dict)  # rate-limit headers to add to the answer
NONCE_WINDOW = 600.0
SESSION_STARTS_PER_DAY = 1000
GUILDS_PER_SHARD = 1000  # what GET /gateway/bot recommends; sharding is required from 2,500


def recommended_shards(guilds: int) -> int:
    return max(1, -(-guilds // GUILDS_PER_SHARD))


@dataclass
class Call:
    """One REST call as Discord saw it (bodies of files are not kept, only names and sizes)."""

    method: str
    path: str
    query: dict[str, str]
    auth: str  # "bot", "none" or "bad"
    at: float
    json: Any = None
    files: list[tuple[str, int]] = field(default_factory=list)
    status: int = 0


def fault_response(fault: Fault) -> web.Response:
    headers = dict(fault.headers)
    body = fault.body
    if fault.status == 429:  # make injected 429s look like Discord's, unless the test chose otherwise
        headers.setdefault("Via", "1.1 google")
        headers.setdefault("X-RateLimit-Scope", "user")
        if body is None:
            body = {"message": "You are being rate limited.", "retry_after": 0.05, "global": False, "code": 0}
        if isinstance(body, dict):
            headers.setdefault("Retry-After", str(body.get("retry_after", 0.05)))
    if isinstance(body, dict | list):
        return json_response(body, fault.status, headers)
    if body is None:
        return web.Response(status=fault.status, headers=headers)
    return web.Response(body=body.encode() if isinstance(body, str) else body, status=fault.status, headers=headers)


def make_middleware(emu: DiscordEmulator):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if not request.path.startswith("/api/"):
            return await handler(request)
        header = request.headers.get("Authorization")
        auth = "none" if header is None else "bot" if header == f"Bot {emu.bot_token}" else "bad"
        call = Call(request.method, request.path, dict(request.query), auth, time.time())
        emu.calls.append(call)
        request[CALL] = call
        request[RL_HEADERS] = {}
        try:
            resp = await _handle(emu, request, handler, call)
        except ApiError as err:
            if call.json is None and request.content_type == "application/json" and request.can_read_body:
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    call.json = await request.json()  # refused before the route read it; keep it for the log
            if err.status == 429:
                resp = json_response(RateLimiter.body_429(err), 429, err.headers)
            else:
                resp = err.response()
        resp.headers.update(request[RL_HEADERS])
        call.status = resp.status
        if resp.status in (401, 403, 429):
            emu.invalid_requests += 1
        emu._changed()
        return resp

    return middleware


async def _handle(emu: DiscordEmulator, request: web.Request, handler, call: Call) -> web.StreamResponse:
    fault = emu._take_fault(request)
    if fault is not None and not fault.passthrough:
        if request.can_read_body:
            await request.read()
        return fault_response(fault)
    if getattr(request.match_info, "http_exception", None) is not None:
        return json_response({"message": f"404: Not Found (the emulator has no route {request.method} "
                                         f"{request.path})", "code": 0}, 404)
    open_route = request.path.startswith((f"{API}/interactions/", f"{API}/webhooks/"))
    if not open_route and call.auth != "bot":
        raise unauthorized()
    response = await handler(request)
    if fault is not None:  # a passthrough fault: the work is done, only the answer is late (or never read)
        await asyncio.sleep(fault.delay)
    return response


class BotRoutes:
    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu

    def routes(self) -> list[web.RouteDef]:
        p = API
        cmds = p + "/applications/{app}/commands"
        gcmds = p + "/applications/{app}/guilds/{guild}/commands"
        return [
            web.get(p + "/users/@me", self.me, allow_head=False),
            web.get(p + "/users/{uid}", self.user, allow_head=False),
            web.get(p + "/oauth2/applications/@me", self.application, allow_head=False),
            web.get(p + "/applications/@me", self.application, allow_head=False),
            web.get(p + "/gateway", self.gateway, allow_head=False),
            web.get(p + "/gateway/bot", self.gateway_bot, allow_head=False),
            web.get(cmds, self.list_commands, allow_head=False), web.put(cmds, self.put_commands),
            web.post(cmds, self.post_command),
            web.get(cmds + "/{cid}", self.get_command, allow_head=False), web.patch(cmds + "/{cid}", self.patch_command),
            web.delete(cmds + "/{cid}", self.delete_command),
            web.get(gcmds, self.list_commands, allow_head=False), web.put(gcmds, self.put_commands),
            web.post(gcmds, self.post_command),
            web.get(gcmds + "/{cid}", self.get_command, allow_head=False),
            web.patch(gcmds + "/{cid}", self.patch_command), web.delete(gcmds + "/{cid}", self.delete_command),
            web.get(p + "/guilds/{guild}", self.guild, allow_head=False),
            web.get(p + "/guilds/{guild}/channels", self.guild_channels, allow_head=False),
            web.get(p + "/guilds/{guild}/roles", self.guild_roles, allow_head=False),
            web.get(p + "/guilds/{guild}/members/{uid}", self.member, allow_head=False),
            web.get(p + "/channels/{channel}", self.channel, allow_head=False),
            web.post(p + "/channels/{channel}/typing", self.typing),
            web.get(p + "/channels/{channel}/messages", self.history, allow_head=False),
            web.post(p + "/channels/{channel}/messages", self.send),
            web.get(p + "/channels/{channel}/messages/{mid}", self.get_message, allow_head=False),
            web.patch(p + "/channels/{channel}/messages/{mid}", self.edit),
            web.delete(p + "/channels/{channel}/messages/{mid}", self.delete),
        ]

    # -- helpers ---------------------------------------------------------------------------------
    def _rate(self, request: web.Request, bucket: str, major: str) -> None:
        request[RL_HEADERS].update(self.emu.rate_limits.take(bucket, major))

    def _guild(self, request: web.Request) -> Guild:
        gid = request.match_info["guild"]
        guild = self.emu.guilds.get(int(gid)) if gid.isdigit() else None
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    def _channel(self, request: web.Request):
        cid = request.match_info["channel"]
        guild = self.emu.guild_of_channel(int(cid)) if cid.isdigit() else None
        if guild is None:
            raise unknown_channel()
        return guild.channels[int(cid)]

    def _bot_perms(self, ch) -> int:
        guild = self.emu.guild_of_channel(ch.id) or self.emu.guild
        return guild.permissions(self.emu.bot_user, ch)

    def _message(self, ch, mid: str) -> Message:
        msg = self.emu._messages.get(int(mid)) if mid.isdigit() else None
        if msg is None or msg.deleted or msg.ephemeral or msg.channel_id != ch.id:
            raise unknown_message()
        return msg

    # -- identity --------------------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        u = self.emu.bot_user
        return json_response({**wire.user_obj(u), "verified": True, "mfa_enabled": False, "flags": 0,
                              "locale": "en-US", "email": None, "premium_type": 0})

    async def user(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        u = self.emu.users.get(int(uid)) if uid.isdigit() else None
        if u is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(wire.user_obj(u))

    async def application(self, request: web.Request) -> web.Response:
        emu = self.emu
        owner = wire.user_obj(emu.users[emu.guild.owner_id])
        return json_response({
            "id": str(emu.application_id), "name": emu.bot_user.name, "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "owner": owner, "verify_key": "0" * 64,
            "flags": 0, "team": None, "summary": "", "rpc_origins": [], "bot": wire.user_obj(emu.bot_user),
            "approximate_guild_count": len(emu.guilds), "interactions_endpoint_url": None, "redirect_uris": [],
            "tags": [], "install_params": None, "custom_install_url": None, "integration_types_config": {}})

    async def gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.emu.gateway_url})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        """Discord recommends one shard per 1,000 guilds (at least 1); every IDENTIFY uses up one
        of the day's 1,000 session starts; `max_concurrency` identifies may start per 5 s."""
        emu = self.emu
        return json_response({"url": emu.gateway_url, "shards": recommended_shards(len(emu.guilds)),
                              "session_start_limit": {
                                  "total": SESSION_STARTS_PER_DAY,
                                  "remaining": max(0, SESSION_STARTS_PER_DAY - emu.gateway.identifies),
                                  "reset_after": 86400000, "max_concurrency": emu.max_concurrency}})

    # -- commands --------------------------------------------------------------------------------
    def _scope(self, request: web.Request) -> Any:
        check_app(self.emu, request.match_info["app"])
        if "guild" in request.match_info:
            self._guild(request)
            return int(request.match_info["guild"])
        return GLOBAL

    async def _json(self, request: web.Request) -> Any:
        try:
            data = await request.json()
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
        request[CALL].json = data
        return data

    async def list_commands(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        return json_response(self.emu.command_registry.by_scope.get(scope, []))

    async def put_commands(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        self._rate(request, "commands", str(scope))
        data = await self._json(request)
        if not isinstance(data, list):
            raise ApiError(400, 50035, "Invalid Form Body")
        return json_response(self.emu.command_registry.overwrite(scope, data))

    async def post_command(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        self._rate(request, "commands", str(scope))
        cmd, created = self.emu.command_registry.upsert(scope, await self._json(request))
        return json_response(cmd, 201 if created else 200)

    async def get_command(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        return json_response(self.emu.command_registry.get(scope, request.match_info["cid"]))

    async def patch_command(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        reg = self.emu.command_registry
        current = reg.get(scope, request.match_info["cid"])
        cmd, _ = reg.upsert(scope, {**current, **await self._json(request)})
        return json_response(cmd)

    async def delete_command(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        self.emu.command_registry.delete(scope, request.match_info["cid"])
        return web.Response(status=204)

    # -- guild -----------------------------------------------------------------------------------
    async def guild(self, request: web.Request) -> web.Response:
        g = self._guild(request)
        data = wire.guild_obj(self.emu, full=False, guild=g)
        if request.query.get("with_counts") in ("true", "1"):
            data.update(approximate_member_count=len(g.members), approximate_presence_count=1)
        return json_response(data)

    async def guild_channels(self, request: web.Request) -> web.Response:
        g = self._guild(request)
        return json_response([wire.channel_obj(g, c) for c in g.channels.values()])

    async def guild_roles(self, request: web.Request) -> web.Response:
        g = self._guild(request)
        return json_response([wire.role_obj(r) for r in g.roles.values()])

    async def member(self, request: web.Request) -> web.Response:
        g = self._guild(request)
        uid = request.match_info["uid"]
        u = g.members.get(int(uid)) if uid.isdigit() else None
        if u is None:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(wire.member_obj(u, guild=g))

    # -- channels and messages -------------------------------------------------------------------
    async def channel(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if not self._bot_perms(ch) & P.VIEW_CHANNEL:
            raise missing_access()
        return json_response(wire.channel_obj(self.emu.guild_of_channel(ch.id) or self.emu.guild, ch))

    async def typing(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        self._rate(request, "typing", str(ch.id))
        if not self._bot_perms(ch) & P.SEND_MESSAGES:
            raise missing_permissions()
        return web.Response(status=204)

    async def history(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        self._rate(request, "message_read", str(ch.id))
        perms = self._bot_perms(ch)
        if not perms & P.VIEW_CHANNEL:
            raise missing_access()
        if not perms & P.READ_MESSAGE_HISTORY:
            return json_response([])
        q = request.query
        try:
            limit = int(q.get("limit", 50))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            errors = FormErrors()
            errors.add(("limit",), "NUMBER_TYPE_MAX" if limit > 100 else "NUMBER_TYPE_MIN",
                       "int value should be less than or equal to 100." if limit > 100
                       else "int value should be greater than or equal to 1.")
            errors.raise_if_any()
        visible = sorted((m for m in self.emu._messages.values()
                          if m.channel_id == ch.id and not m.deleted and not m.ephemeral), key=lambda m: m.id)
        if "around" in q:
            around = int(q["around"])
            older = [m for m in visible if m.id <= around][-((limit + 1) // 2):]
            newer = [m for m in visible if m.id > around][: limit - len(older)]
            page = older + newer
        elif "after" in q:
            after = int(q["after"])
            page = [m for m in visible if m.id > after][:limit]
        else:
            before = int(q["before"]) if "before" in q else None
            page = [m for m in visible if before is None or m.id < before][-limit:]
        return json_response([wire.message_obj(self.emu, m) for m in reversed(page)])  # newest first

    async def get_message(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        self._rate(request, "message_read", str(ch.id))
        if not self._bot_perms(ch) & P.READ_MESSAGE_HISTORY:
            raise missing_access()
        return json_response(wire.message_obj(self.emu, self._message(ch, request.match_info["mid"])))

    async def send(self, request: web.Request) -> web.Response:
        emu = self.emu
        ch = self._channel(request)
        self._rate(request, "message_create", str(ch.id))
        perms = self._bot_perms(ch)
        if not perms & P.VIEW_CHANNEL:
            raise missing_access()
        if not perms & P.SEND_MESSAGES:
            raise missing_permissions()
        body = await emu.read_body(request)
        try:
            if body.files and not perms & P.ATTACH_FILES:
                raise missing_permissions()
            original = self._nonce_original(ch.id, body.json)
            if original is not None:
                body.discard()
                return json_response(wire.message_obj(emu, original))
            msg = await messages.create(emu, ch.id, body.json, body.files, author_id=emu.bot_user_id,
                                        embed_links=bool(perms & P.EMBED_LINKS))
        except BaseException:
            body.discard()
            raise
        return json_response(wire.message_obj(emu, msg))

    def _nonce_original(self, channel_id: int, payload: dict) -> Message | None:
        """With `enforce_nonce`, a nonce seen from the same author in the same channel in the last
        few minutes returns the earlier message instead of creating another."""
        nonce = payload.get("nonce")
        if nonce is None or not payload.get("enforce_nonce"):
            return None
        now = time.time()
        for m in reversed(list(self.emu._messages.values())):
            if (m.channel_id == channel_id and m.author_id == self.emu.bot_user_id and m.nonce == str(nonce)
                    and now - m.created_at.timestamp() <= NONCE_WINDOW and m.interaction_id is None):
                return m
        return None

    async def edit(self, request: web.Request) -> web.Response:
        emu = self.emu
        ch = self._channel(request)
        self._rate(request, "message_edit", str(ch.id))
        msg = self._message(ch, request.match_info["mid"])
        body = await emu.read_body(request)
        try:
            if msg.author_id != emu.bot_user_id:
                only_flags = set(body.json) <= {"flags"}
                if not (only_flags and self._bot_perms(ch) & P.MANAGE_MESSAGES):
                    raise ApiError(403, 50005, "Cannot edit a message authored by another user")
            perms = self._bot_perms(ch)
            if body.files and not perms & P.ATTACH_FILES:
                raise missing_permissions()
            msg = await messages.edit(emu, msg, body.json, body.files, embed_links=bool(perms & P.EMBED_LINKS))
        except BaseException:
            body.discard()
            raise
        return json_response(wire.message_obj(emu, msg))

    async def delete(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        self._rate(request, "message_delete", str(ch.id))
        msg = self._message(ch, request.match_info["mid"])
        if msg.author_id != self.emu.bot_user_id and not self._bot_perms(ch) & P.MANAGE_MESSAGES:
            raise missing_permissions()
        await messages.delete(self.emu, msg)
        return web.Response(status=204)
