"""Turntable preview render time against gaussian count (CPU, NumPy), with the file size it makes.

    python -m bench.bench_turntable [count ...]     (default 10000 100000 1000000)

Each count is a clustered synthetic SH-3 scene written as an SPZ v4 (what vid2scene delivers), then
rendered from the file (reading included), as the bot does after a vid2scene job. Scenes above the renderer's budget are subsampled by importance.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench.bench_splat import synthetic_scene
from bot.media.splat import write_spz
from bot.media.turntable import TurntableOptions, make_turntable


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [10_000, 100_000, 1_000_000]
    opts = TurntableOptions()
    print(f"{opts.frames} frames {opts.width}x{opts.height}, at most {opts.max_gaussians} gaussians drawn")
    print(f"{'gaussians':>10} {'seconds':>8} {'per frame':>10} {'WebP':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            spz = write_spz(synthetic_scene(n), Path(tmp) / f"s{n}.spz")
            start = time.perf_counter()
            out = make_turntable(spz, Path(tmp) / f"s{n}.webp", opts)
            seconds = time.perf_counter() - start
            print(f"{n:>10} {seconds:8.2f} {seconds / opts.frames * 1000:8.0f} ms {out.stat().st_size / 1024:7.0f} KiB")


if __name__ == "__main__":
    main()
