"""A turntable preview of a Gaussian splat, rendered on the CPU with NumPy, saved as an animated WebP.

vid2scene's own preview is a training snapshot; users want to see the scene turn. The renderer is
real Gaussian splatting, kept cheap: each gaussian's 3D covariance is projected to a 2D ellipse
(EWA, with the usual 0.3 px low-pass), its footprint is evaluated on a small pixel patch, and the
frame is alpha-composited front to back in depth slices (order inside a slice does not matter at
preview size), all with whole-array operations. Big scenes keep their most visible gaussians only.
The camera orbits the robust centre of the scene (medians and percentiles, so floaters far away
do not shrink the scene to a dot) around the "up" axis (-y in 3DGS PLYs).
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bot.media.splat import SplatCloud, load_splat

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
PATCH_RADII = (1, 2, 3, 4, 6, 8, 11, 15)  # footprint half-widths in pixels; larger ones are clipped
DEPTH_SLICES = 12
MAX_BYTES = 2 * 1024 * 1024
#: result files named so end with this; delivery uses the posted one as the status card's picture
TURNTABLE_SUFFIX = "-turntable.webp"


@dataclass(frozen=True)
class TurntableOptions:
    width: int = 320
    height: int = 240
    frames: int = 30
    fps: int = 12
    fov_degrees: float = 50.0
    elevation_degrees: float = 20.0
    max_gaussians: int = 80_000
    up: tuple[float, float, float] = (0.0, -1.0, 0.0)  # 3DGS/COLMAP world: y points down
    background: tuple[int, int, int] = (22, 24, 28)
    quality: int = 70
    #: pixel evaluations per frame the renderer may spend; sparse scenes of big splats render at a
    #: lower resolution (then scaled up: big splats are smooth) to stay within it
    footprint_budget: int = 1_500_000


@dataclass
class _Scene:
    """The arrays a frame needs, float32, one row per kept gaussian."""

    means: np.ndarray  # (n,3)
    cov: np.ndarray  # (n,3,3) world covariance
    opacity: np.ndarray  # (n,)
    dc: np.ndarray  # (n,3) SH degree-0 colour, 0..1
    sh1: np.ndarray | None  # (n,3,3) degree-1 coefficients (coefficient, colour)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def importance(cloud: SplatCloud) -> np.ndarray:
    """How much of the picture a gaussian can cover: opacity × area of its two largest axes."""
    alpha = _sigmoid(np.asarray(cloud.alphas, np.float32))
    s = np.sort(np.asarray(cloud.scales, np.float32), axis=1)
    return alpha * np.exp(s[:, 1] + s[:, 2])


def prepare(cloud: SplatCloud, max_gaussians: int) -> _Scene:
    """Keep the most important gaussians and precompute what does not depend on the camera."""
    if cloud.count > max_gaussians:
        keep = np.sort(np.argpartition(-importance(cloud), max_gaussians)[:max_gaussians])
        cloud = cloud.take(keep)
    q = np.asarray(cloud.rotations, np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    rot = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], 1)
    m = rot * np.exp(np.asarray(cloud.scales, np.float32))[:, None, :]  # R·S
    cov = np.einsum("nij,nkj->nik", m, m)
    dc = np.clip(0.5 + SH_C0 * np.asarray(cloud.colors, np.float32), 0.0, 1.0)
    sh1 = None if cloud.sh is None else np.asarray(cloud.sh[:, :3], np.float32)
    return _Scene(np.asarray(cloud.positions, np.float32), cov.astype(np.float32),
                  _sigmoid(np.asarray(cloud.alphas, np.float32)), dc, sh1)


def frame_scene(scene: _Scene, up: np.ndarray) -> tuple[np.ndarray, float]:
    """Robust centre and radius: medians and the 80th percentile ignore far-out floaters."""
    heavy = scene.opacity > 0.3
    pts = scene.means[heavy] if heavy.sum() >= 16 else scene.means
    centre = np.median(pts, axis=0)
    dist = np.linalg.norm(pts - centre, axis=1)
    radius = float(np.percentile(dist, 80)) if len(dist) else 1.0
    return centre, max(radius, 1e-3)


def _orbit_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


def render_frame(scene: _Scene, eye: np.ndarray, target: np.ndarray, up: np.ndarray,
                 opts: TurntableOptions) -> np.ndarray:
    """One (height, width, 3) uint8 image seen from `eye` looking at `target`."""
    w_px, h_px = opts.width, opts.height
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)  # image y grows downwards
    view = np.stack([right, down, forward]).astype(np.float32)
    focal = 0.5 * w_px / np.tan(np.radians(opts.fov_degrees) / 2)
    cam = (scene.means - eye.astype(np.float32)) @ view.T
    z = cam[:, 2]
    near = 0.05 * float(np.linalg.norm(target - eye))
    visible = z > near
    x, y, z = cam[visible, 0], cam[visible, 1], z[visible]
    px = focal * x / z + w_px / 2
    py = focal * y / z + h_px / 2
    # EWA: Σ2 = J·W·Σ·Wᵀ·Jᵀ with J the perspective Jacobian, plus a 0.3 px low-pass
    jac = np.zeros((len(z), 2, 3), np.float32)
    jac[:, 0, 0] = focal / z
    jac[:, 0, 2] = -focal * x / (z * z)
    jac[:, 1, 1] = focal / z
    jac[:, 1, 2] = -focal * y / (z * z)
    t = jac @ view
    cv = scene.cov[visible]
    tc0 = np.einsum("nj,njk->nk", t[:, 0], cv)  # row 0 of T·Σ
    tc1 = np.einsum("nj,njk->nk", t[:, 1], cv)
    a = np.einsum("nk,nk->n", tc0, t[:, 0]) + 0.3
    b = np.einsum("nk,nk->n", tc0, t[:, 1])
    c = np.einsum("nk,nk->n", tc1, t[:, 1]) + 0.3
    det = np.maximum(a * c - b * b, 1e-12)
    conic = np.stack([c / det, -b / det, a / det], 1)
    mid = 0.5 * (a + c)
    lam = mid + np.sqrt(np.maximum(mid * mid - det, 0.0))
    radius = np.ceil(3.0 * np.sqrt(lam))
    on_screen = (px + radius > 0) & (px - radius < w_px) & (py + radius > 0) & (py - radius < h_px)
    idx = np.nonzero(on_screen)[0]
    colour = scene.dc[visible][idx]
    if scene.sh1 is not None:  # degree 1: colour changes with the viewing direction
        d = scene.means[visible][idx] - eye.astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        sh1 = scene.sh1[visible][idx]
        colour = np.clip(colour + SH_C1 * (-d[:, 1:2] * sh1[:, 0] + d[:, 2:3] * sh1[:, 1]
                                           - d[:, 0:1] * sh1[:, 2]), 0.0, 1.0)
    opacity = scene.opacity[visible][idx]
    px, py, conic, radius = px[idx], py[idx], conic[idx], radius[idx]
    rank = np.empty(len(idx), np.int64)  # depth order -> slice, front slices first
    rank[np.argsort(z[idx], kind="stable")] = np.arange(len(idx))
    depth_slice = rank * DEPTH_SLICES // max(1, len(idx))

    pix_l, alpha_l, gauss_l = [], [], []
    bucket = np.searchsorted(PATCH_RADII, np.minimum(radius, PATCH_RADII[-1]))
    # alpha > 1/255 <=> power > log(1 / (255·opacity)): test before exp, exponentiate only the kept
    floor = np.log(1.0 / (255.0 * np.maximum(opacity, 1e-6))).astype(np.float32)
    cxi = np.rint(px).astype(np.int32)
    cyi = np.rint(py).astype(np.int32)
    fx = (cxi - px).astype(np.float32)
    fy = (cyi - py).astype(np.float32)
    for k, r in enumerate(PATCH_RADII):
        members = np.nonzero(bucket == k)[0]
        if not len(members):
            continue
        off = np.arange(-r, r + 1, dtype=np.int32)
        ox, oy = (g.reshape(-1) for g in np.meshgrid(off, off))
        dx = fx[members, None] + ox.astype(np.float32)[None, :]
        dy = fy[members, None] + oy.astype(np.float32)[None, :]
        cn = conic[members].astype(np.float32)
        power = dx * (cn[:, 0:1] * dx + 2.0 * cn[:, 1:2] * dy) + cn[:, 2:3] * (dy * dy)
        power *= -0.5
        gx = cxi[members, None] + ox[None, :]
        gy = cyi[members, None] + oy[None, :]
        keep = (power > floor[members, None]) & (gx >= 0) & (gx < w_px) & (gy >= 0) & (gy < h_px)
        where = np.nonzero(keep)
        pix_l.append(gy[where] * w_px + gx[where])
        rows = members[where[0]]
        alpha_l.append(np.minimum(0.99, opacity[rows] * np.exp(np.minimum(power[where], 0.0))))
        gauss_l.append(rows)
    bg = np.asarray(opts.background, np.float32) / 255.0
    hw = w_px * h_px
    if not pix_l:
        return np.broadcast_to((bg * 255).astype(np.uint8), (h_px, w_px, 3)).copy()
    pix = np.concatenate(pix_l)
    alpha = np.concatenate(alpha_l).astype(np.float64)
    rows = np.concatenate(gauss_l)
    cell = depth_slice[rows] * hw + pix
    size = DEPTH_SLICES * hw
    log_t = np.bincount(cell, np.log1p(-alpha), size).reshape(DEPTH_SLICES, hw)
    weight = np.bincount(cell, alpha, size).reshape(DEPTH_SLICES, hw)
    # inside a slice: blend by weight; between slices: exact front-to-back "over"
    slice_alpha = -np.expm1(log_t)
    before = np.exp(np.cumsum(log_t, axis=0) - log_t)
    share = before * slice_alpha / np.maximum(weight, 1e-12)
    out = np.empty((hw, 3), np.float32)
    for ch in range(3):
        summed = np.bincount(cell, alpha * colour[rows, ch], size).reshape(DEPTH_SLICES, hw)
        out[:, ch] = (share * summed).sum(axis=0)
    transmit = np.exp(log_t.sum(axis=0))
    out += transmit[:, None] * bg[None, :]
    return (np.clip(out, 0.0, 1.0) * 255 + 0.5).astype(np.uint8).reshape(h_px, w_px, 3)


def render_turntable(cloud: SplatCloud, opts: TurntableOptions | None = None) -> list[np.ndarray]:
    """`opts.frames` images orbiting the scene's robust centre, rendered two at a time."""
    opts = opts or TurntableOptions()
    scene = prepare(cloud, opts.max_gaussians)
    up = np.asarray(opts.up, np.float64)
    up /= np.linalg.norm(up)
    centre, radius = frame_scene(scene, up)
    # fit the robust radius in the narrower of the two fields of view, with a margin
    distance = 1.25 * radius / (np.tan(np.radians(opts.fov_degrees) / 2) * min(1.0, opts.height / opts.width))
    e1, e2 = _orbit_axes(up)
    el = np.radians(opts.elevation_degrees)

    def eye(i: int) -> np.ndarray:
        theta = 2 * np.pi * i / opts.frames
        around = np.cos(theta) * e1 + np.sin(theta) * e2
        return centre + distance * (np.cos(el) * around + np.sin(el) * up)

    scale = render_scale(scene, distance, opts)
    small = replace(opts, width=max(16, round(opts.width * scale)), height=max(12, round(opts.height * scale)))

    def frame(i: int) -> np.ndarray:
        image = render_frame(scene, eye(i), centre, up, small)
        if small.width == opts.width:
            return image
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((opts.width, opts.height), Image.BILINEAR))

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(frame, range(opts.frames)))


def render_scale(scene: _Scene, distance: float, opts: TurntableOptions) -> float:
    """1.0, or less when the splats' footprints at full size would exceed `footprint_budget`
    (estimated from their largest axis at the orbit's distance, no projection needed)."""
    focal = 0.5 * opts.width / np.tan(np.radians(opts.fov_degrees) / 2)
    sigma = np.sqrt(np.maximum(scene.cov[:, 0, 0] + scene.cov[:, 1, 1] + scene.cov[:, 2, 2], 0.0))
    radius = np.minimum(np.ceil(3.0 * sigma * focal / distance), PATCH_RADII[-1])
    cost = float(np.sum((2 * radius + 1) ** 2))
    return 1.0 if cost <= opts.footprint_budget else max(0.35, float(np.sqrt(opts.footprint_budget / cost)))


def encode_webp(frames: list[np.ndarray], dest: Path, opts: TurntableOptions) -> Path:
    """Animated, looping WebP (plays inline in Discord, also as an embed image); shrinks to fit."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    quality = opts.quality
    while True:
        buf = io.BytesIO()
        images[0].save(buf, "WEBP", save_all=True, append_images=images[1:], duration=int(1000 / opts.fps),
                       loop=0, quality=quality, method=4)
        if buf.tell() <= MAX_BYTES or quality <= 20:
            break
        quality -= 15
    dest.write_bytes(buf.getvalue())
    return dest


def make_turntable(src: Path | str | SplatCloud, dest: Path | str, opts: TurntableOptions | None = None) -> Path:
    """Render a PLY/SPZ file (or a cloud) into an animated WebP turntable at `dest`."""
    opts = opts or TurntableOptions()
    cloud = src if isinstance(src, SplatCloud) else load_splat(src)
    return encode_webp(render_turntable(cloud, opts), Path(dest), opts)


async def make_turntable_async(src: Path | str, dest: Path | str, opts: TurntableOptions | None = None) -> Path:
    return await asyncio.to_thread(make_turntable, src, dest, opts)
