"""Real, small media files made on demand: test inputs, demo inputs and the sandboxes' outputs.

Everything is written straight to disk frame by frame; nothing holds a whole video in memory.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

_CODECS = {".mp4": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"), ".webm": ("libvpx-vp9", "yuv420p")}


def _frame(width: int, height: int, index: int, hue: int) -> np.ndarray:
    """A moving bar over a gradient, so frames differ and codecs have something to encode."""
    x = np.linspace(0, 255, width, dtype=np.uint8)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = x
    img[..., 1] = (hue * 37) % 256
    img[..., 2] = 255 - x
    bar = (index * 4) % max(1, width - 8)
    img[:, bar:bar + 8] = 255
    return img


def make_video(path: Path | str, *, seconds: float = 2.0, width: int = 160, height: int = 120, fps: int = 12,
               hue: int = 0, alpha: bool = False) -> Path:
    """Write a real video (.mp4/.mov H.264, .webm VP9; `alpha` gives VP9 with transparency)."""
    path = Path(path)
    codec, pix_fmt = _CODECS.get(path.suffix.lower(), _CODECS[".mp4"])
    if alpha and path.suffix.lower() == ".webm":
        pix_fmt = "yuva420p"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i in range(max(1, round(seconds * fps))):
            rgb = _frame(width, height, i, hue)
            if pix_fmt == "yuva420p":
                a = np.zeros((height, width, 1), np.uint8)
                a[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
                frame = av.VideoFrame.from_ndarray(np.concatenate([rgb, a], axis=2), format="rgba")
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_large_file(path: Path | str, size: int, chunk: int = 1 << 20) -> Path:
    """A file of `size` bytes that starts like an MP4 (for size-limit and streaming tests)."""
    path = Path(path)
    block = bytes(range(256)) * (chunk // 256)
    with path.open("wb") as fh:
        fh.write(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
        left = size - 24
        while left > 0:
            fh.write(block[: min(chunk, left)])
            left -= chunk
    return path


def image_bytes(width: int = 128, height: int = 128, *, fmt: str = "PNG", label: str = "", hue: int = 0) -> bytes:
    """A small real PNG/JPEG image (a character portrait, a preview)."""
    img = Image.new("RGB", (width, height), ((hue * 53) % 256, 90, 200 - (hue * 17) % 120))
    draw = ImageDraw.Draw(img)
    draw.ellipse((width // 4, height // 8, 3 * width // 4, height // 2), fill=(240, 200, 170))
    draw.rectangle((width // 3, height // 2, 2 * width // 3, height - 8), fill=(40, 40, 160))
    if label:
        draw.text((4, 4), label[:20], fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
