"""Relaying a large video: Discord CDN -> spool file -> vid2scene blob PUT, ours against curl.

The sandbox Discord CDN and the vid2scene blob store run in a child process (so they cost the same
whoever talks to them). This process runs the bot's real path, `Net.download` into the spool and
the vid2scene client's streamed Azure PUT, and `curl` does the same two transfers against the same
servers, interleaved, a few rounds each, every leg after an `os.sync()` so none pays for the
other's dirty pages. It prints the best throughput of each side, the ratios,
and the peak RSS of this process above its idle level while our relay runs (sampled every 5 ms),
plus a whole-file-in-memory PUT for scale, last (RSS high-water marks never go down).

    python bench/bench_upload_memory.py [size_mb] [rounds]   (default 1024 MiB, 4 rounds)
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.config import Vid2SceneSettings  # noqa: E402
from bot.net import Net  # noqa: E402
from bot.outbound import OutboundPolicy  # noqa: E402
from bot.providers.vid2scene import MAX_VIDEO_BYTES, Vid2SceneProvider  # noqa: E402

MIB = 1 << 20


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Samples RSS from a thread (the event loop is busy with the transfer)."""

    def __init__(self, every: float = 0.005) -> None:
        self.every, self.peak, self.start = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def serve(conn, folder: str, size: int) -> None:
    """Child process: the sandbox Discord CDN and vid2scene, serving one large attachment."""
    from sandbox.discord import DiscordEmulator
    from sandbox.media import make_large_file
    from sandbox.vid2scene import Vid2SceneSandbox

    async def main() -> None:
        source = await asyncio.to_thread(make_large_file, Path(folder) / "walkaround.mp4", size)
        emu = DiscordEmulator()
        await emu.start()
        sandbox = Vid2SceneSandbox()
        await sandbox.start()
        url = emu.cdn.url(emu.attachment(source, "walkaround.mp4", "video/mp4"))
        conn.send((url, sandbox.env_lines(), [*sandbox.urls.values(), emu.base_url]))
        await asyncio.to_thread(conn.recv)  # until the parent is done
        await sandbox.stop()
        await emu.stop()

    asyncio.run(main())


def curl(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", *args], check=True)
    return time.perf_counter() - start


async def main(size_mb: int, rounds: int) -> None:
    size = size_mb * MIB
    assert size <= MAX_VIDEO_BYTES
    tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    parent, child = mp.Pipe()
    server = mp.get_context("spawn").Process(target=serve, args=(child, str(tmp), size), daemon=True)
    server.start()
    url, env, origins = await asyncio.to_thread(parent.recv)
    provider = Vid2SceneProvider(Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"],
                                                   base_url=env["VID2SCENE_BASE_URL"]),
                                 Net(policy=OutboundPolicy.of(origins)))
    has_curl = shutil.which("curl") is not None
    best = {"ours down": 0.0, "curl down": 0.0, "ours up": 0.0, "curl up": 0.0}
    try:
        spool = tmp / "spool" / "input.mp4"
        warm = tmp / "warm.bin"
        warm.write_bytes(b"\0" * MIB)  # warm up sessions and code paths so the rounds measure transfers
        await provider._upload_file(warm, "mp4")
        growth = 0

        async def ours() -> None:
            nonlocal growth
            spool.unlink(missing_ok=True)  # like curl's file: no old copy to free inside the timing
            await asyncio.to_thread(os.sync)  # each leg starts with no dirty pages to write back
            with PeakRss() as peak:
                t0 = time.perf_counter()
                got = await provider.net.download(url, spool, max_bytes=MAX_VIDEO_BYTES)
                t1 = time.perf_counter()
                await asyncio.to_thread(os.sync)
                t1b = time.perf_counter()
                await provider._upload_file(spool, "mp4")
                t2 = time.perf_counter()
            assert got == size
            growth = max(growth, peak.growth)
            best["ours down"] = max(best["ours down"], size / (t1 - t0))
            best["ours up"] = max(best["ours up"], size / (t2 - t1b))

        async def theirs() -> None:
            await asyncio.to_thread(os.sync)
            down = await asyncio.to_thread(curl, "-o", str(tmp / "curl.mp4"), url)
            await asyncio.to_thread(os.sync)
            target = await provider.api.upload_target("mp4")
            up = await asyncio.to_thread(curl, "-o", "/dev/null", "-T", str(spool), "-H", "x-ms-blob-type: BlockBlob",
                                         "-H", "Content-Type: video/mp4", target.url)
            best["curl down"] = max(best["curl down"], size / down)
            best["curl up"] = max(best["curl up"], size / up)
            (tmp / "curl.mp4").unlink(missing_ok=True)

        for round_ in range(rounds):  # alternate who goes first, so neither always meets a warmer cache
            for leg in ((ours, theirs) if round_ % 2 == 0 else (theirs, ours)):
                if leg is ours or has_curl:
                    await leg()
        with PeakRss() as naive:  # for scale: what loading the video into memory would cost
            target = await provider.api.upload_target("mp4")
            data = await asyncio.to_thread(spool.read_bytes)
            async with provider.net.session.put(target.url, data=data,
                                                headers={"x-ms-blob-type": "BlockBlob"}) as resp:
                assert resp.status == 201, resp.status
            del data
        print(f"file size {size / MIB:.0f} MiB, best of {rounds} rounds, servers in another process")
        print(f"{'':<24} {'ours MiB/s':>11} {'curl MiB/s':>11} {'ours/curl':>10}")
        for leg, label in (("down", "CDN -> spool"), ("up", "spool -> blob PUT")):
            ours, ref = best[f"ours {leg}"] / MIB, best[f"curl {leg}"] / MIB
            ratio = f"{ours / ref:9.2f}x" if ref else "   no curl"
            print(f"{label:<24} {ours:11.0f} {ref:11.0f} {ratio}")
        print(f"peak RSS above idle during our relay: +{growth / MIB:.1f} MiB "
              f"({growth / size * 100:.2f}% of the file; target <= 8 MiB)")
        print(f"whole-file PUT for scale:             +{naive.growth / MIB:.1f} MiB")
    finally:
        await provider.close()
        parent.send("stop")
        server.join(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024, int(sys.argv[2]) if len(sys.argv) > 2 else 4))
