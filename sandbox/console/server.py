"""The sandbox console: a web page that is the live sandbox channel. A person picks a user, runs
slash commands (with autocomplete and files from the browser), clicks buttons, fills modals and
watches cards change. Every action goes through the emulator's user-facing API, so the real bot
receives the same INTERACTION_CREATE payloads it would get from Discord.

HTTP and a websocket on one aiohttp port: the page and its script are package data files; the
server renders messages with the shared renderer and pushes each new version over the websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import re
from importlib.resources import files
from typing import Any

from aiohttp import WSMsgType, web

from sandbox.discord.interactions import CommandInputError, InteractionFailed

from .channel import lookup, used_command, user_names
from .options import command_paths, typed_options
from .render import Look, message_html

#: a Nitro user's upload limit; files stream to disk, never into memory
MAX_UPLOAD = 500 * 1024 * 1024
_CHUNK = 256 * 1024
_STATIC = {"console.js": "text/javascript", "console.css": "text/css", "channel.css": "text/css"}
_CDN_ID = re.compile(r"/(?:ephemeral-)?attachments/\d+/(\d+)/([^/?]+)")
MODAL = 9
NO_BOT = "No bot is connected yet: start it (python -m bot) and try again."


def _static(name: str) -> str:
    return (files("sandbox.console") / "static" / name).read_text(encoding="utf-8")


def _write(path, data: bytes, mode: str) -> None:
    with path.open(mode) as fh:
        fh.write(data)


class Console:
    """Serve the console for one emulator; `start()` returns its URL."""

    def __init__(self, emu: Any, *, max_upload: int = MAX_UPLOAD) -> None:
        self.emu = emu
        self.max_upload = max_upload
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._wakeups: set[asyncio.Event] = set()
        self._unsubscribe = None

    # -- serving -------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=1024 * 1024)
        app.add_routes([
            web.get("/", self.page), web.get("/static/{name}", self.static), web.get("/ws", self.socket),
            web.get("/api/state", self.state), web.post("/api/users", self.add_user),
            web.post("/api/slash", self.slash), web.post("/api/autocomplete", self.autocomplete),
            web.post("/api/click", self.click), web.post("/api/modal", self.modal),
            web.post("/api/upload", self.upload), web.get("/files/{id}/{name}", self.file),
        ])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{bound}/"
        self._unsubscribe = self.emu.on_change(self._poke)
        return self.url

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _poke(self) -> None:
        for event in self._wakeups:
            event.set()

    # -- rendering -----------------------------------------------------------------------------
    def look(self) -> Look:
        names = user_names(self.emu)
        return Look(names=names, bot_id=self.emu.bot_user_id, attachment_src=self._file_url,
                    image_src=self._image_url, used=lambda m: used_command(self.emu, m, names),
                    lookup=lambda mid: lookup(self.emu, mid), interactive=True, timeline_open=False)

    @staticmethod
    def _file_url(attachment: dict) -> str:
        return f"/files/{attachment['id']}/{attachment['filename']}"

    def _image_url(self, url: str) -> str:
        """Embed pictures served by the emulator's CDN come through the console (same origin)."""
        match = _CDN_ID.search(url) if url.startswith(self.emu.base_url) else None
        return f"/files/{match.group(1)}/{match.group(2)}" if match else url

    def _users(self) -> list[dict]:
        """People to act as, in the order they were added; the guild's owner (who may do anything) last."""
        people = [u for u in self.emu.users.values() if not u.bot and u.id in self.emu.guild.members]
        people.sort(key=lambda u: u.id == self.emu.guild.owner_id)
        return [{"id": str(u.id), "name": u.name} for u in people]

    # -- pages ---------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=_static("console.html"), content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(text=_static(name), content_type=_STATIC[name])

    async def file(self, request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(ValueError):
            stored = self.emu.cdn.files.get(int(request.match_info["id"]))
            if stored is not None and stored.path.exists():
                ctype = stored.content_type or mimetypes.guess_type(stored.filename)[0] or "application/octet-stream"
                return web.FileResponse(stored.path, headers={"Content-Type": ctype})
        raise web.HTTPNotFound()

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response({"users": self._users(), "commands": command_paths(self.emu),
                                  "bot_connected": self.emu.connected, "channel": "general"})

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        """Push every message of the channel, then each new version as it happens."""
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self._sockets.add(ws)
        wake = asyncio.Event()
        self._wakeups.add(wake)
        reader = asyncio.create_task(self._drain(ws))
        sent: dict[int, tuple] = {}
        users: list[dict] = []
        try:
            while not ws.closed and not reader.done():
                wake.clear()
                if self._users() != users:
                    users = self._users()
                    await ws.send_json({"type": "users", "users": users})
                look = self.look()
                for m in self.emu.messages(self.emu.channel_id, include_deleted=True):
                    key = (len(m.edits), m.deleted, m.flags)
                    if sent.get(m.id) == key or (m.deleted and m.id not in sent):
                        continue
                    sent[m.id] = key
                    await ws.send_json({"type": "message", "id": str(m.id), "deleted": m.deleted,
                                        "visible_to": str(m.visible_to) if m.ephemeral else None,
                                        "html": "" if m.deleted else message_html(m, look)})
                waiter = asyncio.create_task(wake.wait())
                await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                await asyncio.sleep(0.05)  # a burst of changes goes out as one update
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            reader.cancel()
            self._wakeups.discard(wake)
            self._sockets.discard(ws)
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    # -- acting as a user ----------------------------------------------------------------------
    async def _json(self, request: web.Request) -> dict:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="expected JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        return data

    @staticmethod
    def _error(text: str, status: int = 400) -> web.Response:
        return web.json_response({"error": text}, status=status)

    async def _act(self, action) -> web.Response:
        """Run one user action and answer with what the user would see first: nothing special,
        a modal, or "This interaction failed"."""
        if self.emu.gateway.current is None:
            return self._error(NO_BOT, 409)
        try:
            ix = await action()
            await ix.wait_ack(timeout=self.emu.ack_deadline + 1)
        except CommandInputError as exc:
            return self._error(str(exc))
        except InteractionFailed:
            return web.json_response({"failed": "This interaction failed"})
        except (KeyError, ValueError, TypeError) as exc:
            return self._error(f"bad request: {exc}")
        if ix.response_type == MODAL and ix.modal:
            return web.json_response({"modal": ix.modal})
        return web.json_response({"ok": True})

    async def add_user(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        name = str(data.get("name") or "").strip()[:32]
        if not name:
            return self._error("a user needs a name")
        uid = self.emu.add_user(name, manage_guild=bool(data.get("manager")))
        self._poke()
        return web.json_response({"id": str(uid), "name": name})

    async def slash(self, request: web.Request) -> web.Response:
        data = await self._json(request)

        async def run():
            command = str(data["command"]).strip().lstrip("/")
            options = typed_options(self.emu, command, dict(data.get("options") or {}))
            return await self.emu.slash(command, user=int(data["user"]), options=options)

        return await self._act(run)

    async def autocomplete(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        if self.emu.gateway.current is None:
            return self._error(NO_BOT, 409)
        try:
            command = str(data["command"]).strip().lstrip("/")
            focused = str(data["focused"])
            raw = {**dict(data.get("options") or {}), focused: data.get("value", "")}
            options = typed_options(self.emu, command, raw, focused=focused)
            value = options.pop(focused)
            choices = await self.emu.autocomplete(command, focused=focused, value=value, options=options,
                                                  user=int(data["user"]))
        except CommandInputError as exc:
            return self._error(str(exc))
        except InteractionFailed:
            return web.json_response({"failed": "Loading options failed", "choices": []})
        except (KeyError, ValueError, TypeError) as exc:
            return self._error(f"bad request: {exc}")
        return web.json_response({"choices": choices})

    async def click(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        values = data.get("values")
        return await self._act(lambda: self.emu.click(int(data["message_id"]), str(data["custom_id"]),
                                                      user=int(data["user"]),
                                                      values=[str(v) for v in values] if values else None))

    async def modal(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        values = {str(k): str(v) for k, v in dict(data.get("values") or {}).items()}
        return await self._act(lambda: self.emu.submit_modal(str(data["custom_id"]), values=values,
                                                             user=int(data["user"])))

    async def upload(self, request: web.Request) -> web.Response:
        """A file the user attaches in the browser: streamed to disk, stored on the sandbox CDN."""
        if request.content_type != "multipart/form-data":
            return self._error("send the file as multipart/form-data")
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and part.name != "file":
            part = await reader.next()
        if part is None or not part.filename:
            return self._error("no file")
        path = self.emu.storage_dir / f"console-{self.emu.ids.next()}"
        size, mode = 0, "wb"
        while chunk := await part.read_chunk(_CHUNK):
            size += len(chunk)
            if size > self.max_upload:
                await asyncio.to_thread(path.unlink, True)
                return self._error(f"the file is larger than {self.max_upload // 1048576} MiB", 413)
            await asyncio.to_thread(_write, path, bytes(chunk), mode)
            mode = "ab"
        if mode == "wb":
            await asyncio.to_thread(_write, path, b"", mode)
        ctype = part.headers.get("Content-Type") or ""
        if not ctype or ctype == "application/octet-stream":
            ctype = mimetypes.guess_type(part.filename)[0] or "application/octet-stream"
        stored = self.emu.attachment(path, part.filename, ctype)
        return web.json_response({"id": str(stored.id), "filename": stored.filename, "size": stored.size,
                                  "content_type": stored.content_type})


__all__ = ["Console"]
