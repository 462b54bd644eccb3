"""Fit a splat under a byte limit (Discord's upload size) with as few full compression passes as possible.

Compressing a million gaussians at zstd level 12 takes seconds, so sizes are first *estimated* by
compressing a sample of evenly spaced runs of gaussians (runs keep the spatial coherence that makes
positions compress), and only the chosen candidate is compressed for real. The real size is always
checked: the result is never over the limit. Order of sacrifice: higher SH degrees first (view-
dependent colour), then the gaussians with the smallest visible footprint.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from bot.media import spz_quant as qz
from bot.media.probe import MediaError, format_size
from bot.media.splat import (
    CHUNK,
    SH_ZSTD_LEVEL,
    ZSTD_LEVEL,
    SplatCloud,
    SpzInfo,
    _position_bits,
    encode_stream,
    load_splat,
    write_spz,
)

SAMPLE_RUNS = 16
RUN_LENGTH = 2048  # gaussians per sampled run: 32k gaussians in all
TARGET = 0.975  # aim a little under the limit: estimates are a few per cent off either way
GOOD_ENOUGH = 0.92  # a real result this close to the limit is kept rather than compressed again


def sample_index(count: int, runs: int = SAMPLE_RUNS, length: int = RUN_LENGTH) -> np.ndarray:
    """Positions (into 0..count) of `runs` evenly spaced runs of `length` consecutive items."""
    if count <= runs * length:
        return np.arange(count)
    starts = np.linspace(0, count - length, runs).astype(np.int64)
    return (starts[:, None] + np.arange(length)[None, :]).reshape(-1)


def estimate_sizes(cloud: SplatCloud, fb: int, version: int, degrees: list[int],
                   index: np.ndarray | None = None) -> dict[int, int]:
    """Estimated file size of `cloud` (or of its gaussians at sorted `index`) at each SH degree in
    `degrees`, from one sample: only the sampled gaussians are ever copied or compressed."""
    count = cloud.count if index is None else len(index)
    pick = sample_index(count)
    sample = cloud.take(pick if index is None else index[pick])
    scale = count / max(1, len(pick))
    header = 32 + 16 * 6 if version == 4 else 40  # v4 header + table; gzip header + trailer
    if version == 4:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        sh_cctx = zstandard.ZstdCompressor(level=SH_ZSTD_LEVEL)
        base = sum(len(cctx.compress(encode_stream(sample, s, fb, 4))) for s in range(5))
        full_sh = encode_stream(sample, 5, fb, 4).reshape(len(pick), -1) if sample.sh is not None else None
        out = {}
        for d in degrees:
            sh = 0 if not d else len(sh_cctx.compress(np.ascontiguousarray(full_sh[:, : 3 * qz.SH_DIMS[d]])))
            out[d] = header + int((base + sh) * scale)
        return out
    out = {}
    for d in degrees:
        part = sample.with_sh_degree(d)
        raw = b"".join(encode_stream(part, s, fb, version).tobytes() for s in range(6))
        out[d] = header + int(len(zlib.compress(raw, 6)) * scale)
    return out


def _importance(cloud: SplatCloud) -> np.ndarray:
    """Visible footprint: opacity × (geometric-mean radius)²; the least of it goes first."""
    score = np.empty(cloud.count, np.float32)
    for a in range(0, cloud.count, CHUNK * 4):
        b = min(a + CHUNK * 4, cloud.count)
        alpha = 1.0 / (1.0 + np.exp(-np.asarray(cloud.alphas[a:b], np.float64)))
        radius2 = np.exp(2.0 * np.asarray(cloud.scales[a:b], np.float64).mean(axis=1))
        score[a:b] = alpha * radius2
    return score


def fit_spz(src: Path | str, dest: Path | str, limit_bytes: int, *, version: int = 4,
            min_keep: float = 0.02) -> SpzInfo:
    """The best SPZ under `limit_bytes`: full quality, then less SH, then fewer gaussians.

    Refuses (MediaError) rather than keep under `min_keep` of the gaussians, which would no longer
    look like the scene.
    """
    dest = Path(dest)
    cloud = load_splat(src)
    source = cloud.count
    fb = _position_bits(cloud)
    tmp = dest.with_name(dest.name + ".part")

    def real(candidate: SplatCloud) -> int:
        write_spz(candidate, tmp, version=version, fractional_bits=fb)
        return tmp.stat().st_size

    def keep(candidate: SplatCloud, size: int) -> SpzInfo:
        os.replace(tmp, dest)
        return SpzInfo(dest, version, candidate.count, candidate.sh_degree, size, source)

    try:
        degrees = list(range(cloud.sh_degree, -1, -1))
        estimates = estimate_sizes(cloud, fb, version, degrees)
        correction = 1.0  # real / estimated, learnt from the first real pass
        for degree in degrees:
            if estimates[degree] * correction > limit_bytes * (1.0 if degree else 1.03):
                continue
            candidate = cloud.with_sh_degree(degree)
            size = real(candidate)
            if size <= limit_bytes:
                return keep(candidate, size)
            correction = size / estimates[degree]
        return _prune(cloud.with_sh_degree(0), limit_bytes, min_keep, fb, version,
                      estimates[0] * correction / max(1, source), real, keep)
    finally:
        tmp.unlink(missing_ok=True)


def _prune(base: SplatCloud, limit: int, min_keep: float, fb: int, version: int, per_gaussian: float,
           real, keep) -> SpzInfo:
    """Keep the most important gaussians: estimate the count from samples, then one (rarely two or
    three) real passes to land between GOOD_ENOUGH and 1.0 of the limit."""
    source = base.count
    neg_score = -_importance(base)
    floor_count = max(1, int(np.ceil(source * min_keep)))

    def top(count: int) -> np.ndarray:
        """Indices (in file order) of the `count` most important gaussians: O(n), no full sort."""
        if count >= source:
            return np.arange(source)
        keep = np.zeros(source, bool)
        keep[np.argpartition(neg_score, count - 1)[:count]] = True
        return np.flatnonzero(keep)

    def subset(count: int) -> SplatCloud:
        return base.take(top(count))

    count = min(source, int(limit * TARGET / max(per_gaussian, 1e-9)))
    for _ in range(2):  # sparser subsets compress worse per gaussian: re-estimate on the subset
        count = max(floor_count, min(source, count))
        estimate = estimate_sizes(base, fb, version, [0], index=top(count))[0]
        count = int(count * limit * TARGET / estimate)
    low, high, best = 0, source, None  # counts known to fit / known not to fit
    for _ in range(8):
        count = max(floor_count, min(count, high - 1))
        if count <= low:
            break
        candidate = subset(count)
        size = real(candidate)
        if size <= limit:
            low, best = count, keep(candidate, size)
            if size >= limit * GOOD_ENOUGH or high - low <= max(1, source // 500):
                break
        else:
            high = count
            if count == floor_count:
                break
        count = int(count * limit * TARGET / size)
    if best is None:
        raise MediaError(f"This splat cannot be made smaller than {format_size(limit)} "
                         f"without losing most of it.")
    return best



def describe_fit(info: SpzInfo) -> str:
    """What fitting kept, in words a user can weigh: how many splats and how much colour detail."""
    shading = {0: "flat colour (SH degree 0)", 1: "simple view-dependent colour (SH degree 1)",
               2: "view-dependent colour (SH degree 2)", 3: "full view-dependent colour (SH degree 3)"}
    kept = (f"all {info.count:,} splats" if info.count == info.source_count
            else f"{info.count:,} of {info.source_count:,} splats ({info.count / max(1, info.source_count):.0%})")
    return f"{kept}, {shading.get(info.sh_degree, f'SH degree {info.sh_degree}')}"
