"""Splat conversion at vid2scene scale: time, peak memory and sizes, side by side with a naive baseline.

Baseline = what one would write first: np.fromfile the whole PLY, then gzip the raw PLY bytes.
Run: python -m bench.bench_splat [gaussians]   (default 300000, SH degree 3)
"""

from __future__ import annotations

import gzip
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from bot.media.splat import SplatCloud, fit_spz, ply_to_spz, read_spz, save_ply


def synthetic_scene(n: int) -> SplatCloud:
    """A clustered scene (real captures are spatially coherent, unlike uniform noise)."""
    rng = np.random.default_rng(7)
    centres = rng.uniform(-20, 20, (256, 3))
    pos = centres[rng.integers(0, 256, n)] + rng.normal(0, 0.6, (n, 3))
    order = np.lexsort(np.round(pos / 2).T)  # trainers emit points in rough spatial order
    return SplatCloud(pos[order].astype("f4"), rng.normal(1.0, 2.5, n).astype("f4"),
                      rng.normal(0, 0.8, (n, 3)).astype("f4"), rng.normal(-4.5, 0.8, (n, 3)).astype("f4"),
                      rng.normal(0, 1, (n, 4)).astype("f4"), rng.laplace(0, 0.05, (n, 15, 3)).astype("f4"))


def measure(label: str, fn):
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"  {label:<38} {seconds:7.2f} s   peak numpy/python alloc {peak / 2**20:7.1f} MiB")
    return result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ply = save_ply(synthetic_scene(n), tmp / "scene.ply")
        size = ply.stat().st_size
        print(f"{n} gaussians, SH degree 3, PLY {size / 2**20:.1f} MiB")
        print("baseline")
        measure("np.fromfile whole PLY", lambda: np.fromfile(ply, np.uint8))
        gz = measure("gzip the PLY (level 6)", lambda: len(gzip.compress(ply.read_bytes(), 6)))
        print(f"    -> {gz / 2**20:.1f} MiB ({size / gz:.1f}x)")
        print("bot.media.splat")
        for version in (3, 4):
            info = measure(f"ply_to_spz v{version} (memmap, chunked)",
                           lambda v=version: ply_to_spz(ply, tmp / f"v{v}.spz", version=v))
            print(f"    -> {info.size / 2**20:.1f} MiB ({size / info.size:.1f}x, {info.size / n:.1f} B/gaussian)")
        measure("read_spz v4", lambda: read_spz(tmp / "v4.spz"))
        limit = 10 * 2**20 if n >= 500_000 else max(1 << 20, (tmp / "v4.spz").stat().st_size // 4)
        info = measure(f"fit_spz to {limit / 2**20:.1f} MiB", lambda: fit_spz(ply, tmp / "fit.spz", limit))
        print(f"    -> {info.size / 2**20:.2f} MiB, SH {info.sh_degree}, kept {info.count}/{info.source_count}")
    print(f"max RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
