"""PLY -> SPZ at vid2scene scale, side by side with Niantic's reference `ply_to_spz`, plus fitting.

Both converters run as child processes on the same PLY, interleaved, a few times each; the bench
prints median wall time, output size and peak RSS (from wait4) for each and our ratios. Niantic's
CLI is not part of this project: build it from its repository (cmake) anywhere outside this tree
and pass its path with --niantic PATH or NIANTIC_PLY_TO_SPZ=PATH; without it, its figures recorded
on the development machine are printed instead (marked "recorded").

Run: python -m bench.bench_splat [gaussians] [--niantic PATH] [--repeat N]   (default 1000000, SH 3)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bot.media.splat import SplatCloud, fit_spz, ply_to_spz, read_spz


def synthetic_scene(n: int) -> SplatCloud:
    """A clustered scene (real captures are spatially coherent, unlike uniform noise)."""
    rng = np.random.default_rng(7)
    centres = rng.uniform(-20, 20, (256, 3))
    pos = centres[rng.integers(0, 256, n)] + rng.normal(0, 0.6, (n, 3))
    order = np.lexsort(np.round(pos / 2).T)  # trainers emit points in rough spatial order
    return SplatCloud(pos[order].astype("f4"), rng.normal(1.0, 2.5, n).astype("f4"),
                      rng.normal(0, 0.8, (n, 3)).astype("f4"), rng.normal(-4.5, 0.8, (n, 3)).astype("f4"),
                      rng.normal(0, 1, (n, 4)).astype("f4"), rng.laplace(0, 0.05, (n, 15, 3)).astype("f4"))


#: Niantic ply_to_spz @ 21715c3 (Release build), 1M-gaussian synthetic_scene, 2-core dev machine (load ~2.5)
RECORDED_NIANTIC = {"seconds": 5.4, "size": 29_082_461, "rss": 606 * 2**20}


def run_child(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{argv[0]} failed (status {status})")
    return seconds, usage.ru_maxrss * 1024


def ours_argv(ply: Path, out: Path) -> list[str]:
    code = "import sys; from bot.media.splat import ply_to_spz; ply_to_spz(sys.argv[1], sys.argv[2])"
    return [sys.executable, "-c", code, str(ply), str(out)]


def side_by_side(ply: Path, tmp: Path, niantic: str | None, repeat: int) -> None:
    runs: dict[str, list[tuple[float, int]]] = {"ours": [], "niantic": []}
    for _ in range(repeat):  # interleaved, so both see the same machine load
        runs["ours"].append(run_child(ours_argv(ply, tmp / "ours.spz")))
        if niantic:
            runs["niantic"].append(run_child([niantic, str(ply), str(tmp / "niantic.spz")]))
    ours_t = statistics.median(t for t, _ in runs["ours"])
    ours_rss = max(r for _, r in runs["ours"])
    ours_size = (tmp / "ours.spz").stat().st_size
    if niantic:
        ref_t = statistics.median(t for t, _ in runs["niantic"])
        ref_rss = max(r for _, r in runs["niantic"])
        ref_size = (tmp / "niantic.spz").stat().st_size
        label = "Niantic ply_to_spz (this run)"
    else:
        ref_t, ref_size, ref_rss = RECORDED_NIANTIC["seconds"], RECORDED_NIANTIC["size"], RECORDED_NIANTIC["rss"]
        label = "Niantic ply_to_spz (recorded)"
    print(f"PLY -> SPZ v4, median of {repeat} (each a fresh process)")
    print(f"  {'':<32} {'wall s':>8} {'size MiB':>10} {'peak RSS MiB':>13}")
    print(f"  {'bot.media.splat.ply_to_spz':<32} {ours_t:8.2f} {ours_size / 2**20:10.2f} {ours_rss / 2**20:13.0f}")
    print(f"  {label:<32} {ref_t:8.2f} {ref_size / 2**20:10.2f} {ref_rss / 2**20:13.0f}")
    print(f"  ours / Niantic: wall {ours_t / ref_t:.2f}x, size {ours_size / ref_size:.3f}x, "
          f"RSS {ours_rss / ref_rss:.2f}x   (targets: <= 0.6x, <= 1.02x, <= 1x)")
    print(f"  wall times: ours {[round(t, 2) for t, _ in runs['ours']]}"
          + (f", Niantic {[round(t, 2) for t, _ in runs['niantic']]}" if niantic else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gaussians", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--niantic", default=os.environ.get("NIANTIC_PLY_TO_SPZ"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.gaussians
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ply = tmp / "scene.ply"  # made in a child: children inherit the parent's RSS high-water mark
        subprocess.run([sys.executable, "-c", "import sys; from bench.bench_splat import synthetic_scene; from bot.media.splat import save_ply; "
                        "save_ply(synthetic_scene(int(sys.argv[1])), sys.argv[2])", str(n), str(ply)], check=True)
        print(f"{n} gaussians, SH degree 3, PLY {ply.stat().st_size / 2**20:.1f} MiB")
        side_by_side(ply, tmp, args.niantic, args.repeat)
        for version in (3, 2):
            start = time.perf_counter()
            info = ply_to_spz(ply, tmp / f"v{version}.spz", version=version)
            print(f"  ply_to_spz v{version} (gzip, in process)      {time.perf_counter() - start:6.2f} s "
                  f"-> {info.size / 2**20:.2f} MiB")
        start = time.perf_counter()
        read_spz(tmp / "ours.spz")
        print(f"  read_spz v4                            {time.perf_counter() - start:6.2f} s")
        limit = 10 * 2**20 if n >= 500_000 else max(1 << 20, (tmp / "ours.spz").stat().st_size // 4)
        for src in ("scene.ply", "ours.spz"):
            start = time.perf_counter()
            info = fit_spz(tmp / src, tmp / "fit.spz", limit)
            print(f"  fit_spz {src:<9} to {limit / 2**20:.1f} MiB       {time.perf_counter() - start:6.2f} s "
                  f"-> {info.size / 2**20:.2f} MiB, SH {info.sh_degree}, kept {info.count}/{info.source_count}")


if __name__ == "__main__":
    main()
