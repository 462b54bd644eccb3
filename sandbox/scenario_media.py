"""CPU work of the Scenario sandbox: probing uploaded videos and rendering layer videos.

Every function here blocks (PyAV), so callers run them in a thread. Layer outputs are real VP9 WebM
files with an alpha channel, so the bot's download, probe and compose code meets the real thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

from sandbox.media import make_video


class NotAVideo(Exception):
    """PyAV could not read the file as a video; the message becomes the upload's errorMessage."""


def _is_image_format(name: str) -> bool:
    return name.startswith("image2") or name.endswith("_pipe") or name in {"gif", "webp"}


def _short_format(demuxer: str, path: Path) -> str:
    """`matroska,webm` -> `webm` for a .webm file: the demuxer name alone is ambiguous."""
    names = demuxer.split(",")
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in names else names[0]


def probe_video(path: Path) -> dict[str, Any]:
    """Asset `properties` for a video file, or NotAVideo with a reason a user can act on."""
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises many error types for junk input
        raise NotAVideo(f"The file could not be read as a video ({exc.__class__.__name__}: {exc})") from exc
    with container:
        fmt = container.format.name
        if _is_image_format(fmt) or not container.streams.video:
            raise NotAVideo(f"The file is not a video (container {fmt!r} has no video stream)")
        stream = container.streams.video[0]
        try:
            next(container.decode(stream))
        except Exception as exc:
            raise NotAVideo(f"The video stream could not be decoded ({exc.__class__.__name__})") from exc
        duration = container.duration / 1_000_000 if container.duration else None
        if duration is None and stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        fps = float(stream.average_rate) if stream.average_rate else None
        frames = stream.frames or (round(duration * fps) if duration and fps else None)
        props: dict[str, Any] = {
            "size": path.stat().st_size, "width": stream.codec_context.width, "height": stream.codec_context.height,
            "duration": round(duration, 3) if duration else None, "frameRate": fps, "nbFrames": frames,
            "codecName": stream.codec_context.name, "format": _short_format(fmt, path),
            "bitrate": container.bit_rate or None}
    return {k: v for k, v in props.items() if v is not None}


def layer_size(width: int | None, height: int | None, max_width: int = 320) -> tuple[int, int]:
    """Keep the input's aspect ratio but stay small (VP9 with alpha is slow to encode); even sizes."""
    width, height = width or 320, height or 240
    if width > max_width:
        height, width = round(height * max_width / width), max_width
    return max(16, width // 2 * 2), max(16, height // 2 * 2)


def render_layers(folder: Path, count: int, *, width: int, height: int, fps: int,
                  seconds: float) -> list[tuple[Path, dict[str, Any]]]:
    """`count` VP9+alpha WebM layers, each a different hue, with their probed properties."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(count):
        path = make_video(folder / f"layer-{index}.webm", seconds=seconds, width=width, height=height, fps=fps,
                          hue=2 * index + 1, alpha=True)
        out.append((path, probe_video(path)))
    return out
