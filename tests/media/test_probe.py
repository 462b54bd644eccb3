"""Probing uploads: what the file really is, its numbers, and refusals a user can understand."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from bot.media.probe import (
    MediaError,
    VideoInfo,
    check_video,
    probe_image,
    probe_image_async,
    probe_video,
    probe_video_async,
    sniff,
)
from sandbox.media import image_bytes, make_large_file, make_video


@pytest.mark.parametrize(("name", "kind"), [("a.mp4", "mp4"), ("a.mov", "mov"), ("a.webm", "webm")])
def test_sniff_reads_magic_bytes_not_names(tmp_path, name, kind):
    video = make_video(tmp_path / name, seconds=0.5)
    disguised = tmp_path / "upload.bin"
    disguised.write_bytes(video.read_bytes())
    assert sniff(disguised) == kind


@pytest.mark.parametrize(("data", "kind"), [
    (image_bytes(fmt="PNG"), "png"), (image_bytes(fmt="JPEG"), "jpeg"), (image_bytes(fmt="GIF"), "gif"),
    (image_bytes(fmt="WEBP"), "webp"), (b"RIFF\0\0\0\0AVI LIST", "avi"), (b"NGSP\4\0\0\0", "spz"),
    (b"ply\nformat binary_little_endian 1.0\n", "ply"), (b"hello world", None),
])
def test_sniff_other_kinds(tmp_path, data, kind):
    (tmp_path / "f").write_bytes(data)
    assert sniff(tmp_path / "f") == kind


async def test_probe_video_reads_the_numbers(tmp_path):
    mp4 = make_video(tmp_path / "a.mp4", seconds=2, width=320, height=240, fps=12)
    info = await probe_video_async(mp4)
    assert info == VideoInfo("mp4", "h264", pytest.approx(2.0, abs=0.1), 320, 240, 12.0, mp4.stat().st_size, False)
    webm = probe_video(make_video(tmp_path / "a.webm", seconds=1, alpha=True))
    assert (webm.container, webm.codec, webm.width) == ("webm", "vp9", 160)
    assert webm.duration == pytest.approx(1.0, abs=0.1)
    assert probe_video(make_video(tmp_path / "a.mov", seconds=1)).container == "mov"


def test_an_image_sent_as_a_video_is_named_in_the_refusal(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(image_bytes(fmt="PNG"))
    with pytest.raises(MediaError, match=r"not a video I can read \(it looks like a PNG image\)"):
        probe_video(tmp_path / "clip.mp4")


@pytest.mark.parametrize("content", [b"", b"\x00" * 5000, "fake-mp4", "cut"])
def test_unreadable_videos_raise_media_error(tmp_path, content):
    path = tmp_path / "bad.mp4"
    if content == "fake-mp4":
        make_large_file(path, 200_000)
    elif content == "cut":
        data = make_video(tmp_path / "ok.mp4", seconds=1).read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        path.write_bytes(content)
    with pytest.raises(MediaError):
        probe_video(path)


async def test_probe_image(tmp_path):
    (tmp_path / "p.jpg").write_bytes(image_bytes(64, 48, fmt="JPEG"))
    info = await probe_image_async(tmp_path / "p.jpg")
    assert (info.format, info.width, info.height, info.size) == ("JPEG", 64, 48, (tmp_path / "p.jpg").stat().st_size)
    make_video(tmp_path / "v.mp4", seconds=0.5)
    with pytest.raises(MediaError, match="not an image.*MP4 video"):
        probe_image(tmp_path / "v.mp4")


INFO = VideoInfo("mp4", "h264", 372.0, 1920, 1080, 30.0, 150 * 1024 * 1024, True)


@pytest.mark.parametrize(("limits", "message"), [
    ({"max_seconds": 300}, "The video is 6 min 12 s long; vid2scene accepts at most 5 min."),
    ({"max_bytes": 100 * 1024 * 1024}, "The video is 150 MB; vid2scene accepts at most 100 MB."),
    ({"max_side": 1280}, "The video is 1920×1080; vid2scene accepts at most 1280 px on the longest side."),
    ({"formats": {"mov", "webm"}}, "The video is MP4; vid2scene accepts MOV, WEBM."),
    ({"min_seconds": 400}, "The video is only 6 min 12 s long; vid2scene needs at least 6 min 40 s."),
])
def test_check_video_explains_each_limit(limits, message):
    with pytest.raises(MediaError) as err:
        check_video(INFO, service="vid2scene", **limits)
    assert str(err.value) == message


def test_check_video_passes_within_limits():
    check_video(INFO, max_seconds=400, max_bytes=200 << 20, max_side=1920, formats={"mp4", "mov"})
    short = replace(INFO, duration=2.5)
    with pytest.raises(MediaError, match="only 2.5 s long"):
        check_video(short, min_seconds=3)


def test_importing_bot_media_stays_light():
    code = "import sys, bot.media; print(any(m in sys.modules for m in ('av', 'numpy', 'PIL')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
