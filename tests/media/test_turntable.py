"""Turntable previews: a synthetic scene of coloured blobs, rendered, checked pixel by pixel.

Expected pixel positions come from a plain pinhole camera written here (camera on -z looking at
the origin, 3DGS axes: x right, y down), not from the renderer's own code.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bot.media.splat import SplatCloud, save_ply
from bot.media.turntable import TurntableOptions, make_turntable_async, prepare, render_frame

RED, GREEN, BLUE = (1.0, 0.1, 0.1), (0.1, 1.0, 0.1), (0.1, 0.2, 1.0)
OPTS = TurntableOptions(width=160, height=120, frames=24, fov_degrees=50.0)
BG = np.array(OPTS.background)


def blob(centre, rgb, n=400, spread=0.25, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"pos": np.asarray(centre, np.float32) + rng.normal(0, spread, (n, 3)).astype(np.float32),
            "dc": np.tile((np.asarray(rgb, np.float32) - 0.5) / 0.28209479177387814, (n, 1)),
            "alpha": np.full(n, 4.0, np.float32),  # opacity ≈ 0.98
            "scale": np.full((n, 3), np.log(0.12), np.float32)}


def cloud_of(*blobs) -> SplatCloud:
    parts = {k: np.concatenate([b[k] for b in blobs]) for k in blobs[0]}
    n = len(parts["pos"])
    rot = np.zeros((n, 4), np.float32)
    rot[:, 0] = 1
    return SplatCloud(parts["pos"], parts["alpha"], parts["dc"], parts["scale"], rot)


def pixel(point, eye_z=-10.0, opts=OPTS) -> tuple[int, int]:
    """Where a world point lands for a camera at (0,0,eye_z) looking along +z, y down."""
    focal = 0.5 * opts.width / np.tan(np.radians(opts.fov_degrees) / 2)
    x, y, z = point
    return int(round(opts.width / 2 + focal * x / (z - eye_z))), int(round(opts.height / 2 + focal * y / (z - eye_z)))


def colour_at(img: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    x, y = xy
    return img[y - 1: y + 2, x - 1: x + 2].reshape(-1, 3).mean(axis=0)


def dominant(rgb: np.ndarray) -> str:
    return "rgb"[int(np.argmax(rgb))] if rgb.max() - np.sort(rgb)[1] > 60 else "-"


def render_from_front(cloud: SplatCloud) -> np.ndarray:
    up = np.array([0.0, -1.0, 0.0])
    return render_frame(prepare(cloud, 10**6), np.array([0.0, 0.0, -10.0]), np.zeros(3), up, OPTS)


def test_blobs_land_where_a_pinhole_camera_puts_them_on_the_background():
    img = render_from_front(cloud_of(blob((2.5, 0, 0), RED), blob((-2.5, 0, 0), GREEN, seed=1),
                                     blob((0, -2.0, 0), BLUE, seed=2)))
    assert img.shape == (120, 160, 3)
    assert dominant(colour_at(img, pixel((2.5, 0, 0)))) == "r"  # +x is right
    assert dominant(colour_at(img, pixel((-2.5, 0, 0)))) == "g"
    assert dominant(colour_at(img, pixel((0, -2.0, 0)))) == "b"  # -y is up: top half of the image
    assert pixel((0, -2.0, 0))[1] < 60
    for corner in ((3, 3), (156, 3), (3, 116), (156, 116), pixel((0, 2.0, 0))):
        assert np.abs(colour_at(img, corner) - BG).max() < 8


def test_the_nearer_blob_hides_the_one_behind_it():
    near_red = render_from_front(cloud_of(blob((0, 0, -2), RED), blob((0, 0, 3), BLUE, seed=1)))
    near_blue = render_from_front(cloud_of(blob((0, 0, 3), RED), blob((0, 0, -2), BLUE, seed=1)))
    assert dominant(colour_at(near_red, pixel((0, 0, -2)))) == "r"
    assert dominant(colour_at(near_blue, pixel((0, 0, -2)))) == "b"


async def test_turntable_file_orbits_the_scene_and_ignores_far_floaters(tmp_path):
    scene = cloud_of(blob((1.5, 0, 0), RED), blob((-1.5, 0, 0), GREEN, seed=1), blob((0, 0, 1.5), BLUE, seed=2),
                     blob((900, -400, 700), GREEN, n=12, spread=1, seed=3))  # floaters far away
    ply = save_ply(scene, tmp_path / "scene.ply")
    out = await make_turntable_async(ply, tmp_path / "turntable.webp", OPTS)
    assert out.stat().st_size <= 2 * 1024 * 1024
    with Image.open(out) as anim:
        assert anim.format == "WEBP" and anim.n_frames == OPTS.frames and anim.is_animated
        frames = []
        for i in range(anim.n_frames):
            anim.seek(i)
            frames.append(np.asarray(anim.convert("RGB"), np.int16))
    for img in frames:  # the blobs fill a good part of every frame despite the floaters
        covered = (np.abs(img - BG).max(axis=2) > 30).mean()
        assert 0.03 < covered < 0.8
    # the view turns: the red blob's side of the picture changes over half a turn
    def red_x(img):
        red = (img[..., 0] > 150) & (img[..., 1] < 100)
        return np.nonzero(red)[1].mean() if red.sum() > 20 else None

    xs = [red_x(f) for f in frames]
    seen = [x for x in xs if x is not None]
    assert max(seen) - min(seen) > OPTS.width * 0.3
    assert np.abs(frames[0] - frames[OPTS.frames // 2]).mean() > 5


def test_a_scene_over_the_pixel_budget_renders_smaller_and_is_scaled_back_up():
    from dataclasses import replace

    from bot.media.turntable import render_turntable

    scene = cloud_of(blob((1.5, 0, 0), RED), blob((-1.5, 0, 0), GREEN, seed=1))
    frames = render_turntable(scene, replace(OPTS, frames=24, footprint_budget=20_000))
    assert all(f.shape == (120, 160, 3) for f in frames)
    first = frames[0].astype(np.int16)
    red = (first[..., 0] > 150) & (first[..., 1] < 100)
    green = (first[..., 1] > 150) & (first[..., 0] < 100)
    assert red.sum() > 50 and green.sum() > 50
    assert np.abs(first[2, 2] - BG).max() < 8
