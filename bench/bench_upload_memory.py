"""Peak memory while relaying a large video: Discord CDN -> spool file -> vid2scene blob PUT.

Runs the bot's real path (`Net.download` into the spool, then the vid2scene client's signed-URL
request and streamed Azure PUT) against the sandbox Discord CDN and the vid2scene blob store,
samples the process RSS every few milliseconds, and prints the peak above the starting point
beside the file size. A baseline that reads the whole file into memory before the PUT runs last
(RSS high-water marks never go down), so the two figures come from one run.

    python bench/bench_upload_memory.py [size_mb]   (default 256)
"""

from __future__ import annotations

import asyncio
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
from sandbox.discord import DiscordEmulator  # noqa: E402
from sandbox.media import make_large_file  # noqa: E402
from sandbox.vid2scene import Vid2SceneSandbox  # noqa: E402

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


async def main(size_mb: int) -> None:
    size = size_mb * MIB
    assert size <= MAX_VIDEO_BYTES
    tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    source = await asyncio.to_thread(make_large_file, tmp / "walkaround.mp4", size)
    emu = DiscordEmulator()
    await emu.start()
    sandbox = Vid2SceneSandbox()
    await sandbox.start()
    env = sandbox.env_lines()
    provider = Vid2SceneProvider(Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"],
                                                   base_url=env["VID2SCENE_BASE_URL"]),
                                 Net(policy=OutboundPolicy.of([*sandbox.urls.values(), emu.base_url])))
    try:
        stored = emu.attachment(source, "walkaround.mp4", "video/mp4")
        url = emu.cdn.url(stored)
        # warm up sessions and code paths with a tiny transfer, so the measurement is the transfer
        small = await asyncio.to_thread(make_large_file, tmp / "small.mp4", MIB)
        await provider._upload_file(small, "mp4")

        spool = tmp / "spool" / "input.mp4"
        t0 = time.perf_counter()
        with PeakRss() as streamed:
            got = await provider.net.download(url, spool, max_bytes=MAX_VIDEO_BYTES)
            t1 = time.perf_counter()
            blob = await provider._upload_file(spool, "mp4")
        t2 = time.perf_counter()
        stored_blob = sandbox.blobs.get(blob)
        assert got == size and stored_blob is not None and stored_blob.size == size

        with PeakRss() as naive:  # the baseline: what loading the video into memory would cost
            target = await provider.api.upload_target("mp4")
            data = await asyncio.to_thread(spool.read_bytes)
            async with provider.net.session.put(target.url, data=data,
                                                headers={"x-ms-blob-type": "BlockBlob"}) as resp:
                assert resp.status == 201, resp.status
            del data
        print(f"file size                 {size / MIB:8.0f} MiB")
        print(f"CDN -> spool              {size / MIB / (t1 - t0):8.0f} MiB/s")
        print(f"spool -> blob PUT         {size / MIB / (t2 - t1):8.0f} MiB/s")
        print(f"RSS at start              {streamed.start / MIB:8.1f} MiB")
        print(f"peak RSS, streamed relay  {streamed.peak / MIB:8.1f} MiB  (+{streamed.growth / MIB:.1f} MiB, "
              f"{streamed.growth / size * 100:.1f}% of the file)")
        print(f"peak RSS, whole-file PUT  {naive.peak / MIB:8.1f} MiB  (+{naive.growth / MIB:.1f} MiB, "
              f"baseline for comparison)")
    finally:
        await provider.close()
        await sandbox.stop()
        await emu.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 256))
