"""The vid2scene sandbox's own splat writer: a real 3DGS PLY (INRIA layout, SH degree 3) and the
matching SPZ (legacy v3 gzip or v4 zstd), written straight from `contracts/splat-formats.md`.

Written independently of `bot/media` on purpose: the bot's reader is tested against files it did not
produce. The scene is a rainbow torus (hue follows the angle round the ring), so a rendered preview
is recognisable. Everything is deterministic from the seed. Blocking numpy/file work: call these from
a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import zstandard
from PIL import Image, ImageDraw, ImageFilter

SH_C0 = 0.28209479177387814
SH_DEGREE = 3
SH_DIM = 15  # coefficients per colour channel beyond DC for degree 3
SPZ_MAGIC = 0x5053474E  # "NGSP" in file order
FRACTIONAL_BITS = 12
PLY_PROPS = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(3 * SH_DIM)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
_PRUNE_ALPHA = 12 / 255  # vid2scene prunes below this, so every gaussian we write is above it


def _hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    vv = np.full_like(h, v)
    pp, qq, tt = np.full_like(h, p), q, t
    table = [(vv, tt, pp), (qq, vv, pp), (pp, vv, tt), (pp, qq, vv), (tt, pp, vv), (vv, pp, qq)]
    rgb = np.zeros((h.size, 3))
    for k, (r, g, b) in enumerate(table):
        m = i == k
        rgb[m] = np.stack([r[m], g[m], b[m]], axis=1)
    return rgb


def torus_gaussians(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """N gaussians on a torus lying in the x-z plane (RDF world), in PLY units (logit opacity,
    log scales, w-first quaternions, channel-major f_rest)."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    big, small = 1.0, 0.35
    ring = big + small * np.cos(v)
    xyz = np.stack([ring * np.cos(u), small * np.sin(v), ring * np.sin(u)], axis=1)
    rgb = _hsv_to_rgb(u / (2 * np.pi), 0.85, 0.95)
    alpha = rng.uniform(0.55, 0.99, n)
    assert alpha.min() > _PRUNE_ALPHA
    quat = rng.normal(size=(n, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    return {
        "xyz": xyz.astype(np.float32),
        "f_dc": ((rgb - 0.5) / SH_C0).astype(np.float32),
        "f_rest": rng.uniform(-0.15, 0.15, (n, 3, SH_DIM)).astype(np.float32),  # [gaussian, channel, k]
        "opacity": np.log(alpha / (1 - alpha)).astype(np.float32),
        "scale": np.log(rng.uniform(0.01, 0.04, (n, 3))).astype(np.float32),
        "rot": quat.astype(np.float32),  # w, x, y, z
    }


def ply_header(n: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {name}" for name in PLY_PROPS]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(path: Path, g: dict[str, np.ndarray], chunk: int = 65536) -> Path:
    """Binary little-endian PLY, 62 float32 per gaussian (248 B), written in slices."""
    n = len(g["xyz"])
    with Path(path).open("wb") as fh:
        fh.write(ply_header(n))
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            rows = np.concatenate([
                g["xyz"][lo:hi], np.zeros((hi - lo, 3), np.float32), g["f_dc"][lo:hi],
                g["f_rest"][lo:hi].reshape(hi - lo, 3 * SH_DIM), g["opacity"][lo:hi, None],
                g["scale"][lo:hi], g["rot"][lo:hi]], axis=1).astype("<f4")
            fh.write(rows.tobytes())
    return Path(path)


# -- SPZ ----------------------------------------------------------------------------------------
def _positions(xyz: np.ndarray) -> bytes:
    q = np.round(xyz.astype(np.float64) * (1 << FRACTIONAL_BITS)).astype(np.int64) & 0xFFFFFF
    return q.astype("<u4").view(np.uint8).reshape(-1, 3, 4)[:, :, :3].tobytes()


def _u8(values: np.ndarray) -> bytes:
    return np.clip(np.round(values), 0, 255).astype(np.uint8).tobytes()


def _rotations(rot_wxyz: np.ndarray) -> bytes:
    """Smallest-three: x,y,z,w order, index of the largest in the top 2 bits, 10 bits per other."""
    q = rot_wxyz[:, [1, 2, 3, 0]].astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(len(q)), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        mag = np.clip(np.round(511 * np.abs(q[:, i]) / np.sqrt(0.5)), 0, 511).astype(np.uint32)
        sign = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        comp = np.where(keep, (comp << 10) | (sign << 9) | mag, comp)
    return comp.astype("<u4").tobytes()


def _sh(f_rest: np.ndarray) -> bytes:
    """PLY channel-major -> SPZ coefficient-major/colour-inner, 5 bits for degree 1, 4 above."""
    coeffs = np.transpose(f_rest, (0, 2, 1)).astype(np.float64)  # [gaussian, k, channel]
    q = np.round(coeffs * 128).astype(np.int64) + 128
    bucket = np.where(np.arange(SH_DIM) < 3, 8, 16)[None, :, None]
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8).tobytes()


def spz_streams(g: dict[str, np.ndarray]) -> list[bytes]:
    """The six planar attribute arrays in file order (positions, alphas, colors, scales, rotations, sh)."""
    alpha = 1 / (1 + np.exp(-g["opacity"].astype(np.float64)))
    return [_positions(g["xyz"]), _u8(alpha * 255), _u8(g["f_dc"] * (0.15 * 255) + 0.5 * 255),
            _u8((g["scale"] + 10.0) * 16), _rotations(g["rot"]), _sh(g["f_rest"])]


def pack_spz(g: dict[str, np.ndarray], version: int = 3) -> bytes:
    """Legacy v3 (one gzip member, 16-byte header) or v4 (NGSP header, TOC, six zstd frames).
    No axis conversion, like the reference `ply_to_spz` with default options."""
    n, streams = len(g["xyz"]), spz_streams(g)
    if version == 3:
        header = struct.pack("<IIIBBBB", SPZ_MAGIC, 3, n, SH_DEGREE, FRACTIONAL_BITS, 0, 0)
        return gzip.compress(header + b"".join(streams), compresslevel=6, mtime=0)
    if version == 4:
        cctx = zstandard.ZstdCompressor(level=12)
        frames = [cctx.compress(s) for s in streams]
        header = struct.pack("<IIIBBBBI12x", SPZ_MAGIC, 4, n, SH_DEGREE, FRACTIONAL_BITS, 0, len(frames), 32)
        toc = b"".join(struct.pack("<QQ", len(f), len(s)) for f, s in zip(frames, streams, strict=True))
        return header + toc + b"".join(frames)
    raise ValueError("SPZ version must be 3 or 4")


def write_scene(folder: Path, n: int, *, seed: int = 0, spz_version: int = 3) -> tuple[Path, Path]:
    """Write `scene-<n>.ply` and the matching `.spz` into `folder` (blocking)."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torus_gaussians(n, seed)
    ply = write_ply(folder / f"scene-{n}-s{seed}.ply", g)
    spz = folder / f"scene-{n}-s{seed}-v{spz_version}.spz"
    spz.write_bytes(pack_spz(g, spz_version))
    return ply, spz


# -- preview --------------------------------------------------------------------------------------
def preview_jpeg(progress: float, *, seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    """A training preview: the torus seen from above-front, sparse and blurry early, dense and sharp
    late, with a progress bar, so consecutive previews visibly differ."""
    progress = float(min(1.0, max(0.0, progress)))
    width, height = size
    g = torus_gaussians(4000, seed)
    count = int(300 + progress * 3700)
    noise = np.random.default_rng(seed + 1).normal(scale=(1 - progress) * 0.25, size=(count, 3))
    xyz = g["xyz"][:count].astype(np.float64) + noise
    tilt = np.radians(35)
    y_view = xyz[:, 1] * np.cos(tilt) + xyz[:, 2] * np.sin(tilt)  # +y is down in RDF: fine for images
    px = np.clip(((xyz[:, 0] / 3.0) + 0.5) * width, 0, width - 1).astype(int)
    py = np.clip(((y_view / 3.0) + 0.45) * height, 0, height - 1).astype(int)
    colour = np.clip((0.5 + SH_C0 * g["f_dc"][:count]) * 255, 0, 255).astype(np.uint8)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:] = (18, 20, 28)
    for dy in (0, 1):
        for dx in (0, 1):
            canvas[np.clip(py + dy, 0, height - 1), np.clip(px + dx, 0, width - 1)] = colour
    img = Image.fromarray(canvas).filter(ImageFilter.GaussianBlur(0.4 + (1 - progress) * 2.5))
    draw = ImageDraw.Draw(img)
    draw.rectangle((8, height - 14, width - 8, height - 8), outline=(120, 120, 140))
    draw.rectangle((9, height - 13, 9 + int((width - 18) * progress), height - 9), fill=(90, 200, 120))
    draw.text((8, 6), f"training {progress * 100:.1f}%", fill=(235, 235, 235))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
