"""The console's HTTP side without a browser: its page and scripts are served from the package,
uploads stream to the sandbox CDN within a size cap, and acting with no bot connected says so."""

from __future__ import annotations

import aiohttp
import pytest

from sandbox.console import Console
from sandbox.discord import DiscordEmulator


@pytest.fixture
async def served():
    emu = DiscordEmulator()
    await emu.start()
    console = Console(emu, max_upload=64 * 1024)
    await console.start()
    async with aiohttp.ClientSession(console.url) as http:
        yield emu, console, http
    await console.stop()
    await emu.stop()


async def test_the_page_and_its_files_come_from_the_package(served):
    _, _, http = served
    async with http.get("/") as resp:
        page = await resp.text()
        assert resp.status == 200 and '<script src="/static/console.js">' in page
    for name, kind in (("console.js", "text/javascript"), ("channel.css", "text/css")):
        async with http.get(f"/static/{name}") as resp:
            assert resp.status == 200 and resp.content_type == kind and len(await resp.text()) > 500
    async with http.get("/static/..%2Fserver.py") as resp:
        assert resp.status == 404


async def test_an_upload_lands_on_the_cdn_and_one_over_the_cap_is_refused(served, tmp_path):
    emu, _, http = served
    data = bytes(range(256)) * 100  # 25.6 kB
    form = aiohttp.FormData()
    form.add_field("file", data, filename="clip.mp4", content_type="video/mp4")
    async with http.post("/api/upload", data=form) as resp:
        stored = await resp.json()
    assert stored["filename"] == "clip.mp4" and stored["size"] == len(data)
    assert emu.read_attachment(int(stored["id"])) == data
    async with http.get(f"/files/{stored['id']}/clip.mp4") as resp:
        assert resp.status == 200 and await resp.read() == data

    before = set(emu.storage_dir.iterdir())
    big = aiohttp.FormData()
    big.add_field("file", b"x" * (65 * 1024), filename="big.mp4", content_type="video/mp4")
    async with http.post("/api/upload", data=big) as resp:
        assert resp.status == 413 and "larger than" in (await resp.json())["error"]
    assert set(emu.storage_dir.iterdir()) == before  # nothing half-written left behind


async def test_acting_before_a_bot_connects_says_what_to_do(served):
    emu, _, http = served
    user = emu.add_user("dana")
    async with http.get("/api/state") as resp:
        state = await resp.json()
    assert [u["name"] for u in state["users"]] == ["dana", "guild-owner"] and state["commands"] == []
    async with http.post("/api/slash", json={"user": str(user), "command": "/ping", "options": {}}) as resp:
        assert resp.status == 409 and "No bot is connected" in (await resp.json())["error"]
