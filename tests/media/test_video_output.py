"""Layer contact sheets, shrunk videos and thumbnails, judged by their pixels and sizes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bot.media.layers import CHECKER, GAP, layers_preview, layers_preview_async
from bot.media.probe import MediaError, probe_video
from bot.media.transcode import first_frame_jpeg, shrink_video, shrink_video_async
from sandbox.media import make_video


def frame_colour(x: int, width: int, hue: int) -> tuple[int, int, int]:
    """What sandbox.media paints at column x of frame 0 (gradient red->blue, green from the hue)."""
    r = round(255 * x / (width - 1))
    return r, (hue * 37) % 256, 255 - r


def close(pixel, expected, tol=14) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected, strict=True))


async def test_layers_preview_shows_checkerboard_where_transparent(tmp_path):
    a = make_video(tmp_path / "a.webm", seconds=0.5, width=160, height=120, alpha=True, hue=1)
    b = make_video(tmp_path / "b.webm", seconds=0.5, width=160, height=120, alpha=True, hue=4)
    c = make_video(tmp_path / "c.mp4", seconds=0.5, width=160, height=120, hue=2)
    out = await layers_preview_async([a, b, c], tmp_path / "sheet.png", labels=["Character", "Props", "Input"],
                                     tile_height=120)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape[0] > 120 and sheet.shape[1] == 3 * 160 + 4 * GAP
    for i, hue in enumerate((1, 4)):
        left = GAP + i * (160 + GAP)
        corner = sheet[GAP + 4, left + 4]  # alpha 0 there: a checker square
        assert tuple(corner) in CHECKER
        assert tuple(sheet[GAP + 4, left + 12]) in CHECKER and tuple(sheet[GAP + 4, left + 12]) != tuple(corner)
        centre = sheet[GAP + 60, left + 100]  # alpha 255 there: the frame itself
        assert close(centre, frame_colour(100, 160, hue))
    opaque = sheet[GAP + 4, GAP + 2 * (160 + GAP) + 40]  # (the white bar of frame 0 sits at x 0..7)
    assert close(opaque, frame_colour(40, 160, 2))
    labels = sheet[GAP + 120 + 2:, GAP: GAP + 160]
    assert (labels.max(axis=2) > 200).any()  # some label text was drawn under the tile


def test_layers_preview_scales_tiles_to_the_height(tmp_path):
    wide = make_video(tmp_path / "w.webm", seconds=0.5, width=320, height=120, alpha=True)
    out = layers_preview([wide], tmp_path / "one.png", tile_height=60)
    with Image.open(out) as img:
        assert img.width == 160 + 2 * GAP and img.format == "PNG"


def test_layers_preview_refuses_a_non_video(tmp_path):
    (tmp_path / "x.webm").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(MediaError, match="PNG image"):
        layers_preview([tmp_path / "x.webm"], tmp_path / "out.png")


async def test_shrink_video_fits_under_a_tight_limit(tmp_path):
    src = make_video(tmp_path / "big.webm", seconds=3, width=640, height=480, fps=24)
    limit = 20_000
    out = await shrink_video_async(src, tmp_path / "small.mp4", limit, min_bitrate=20_000)
    info = probe_video(out)
    assert out.stat().st_size <= limit
    assert (info.container, info.codec) == ("mp4", "h264")
    assert info.duration == pytest.approx(3.0, abs=0.2) and info.width <= 640 and info.width % 2 == 0
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: index first


def test_shrink_video_caps_the_frame_rate_and_honours_max_side(tmp_path):
    src = make_video(tmp_path / "fast.mp4", seconds=2, width=320, height=240, fps=60)
    out = shrink_video(src, tmp_path / "out.mp4", src.stat().st_size - 1, max_side=200, min_bitrate=1000)
    info = probe_video(out)
    assert info.fps == 30 and max(info.width, info.height) <= 200
    assert info.duration == pytest.approx(2.0, abs=0.15)


def test_shrink_video_refuses_an_impossible_limit(tmp_path):
    src = make_video(tmp_path / "v.mp4", seconds=2)
    with pytest.raises(MediaError, match="too long to fit in 1000 bytes"):
        shrink_video(src, tmp_path / "out.mp4", 1000)
    assert not list(tmp_path.glob("out.mp4*"))


def test_first_frame_jpeg_is_a_small_thumbnail(tmp_path):
    src = make_video(tmp_path / "v.mp4", seconds=1, width=640, height=360, hue=3)
    out = first_frame_jpeg(src, tmp_path / "thumb.jpg", max_side=128)
    with Image.open(out) as img:
        assert (img.format, img.size) == ("JPEG", (128, 72))
        assert close(img.convert("RGB").getpixel((100, 40)), frame_colour(500, 640, 3), tol=20)
    alpha = make_video(tmp_path / "a.webm", seconds=0.5, alpha=True)
    with Image.open(first_frame_jpeg(alpha, tmp_path / "a.jpg")) as img:
        assert close(img.getpixel((2, 2)), (255, 255, 255), tol=6)  # transparency shown on white
