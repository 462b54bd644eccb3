"""Relay streams over real loopback HTTP: bytes arrive intact in blocks, slices are exact, early stops are clean."""

from __future__ import annotations

import hashlib
import os

import pytest
from aiohttp import web

from bot.net import Net, TooLarge, file_chunks
from bot.outbound import OutboundPolicy
from bot.streams import BLOCK, file_blocks


@pytest.fixture
async def server(tmp_path):
    """Serves /file (a few MiB, odd size) and hashes whatever is PUT to /sink."""
    data = os.urandom(3 * BLOCK + 12345)
    (tmp_path / "served.bin").write_bytes(data)
    received: dict[str, object] = {}

    async def get_file(request):
        return web.FileResponse(tmp_path / "served.bin")

    async def put_sink(request):
        digest, size = hashlib.sha256(), 0
        async for piece in request.content.iter_any():
            digest.update(piece)
            size += len(piece)
        received.update(sha=digest.hexdigest(), size=size)
        return web.Response(status=201)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/file", get_file)
    app.router.add_put("/sink", put_sink)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", data, received
    await runner.cleanup()


async def test_download_arrives_byte_for_byte_and_the_part_file_is_renamed(server, tmp_path):
    base, data, _ = server
    net = Net(policy=OutboundPolicy.of([base]))
    try:
        dest = tmp_path / "spool" / "in.mp4"
        assert await net.download(f"{base}/file", dest) == len(data)
        assert dest.read_bytes() == data
        assert not dest.with_name("in.mp4.part").exists()
        with pytest.raises(TooLarge):
            await net.download(f"{base}/file", tmp_path / "small.mp4", max_bytes=BLOCK)
        assert not (tmp_path / "small.mp4").exists()
    finally:
        await net.close()


async def test_upload_of_a_whole_file_and_of_a_slice(server, tmp_path):
    base, data, received = server
    path = tmp_path / "served.bin"
    net = Net(policy=OutboundPolicy.of([base]))
    try:
        status, _, _ = await net.upload("PUT", f"{base}/sink", path)
        assert status == 201 and received == {"sha": hashlib.sha256(data).hexdigest(), "size": len(data)}
        part = data[BLOCK - 7: 2 * BLOCK + 99]
        status, _, _ = await net.upload("PUT", f"{base}/sink", path, offset=BLOCK - 7, length=len(part))
        assert status == 201 and received == {"sha": hashlib.sha256(part).hexdigest(), "size": len(part)}
    finally:
        await net.close()


async def test_file_blocks_are_exact_slices_in_blocks_and_an_early_stop_closes_cleanly(tmp_path):
    data = os.urandom(2 * BLOCK + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    blocks = [b async for b in file_chunks(path, 3, len(data) - 10)]
    assert b"".join(blocks) == data[3:-7] and max(map(len, blocks)) == BLOCK
    stream = file_blocks(path)
    assert await stream.__anext__() == data[:BLOCK]
    await stream.aclose()  # the read-ahead of the next block finishes before the file closes
    assert [b async for b in file_blocks(path, len(data))] == []
