"""Make a result video fit Discord's upload limit, and make thumbnails.

The output is the most widely playable thing there is: H.264 High, yuv420p, MP4 with the index at
the front (faststart) so Discord's player starts before the download ends. Frames stream through
one at a time; the size is measured after each pass and the bitrate corrected until it fits.
Audio is dropped: the bot's results (Viggle renders, layers) carry none worth the bytes [design].
"""

from __future__ import annotations

import asyncio
import os
import shutil
from fractions import Fraction
from pathlib import Path

from bot.media.probe import MediaError, format_size, probe_video

CONTAINER_OVERHEAD = 0.96  # share of the byte budget left for the video stream
MIN_BITRATE = 60_000  # below this H.264 is mush; refuse instead
MIN_SIDE = 144
MAX_FPS = 30
BITS_PER_PIXEL = 0.08  # bits per pixel per frame that still looks decent at H.264 "medium"


def plan_size(width: int, height: int, fps: float, bitrate: float, max_side: int | None = None) -> tuple[int, int]:
    """Largest even-sided size, at most the source, that the bitrate can feed at BITS_PER_PIXEL."""
    scale = 1.0
    if max_side:
        scale = min(scale, max_side / max(width, height))
    pixels = bitrate / (BITS_PER_PIXEL * max(fps, 1.0))
    scale = min(scale, (pixels / (width * height)) ** 0.5)
    scale = max(scale, MIN_SIDE / min(width, height))
    scale = min(scale, 1.0)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def shrink_video(src: Path | str, dest: Path | str, limit_bytes: int, *, max_side: int | None = None,
                 attempts: int = 4, min_bitrate: int = MIN_BITRATE) -> Path:
    """Re-encode `src` to an MP4 of at most `limit_bytes` (or MediaError if even mush would not fit).

    An H.264 MP4 that already fits is copied as is: re-encoding would only lose quality.
    """
    src, dest = Path(src), Path(dest)
    info = probe_video(src)
    if info.size <= limit_bytes and info.container == "mp4" and info.codec == "h264":
        shutil.copyfile(src, dest)
        return dest
    fps = min(info.fps or MAX_FPS, MAX_FPS)
    bitrate = limit_bytes * 8 * CONTAINER_OVERHEAD / info.duration
    tmp = dest.with_name(dest.name + ".part")
    try:
        for _ in range(attempts):
            if bitrate < min_bitrate:
                break
            size = plan_size(info.width, info.height, fps, bitrate, max_side)
            _encode(src, tmp, size, fps, int(bitrate))
            written = tmp.stat().st_size
            if written <= limit_bytes:
                os.replace(tmp, dest)
                return dest
            bitrate *= limit_bytes / written * 0.92
    finally:
        tmp.unlink(missing_ok=True)
    raise MediaError(f"This video is too long to fit in {format_size(limit_bytes)}, even at low quality.")


def _encode(src: Path, dest: Path, size: tuple[int, int], fps: float, bitrate: int) -> None:
    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(src)) as inp, av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"preset": "medium", "maxrate": str(int(bitrate * 1.5)),
                          "bufsize": str(int(bitrate * 2)), "profile": "high"}
        last_pts = -1
        for frame in inp.decode(video=0):
            seconds = frame.time if frame.time is not None else (last_pts + 1) / float(rate)
            pts = round(seconds * rate)
            if pts <= last_pts:  # source faster than MAX_FPS (or duplicate stamps): drop
                continue
            last_pts = pts
            out_frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            out_frame.pts, out_frame.time_base = pts, 1 / rate
            for packet in stream.encode(out_frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def first_frame_jpeg(src: Path | str, dest: Path | str, max_side: int = 512) -> Path:
    """A small JPEG thumbnail of the first frame (transparent parts shown on white)."""
    from PIL import Image

    from bot.media.frames import first_frame

    image = first_frame(src)
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, (0, 0), image)
        image = flat
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    dest = Path(dest)
    image.save(dest, format="JPEG", quality=85)
    return dest


async def shrink_video_async(src: Path | str, dest: Path | str, limit_bytes: int, **kwargs) -> Path:
    return await asyncio.to_thread(shrink_video, src, dest, limit_bytes, **kwargs)


async def first_frame_jpeg_async(src: Path | str, dest: Path | str, max_side: int = 512) -> Path:
    return await asyncio.to_thread(first_frame_jpeg, src, dest, max_side)
