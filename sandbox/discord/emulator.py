"""`DiscordEmulator`: the loopback Discord a real discord.py bot runs against (REST, gateway
and CDN on one aiohttp port), plus the test-facing API that acts as the users and reads what
they would see. Limits are enforced as Discord enforces them; see the package docstring."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.base import Fault, FaultPlan

from . import permissions as P
from . import wire
from .cdn import Cdn
from .commands import CommandRegistry
from .gateway import Gateway
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    CommandInputError,
    Interaction,
    base_payload,
    command_data,
    find_component,
    modal_components,
)
from .limits import REQUEST_CAP
from .ratelimits import RateLimiter
from .responses import InteractionRoutes
from .rest import CALL, BotRoutes, Call, make_middleware
from .state import Channel, Guild, Message, Snowflakes, StoredFile, User
from .uploads import Body, read_body

_ATTACHMENT_ID = re.compile(r"/(\d+)/[^/?]+(?:\?|$)")


class DiscordEmulator:
    """One guild with a text channel "general", a bot user and application, and any users the
    test adds; `add_guild()` adds more (the gateway routes each guild's events to the shard
    that owns it). Start it, `point_discord_py()`, then run the bot with `emu.bot_token`."""

    def __init__(self, upload_limit: int = 10 * 1024 * 1024, ack_deadline: float = 3.0, token_ttl: float = 900.0,
                 attachment_url_ttl: float = 24 * 3600, rate_limits: bool = True, storage_dir: str | Path | None = None,
                 *, old_message_edits_per_hour: int = 5, max_concurrency: int = 1) -> None:
        self.upload_limit = upload_limit
        self.ack_deadline = ack_deadline
        self.token_ttl = token_ttl
        self.old_message_edits_per_hour = old_message_edits_per_hour
        self.max_concurrency = max_concurrency  # identifies per 5 s that GET /gateway/bot reports
        self.ids = Snowflakes()
        self.application_id = self.ids.next()
        self.bot_user = User(self.application_id, "emubot", bot=True)  # modern apps: bot id == app id
        owner = User(self.ids.next(), "guild-owner")
        self.users: dict[int, User] = {self.bot_user.id: self.bot_user, owner.id: owner}
        self.guild = Guild(self.ids, self.bot_user, owner)  # the default guild
        self.guilds: dict[int, Guild] = {self.guild.id: self.guild}
        self.bot_token = self._make_token()
        self.cdn = Cdn(url_ttl=attachment_url_ttl, application_id=self.application_id)
        self.command_registry = CommandRegistry(self)
        self.gateway = Gateway(self)
        self.rate_limits = RateLimiter(enabled=rate_limits)
        self.calls: list[Call] = []
        self.downloads: list[tuple[str, str, int]] = []  # CDN requests: method, path, status
        self.invalid_requests = 0  # 401/403/429 answers (Discord bans at 10,000 per 10 minutes)
        self._messages: dict[int, Message] = {}
        self._interactions: dict[int, Interaction] = {}
        self._by_token: dict[str, Interaction] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self.faults = FaultPlan()
        self._event: asyncio.Event | None = None
        self._listeners: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task] = set()
        self._given_storage = Path(storage_dir) if storage_dir is not None else None
        self.storage_dir = self._given_storage or Path(tempfile.mkdtemp(prefix="discord-emu-"))
        self._runner: web.AppRunner | None = None
        self._saved: tuple | None = None
        self.base_url = ""
        self.channel_id = self.add_channel("general")

    def _make_token(self) -> str:
        head = base64.urlsafe_b64encode(str(self.application_id).encode()).decode().rstrip("=")
        return f"{head}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(27)}"

    # -- ids and views -------------------------------------------------------------------------
    @property
    def bot_user_id(self) -> int:
        return self.bot_user.id

    @property
    def guild_id(self) -> int:
        return self.guild.id

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    @property
    def connected(self) -> bool:
        return self.gateway.connected

    @property
    def commands(self) -> dict[Any, list[dict]]:
        """Registered commands per scope: "global" or a guild id."""
        return self.command_registry.by_scope

    # -- serving -------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[make_middleware(self)])
        app.add_routes(BotRoutes(self).routes() + InteractionRoutes(self).routes() + self.cdn.routes()
                       + [web.get("/gateway", self.gateway.handle)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{bound}"
        self.cdn.base_url = self.base_url
        return self.base_url

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        await self.gateway.close_all()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._given_storage is None:
            await asyncio.to_thread(shutil.rmtree, self.storage_dir, True)

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def point_discord_py(self) -> None:
        """Send discord.py's REST, gateway and asset traffic here (class attributes, process-wide)."""
        import discord
        import yarl

        if self._saved is None:
            self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
                           discord.asset.Asset.BASE)
        discord.http.Route.BASE = f"{self.base_url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        discord.asset.Asset.BASE = self.base_url

    def unpatch(self) -> None:
        import discord

        if self._saved is not None:
            (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
             discord.asset.Asset.BASE) = self._saved
            self._saved = None

    # -- the world -----------------------------------------------------------------------------
    def add_guild(self, name: str = "Another Guild", *, shard: tuple[int, int] | None = None) -> int:
        """Another guild the bot is in, with its own roles and a text channel "general" (see
        `general_channel`); its owner is the default guild's. `shard=(shard_id, num_shards)`
        picks an id that Discord's rule puts on that shard. Sessions that already identified
        get its GUILD_CREATE if they own it, as when the bot joins a server."""
        gid = self.ids.next_on_shard(*shard) if shard is not None else None
        guild = Guild(self.ids, self.bot_user, self.users[self.guild.owner_id], name, guild_id=gid)
        self.guilds[guild.id] = guild
        self.add_channel("general", guild_id=guild.id, announce=False)
        self._background(self.gateway.dispatch("GUILD_CREATE", wire.guild_obj(self, full=True, guild=guild),
                                               guild_id=guild.id))
        return guild.id

    def general_channel(self, guild_id: int | None = None) -> int:
        """The first text channel of a guild (the default guild's "general" without an id)."""
        return next(iter(self._guild(guild_id).channels))

    def _guild(self, guild_id: int | None) -> Guild:
        if guild_id is None:
            return self.guild
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise KeyError(f"no guild {guild_id}; add one with emu.add_guild()")
        return guild

    def guild_of_channel(self, channel_id: int) -> Guild | None:
        return next((g for g in self.guilds.values() if channel_id in g.channels), None)

    def add_user(self, name: str, *, manage_guild: bool = False, admin: bool = False,
                 guild_id: int | None = None) -> int:
        """A user who is a member of one guild (the default one unless given); `add_member`
        makes them a member of more."""
        user = User(self.ids.next(), name)
        self.users[user.id] = user
        self.add_member(user.id, guild_id, manage_guild=manage_guild, admin=admin)
        return user.id

    def add_member(self, user_id: int, guild_id: int | None = None, *, manage_guild: bool = False,
                   admin: bool = False) -> None:
        guild = self._guild(guild_id)
        user = self.users[user_id]
        if manage_guild:
            user.role_ids.append(guild.managers.id)
        if admin:
            user.role_ids.append(guild.admins.id)
        guild.members[user.id] = user

    def add_channel(self, name: str, *, guild_id: int | None = None, announce: bool = True) -> int:
        guild = self._guild(guild_id)
        ch = Channel(self.ids.next(), name, position=len(guild.channels))
        guild.channels[ch.id] = ch
        if announce:
            self._background(self.gateway.dispatch("CHANNEL_CREATE", wire.channel_obj(guild, ch),
                                                   guild_id=guild.id))
        return ch.id

    def set_bot_permissions(self, channel_id: int, perms: int) -> asyncio.Task | None:
        """The bot's effective permissions in a channel become exactly `perms` (a member overwrite,
        sent to the bot as CHANNEL_UPDATE). Without SEND_MESSAGES sends get 403/50013, without
        ATTACH_FILES sends with files get 403/50013, without EMBED_LINKS messages still send but
        their embeds are not shown (kept on `Message.dropped_embeds`)."""
        guild = self.guild_of_channel(channel_id)
        if guild is None:
            raise KeyError(f"unknown channel {channel_id}")
        ch = guild.channels[channel_id]
        guild.set_member_overwrite(ch, self.bot_user_id, perms, P.ALL & ~perms)
        self._changed()
        return self._background(self.gateway.dispatch("CHANNEL_UPDATE", wire.channel_obj(guild, ch),
                                                      guild_id=guild.id))

    def attachment(self, path_or_bytes: str | Path | bytes, filename: str, content_type: str | None = None) -> StoredFile:
        """A file a user attaches to a slash command option. A path is served in place (not copied)."""
        ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if isinstance(path_or_bytes, bytes | bytearray):
            path = self.storage_dir / f"user-{self.ids.next()}"
            path.write_bytes(path_or_bytes)
            size = len(path_or_bytes)
        else:
            path = Path(path_or_bytes)
            size = path.stat().st_size
        return self.cdn.add(StoredFile(self.ids.next(), filename, size, ctype, path, self.channel_id, ephemeral=True))

    def attachment_record(self, f: StoredFile) -> dict:
        """The test-facing attachment dict (ids as ints)."""
        data = self.cdn.as_attachment(f)
        data["id"] = f.id
        return data

    def attachment_obj(self, record: dict) -> dict:
        """The wire attachment with a freshly signed URL."""
        f = self.cdn.files.get(int(record["id"]))
        return self.cdn.as_attachment(f) if f is not None else {**record, "id": str(record["id"])}

    def _stored(self, attachment: Any) -> StoredFile:
        if isinstance(attachment, StoredFile):
            return attachment
        if isinstance(attachment, dict):
            aid = int(attachment["id"])
        elif isinstance(attachment, int):
            aid = attachment
        elif isinstance(attachment, str):
            match = _ATTACHMENT_ID.search(attachment)
            aid = int(match.group(1)) if match else -1
        else:
            aid = int(attachment.id)
        f = self.cdn.files.get(aid)
        if f is None:
            raise KeyError(f"no stored attachment {aid}")
        return f

    def read_attachment(self, attachment: Any) -> bytes:
        """Bytes of an attachment (a Message.attachments dict, an id, a URL or a discord.Attachment).
        Reads the whole file: for small test files."""
        return self._stored(attachment).path.read_bytes()

    def copy_attachment(self, attachment: Any, dest: str | Path) -> Path:
        shutil.copyfile(self._stored(attachment).path, dest)
        return Path(dest)

    def age_message(self, message_id: int, seconds: float) -> None:
        """Pretend a message was sent `seconds` earlier (its id keeps its real time). Messages
        older than 1 hour allow only `old_message_edits_per_hour` edits per rolling hour (30046)."""
        self._messages[message_id].created_at -= timedelta(seconds=seconds)

    def expire_interaction_tokens(self) -> None:
        for ix in self._interactions.values():
            ix.created_at -= self.token_ttl + 1

    def expire_attachment_urls(self) -> None:
        """Every CDN URL handed out so far answers 404; messages fetched afterwards carry fresh ones."""
        self.cdn.expire_urls()

    def inject(self, method: str, path_regex: str, status: int, body: Any = None, times: int | None = 1,
               headers: dict[str, str] | None = None) -> Fault:
        """Answer matching REST calls with `status`/`body` instead of the real route, `times` times
        (None: until cleared). A 429 gets Discord's `Via`, scope and JSON body unless given."""
        return self.faults.add(method, path_regex, status, body, headers=headers, times=times)

    def clear_faults(self) -> None:
        self.faults.clear()

    def _take_fault(self, request: web.Request) -> Fault | None:
        return self.faults.take(request)

    # -- gateway helpers -----------------------------------------------------------------------
    def disconnect_gateway(self) -> asyncio.Task | None:
        """Drop the bot's websocket (resumable close); it reconnects and RESUMEs. Awaitable."""
        return self._background(self.gateway.disconnect())

    def send_reconnect(self) -> asyncio.Task | None:
        """Op 7 RECONNECT: the client closes and RESUMEs. Awaitable."""
        return self._background(self.gateway.send_op(7))

    def invalidate_session(self) -> asyncio.Task | None:
        """Op 9 INVALID_SESSION (not resumable): the client IDENTIFYs again."""
        return self._background(self.gateway.send_op(9, False))

    async def wait_for_bot(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self.connected and self.gateway.current is not None, timeout=timeout,
                            what="a bot to connect")

    async def echo(self, event: str, msg: Message) -> None:
        """Tell the bot about its own messages, as Discord does (MESSAGE_CREATE/UPDATE)."""
        if msg.ephemeral:
            return
        guild = self.guild_of_channel(msg.channel_id) or self.guild
        data = wire.message_obj(self, msg)
        data["guild_id"] = str(guild.id)
        member = wire.member_obj(self.users[msg.author_id], guild=guild)
        member.pop("user")
        data["member"] = member
        await self.gateway.dispatch(event, data, guild_id=guild.id)

    def _background(self, coro) -> asyncio.Task | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- state changes and waiting -------------------------------------------------------------
    def _changed(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None
        for listener in list(self._listeners):
            listener()

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` (cheap, non-blocking) after every state change; returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, *, what: str | None = None) -> Any:
        """Return predicate()'s first truthy value. Re-evaluated on every state change (and every
        50 ms, so predicates over state outside the emulator work too)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = end - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what or predicate}")
            if self._event is None:
                self._event = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, 0.05))

    # -- reading what users see ----------------------------------------------------------------
    def messages(self, channel_id: int | None = None, *, visible_to: int | None = None,
                 include_deleted: bool = False, include_ephemeral: bool = True) -> list[Message]:
        """Messages in send order. `channel_id=None`: every channel. `visible_to`: only what that
        user can see (channel messages plus their own ephemeral ones)."""
        out = []
        for m in sorted(self._messages.values(), key=lambda m: m.id):
            if channel_id is not None and m.channel_id != channel_id:
                continue
            if m.deleted and not include_deleted:
                continue
            if m.ephemeral and (not include_ephemeral or (visible_to is not None and m.visible_to != visible_to)):
                continue
            out.append(m)
        return out

    def message(self, message_id: int) -> Message:
        return self._messages[int(message_id)]

    def interaction_by_id(self, iid: int) -> Interaction | None:
        return self._interactions.get(iid)

    def interaction_by_token(self, token: str) -> Interaction | None:
        return self._by_token.get(token)

    @property
    def interactions(self) -> list[Interaction]:
        return list(self._interactions.values())

    # -- acting as users -----------------------------------------------------------------------
    def _user(self, user: int, channel_id: int) -> None:
        guild = self.guild_of_channel(channel_id) or self.guild
        if user not in self.users or user not in guild.members:
            raise CommandInputError(f"unknown user {user} in guild {guild.id}; add one with emu.add_user()")

    def _channel(self, channel_id: int | None) -> int:
        cid = channel_id or self.channel_id
        if self.guild_of_channel(cid) is None:
            raise CommandInputError(f"unknown channel {cid}")
        return cid

    async def _dispatch(self, ix: Interaction, payload: dict[str, Any]) -> Interaction:
        """Send the interaction to the session(s) owning its guild's shard. When none does (that
        shard never identified), it is not delivered and fails at the deadline, as on Discord."""
        if self.gateway.current is None:
            raise RuntimeError("no bot has connected to the emulator's gateway")
        ix.payload = payload
        self._interactions[ix.id] = ix
        self._by_token[ix.token] = ix
        loop = asyncio.get_running_loop()
        ix.dispatched_at = loop.time()
        self._timers[ix.id] = loop.call_later(self.ack_deadline, self._fail, ix)
        ix.sessions = await self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=ix.guild_id)
        self._changed()
        return ix

    def _fail(self, ix: Interaction) -> None:
        """The deadline passed without an initial response: "This interaction failed"."""
        self._timers.pop(ix.id, None)
        if not ix.acked and not ix.failed:
            ix.failed = True
            self._changed()

    def _acked(self, ix: Interaction) -> None:
        handle = self._timers.pop(ix.id, None)
        if handle is not None:
            handle.cancel()
        self._changed()

    async def slash(self, command: str, *, user: int, options: dict[str, Any] | None = None,
                    channel_id: int | None = None) -> Interaction:
        """Run `/command` ("name", "name sub" or "name group sub") as `user`; returns at once."""
        cid = self._channel(channel_id)
        self._user(user, cid)
        data = command_data(self, command, dict(options or {}), guild=self.guild_of_channel(cid))
        ix = Interaction(self, type=APPLICATION_COMMAND, user_id=user, channel_id=cid, command_name=command)
        return await self._dispatch(ix, {**base_payload(self, ix), "data": data})

    async def autocomplete(self, command: str, *, focused: str, value: str = "", options: dict[str, Any] | None = None,
                           user: int, channel_id: int | None = None) -> list[dict]:
        """Type into an autocompleted option; returns the choices the bot offered."""
        cid = self._channel(channel_id)
        self._user(user, cid)
        data = command_data(self, command, {**(options or {}), focused: value}, focused=focused,
                            guild=self.guild_of_channel(cid))
        ix = Interaction(self, type=AUTOCOMPLETE, user_id=user, channel_id=cid, command_name=command)
        await self._dispatch(ix, {**base_payload(self, ix), "data": data})
        await ix.wait_ack(timeout=self.ack_deadline + 2)
        return list(ix.choices or [])

    async def click(self, message: Message | int, custom_id: str, *, user: int,
                    values: list[str] | None = None) -> Interaction:
        """Click a button (or pick `values` in a select menu) on a message the user can see."""
        msg = self._messages.get(int(getattr(message, "id", message)))
        if msg is None or msg.deleted:
            raise CommandInputError(f"no message {getattr(message, 'id', message)}")
        self._user(user, msg.channel_id)
        if msg.ephemeral and msg.visible_to != user:
            raise CommandInputError("that ephemeral message is not visible to this user")
        comp = find_component(msg.components, custom_id)
        if comp is None:
            raise CommandInputError(f"message {msg.id} has no component {custom_id!r}")
        if comp.get("disabled"):
            raise CommandInputError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp.get("type", 2)}
        if comp.get("type", 2) != 2:
            data["values"] = list(values or [])
        ix = Interaction(self, type=MESSAGE_COMPONENT, user_id=user, channel_id=msg.channel_id, message_id=msg.id)
        return await self._dispatch(ix, {**base_payload(self, ix), "message": wire.message_obj(self, msg), "data": data})

    async def submit_modal(self, custom_id: str, *, values: dict[str, str], user: int,
                           channel_id: int | None = None) -> Interaction:
        """Submit a modal; the components mirror the last modal with this custom_id shown to the user."""
        shown = next((ix for ix in reversed(self._interactions.values())
                      if ix.user_id == user and ix.modal and ix.modal.get("custom_id") == custom_id), None)
        cid = self._channel(channel_id or (shown.channel_id if shown else None))
        self._user(user, cid)
        ix = Interaction(self, type=MODAL_SUBMIT, user_id=user, channel_id=cid,
                         message_id=shown.component_message_id if shown else None)
        payload = {**base_payload(self, ix), "data": {"custom_id": custom_id,
                                                      "components": modal_components(shown.modal if shown else None,
                                                                                     values)}}
        if shown is not None and shown.component_message_id in self._messages:
            payload["message"] = wire.message_obj(self, self._messages[shown.component_message_id])
        return await self._dispatch(ix, payload)

    # -- bodies --------------------------------------------------------------------------------
    async def read_body(self, request: web.Request) -> Body:
        body = await read_body(request, self.storage_dir, per_file=self.upload_limit,
                               per_request=max(REQUEST_CAP, self.upload_limit))
        call = request.get(CALL)
        if call is not None:
            call.json = body.json
            call.files = [(f.filename, f.size) for f in body.files]
        return body


__all__ = ["DiscordEmulator"]
