"""Peak memory while a provider answers a huge JSON body (an endless status page).

A loopback server in a child process streams `{"data": "xxxx…"}` of the given size; the bot's
`Net.json_request` reads it with the 16 MiB cap and refuses it, then a baseline reads the same
answer whole and parses it (what the bot did before). RSS is sampled from a thread; the baseline
runs last because high-water marks never go down, so both figures come from one run.

    python bench/bench_answer_cap.py [size_mb]   (default 120)
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_upload_memory import MIB, PeakRss  # noqa: E402
from bot.net import API_BODY_CAP, AnswerTooLarge, Net  # noqa: E402
from bot.outbound import OutboundPolicy  # noqa: E402


def serve(size: int, port_out) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk, sent = b"x" * (1 << 16), 12
        try:
            await resp.write(b'{"data": "')
            while sent < size:
                await resp.write(chunk[:size - sent])
                sent += len(chunk)
            await resp.write(b'"}')
        except ConnectionError:
            pass
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/status", endless)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.send(site._server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def measure(url: str, size: int) -> None:
    net = Net(policy=OutboundPolicy.of([url]))
    await net.json_request("GET", url.replace("/status", "/warmup"))  # sessions and code paths warm
    with PeakRss() as capped:
        try:
            await net.json_request("GET", url)
            outcome = "read whole (unexpected)"
        except AnswerTooLarge:
            outcome = f"refused after {API_BODY_CAP // MIB} MiB"
    await net.close()
    async with aiohttp.ClientSession() as session:
        with PeakRss() as whole:
            async with session.get(url) as resp:
                body = json.loads(await resp.text())
            del body
    print(f"answer size               {size / MIB:8.0f} MiB")
    print(f"peak RSS growth, capped   {capped.growth / MIB:8.1f} MiB  ({outcome})")
    print(f"peak RSS growth, whole    {whole.growth / MIB:8.1f} MiB  (baseline: read and parse it all)")


def main() -> None:
    size = int(sys.argv[1]) * MIB if len(sys.argv) > 1 else 120 * MIB
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(size, theirs), daemon=True)
    server.start()
    try:
        port = ours.recv()
        asyncio.run(measure(f"http://127.0.0.1:{port}/status", size))
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
