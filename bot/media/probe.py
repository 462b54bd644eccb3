"""What a file is, before we spend credits on it: magic-byte sniffing, header probes, limit checks.

Probes read container headers (and decode at most one frame), so a 500 MB upload is checked in
milliseconds. Every refusal is a `MediaError` whose message can be shown to the user as is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path


class MediaError(Exception):
    """A file we cannot use; the message is written for the person who sent it."""


_NAMES = {
    "mp4": "an MP4 video", "mov": "a QuickTime (MOV) video", "webm": "a WebM video", "mkv": "an MKV video",
    "avi": "an AVI video", "flv": "an FLV video", "mpegts": "an MPEG-TS video", "ogg": "an Ogg file",
    "png": "a PNG image", "jpeg": "a JPEG image", "gif": "a GIF image", "webp": "a WebP image",
    "bmp": "a BMP image", "tiff": "a TIFF image", "heic": "a HEIC image", "avif": "an AVIF image",
    "wav": "a WAV audio file", "mp3": "an MP3 audio file", "flac": "a FLAC audio file",
    "pdf": "a PDF document", "zip": "a ZIP archive", "gzip": "a gzip archive", "ply": "a PLY 3D file",
    "spz": "an SPZ splat file",
}
IMAGE_KINDS = frozenset({"png", "jpeg", "gif", "webp", "bmp", "tiff", "heic", "avif"})
VIDEO_KINDS = frozenset({"mp4", "mov", "webm", "mkv", "avi", "flv", "mpegts"})
_FTYP_IMAGES = {b"heic": "heic", b"heix": "heic", b"mif1": "heic", b"avif": "avif", b"avis": "avif"}


def describe_kind(kind: str | None) -> str:
    """'a PNG image' for messages like '... it looks like a PNG image'."""
    return _NAMES.get(kind or "", f"a {kind.upper()} file" if kind else "an unknown kind of file")


def sniff(path: Path | str) -> str | None:
    """The container kind from the first bytes, or None; never trusts the file name."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> str | None:
    """`sniff` for bytes already in hand (e.g. the first chunk of a download)."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _FTYP_IMAGES:
            return _FTYP_IMAGES[brand]
        return "mov" if brand == b"qt  " else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"RIFF":
        return {b"AVI ": "avi", b"WEBP": "webp", b"WAVE": "wav"}.get(head[8:12])
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"GIF8",):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:2] == b"BM" and len(head) > 14:
        return "bmp"
    if head[:3] == b"FLV":
        return "flv"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpegts"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return "mp3"
    if head[:4] == b"%PDF":
        return "pdf"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:4] == b"NGSP":
        return "spz"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"ply\n" or head[:5] == b"ply\r\n":
        return "ply"
    return None


@dataclass(frozen=True)
class VideoInfo:
    container: str  # sniffed kind ("mp4", "webm", ...) or PyAV's format name
    codec: str  # "h264", "vp9", ...
    duration: float  # seconds
    width: int
    height: int
    fps: float
    size: int  # bytes on disk
    has_audio: bool

    @property
    def longest_side(self) -> int:
        return max(self.width, self.height)

    @property
    def shortest_side(self) -> int:
        return min(self.width, self.height)

    @property
    def frames(self) -> int:
        """About how many frames the video holds (duration × rate; headers rarely count them)."""
        return max(1, round(self.duration * self.fps)) if self.fps > 0 else 1


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow's name: "PNG", "JPEG", ...
    width: int
    height: int
    size: int


def _not_video(kind: str | None) -> MediaError:
    return MediaError(f"This file is not a video I can read (it looks like {describe_kind(kind)}).")


def probe_video(path: Path | str) -> VideoInfo:
    """Container, codec, duration, size of a video from its headers (plus one decoded frame)."""
    import av

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MediaError("This file is empty.")
    kind = sniff(path)
    if kind in IMAGE_KINDS or kind in {"pdf", "zip", "gzip", "ply", "spz", "wav", "mp3", "flac"}:
        raise _not_video(kind)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise _not_video(kind) from exc
    with container:
        if not container.streams.video:
            raise _not_video(kind) if kind not in VIDEO_KINDS else MediaError("This file has no video track.")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0)
        duration = _duration(container, stream, fps)
        _decode_one(container, stream)
        has_audio = bool(container.streams.audio)
        fmt = container.format.name.split(",")[0]
    if not width or not height:
        raise MediaError("This video has no picture size; it may be damaged.")
    if duration <= 0:
        raise MediaError("This video has no length (0 seconds); it may be damaged or still uploading.")
    return VideoInfo(kind if kind in VIDEO_KINDS else fmt, codec, duration, width, height, fps, size, has_audio)


def _duration(container, stream, fps: float) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    if stream.frames and fps:
        return stream.frames / fps
    return 0.0


def _decode_one(container, stream) -> None:
    """Decode the first frame only: proves the codec data is readable without reading the file."""
    import av

    try:
        for packet in container.demux(stream):
            for _frame in packet.decode():
                return
    except av.error.FFmpegError as exc:
        raise MediaError("This video is damaged: I could not decode its first frame.") from exc
    raise MediaError("This video has no frames I can decode; it may be damaged or truncated.")


def probe_image(path: Path | str) -> ImageInfo:
    """Format and size of an image; Pillow only reads the header here."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            return ImageInfo(img.format or "?", img.width, img.height, path.stat().st_size)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise MediaError(f"This file is not an image I can read (it looks like {describe_kind(sniff(path))}).") \
            from exc


async def probe_video_async(path: Path | str) -> VideoInfo:
    return await asyncio.to_thread(probe_video, path)


async def probe_image_async(path: Path | str) -> ImageInfo:
    return await asyncio.to_thread(probe_image, path)


def format_duration(seconds: float) -> str:
    """'6 min 12 s', '5 min', '2.5 s' — how a person says a length."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f} s"
    total = round(seconds)
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes else []) + ([f"{secs} s"] if secs else [])
    return " ".join(parts) or "0 s"


def format_size(size: int) -> str:
    """Binary units labelled the way Discord labels them (10 MiB shows as '10 MB')."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) or value >= 100 else f"{value:.1f} {unit}"
    return f"{size} bytes"


def check_video(info: VideoInfo, *, max_bytes: int | None = None, max_seconds: float | None = None,
                max_side: int | None = None, formats: Collection[str] | None = None,
                min_seconds: float | None = None, min_side: int | None = None, min_frames: int | None = None,
                service: str = "this service") -> None:
    """One place that turns a provider's limits (and our minimums) into specific, friendly refusals."""
    if formats and info.container not in formats:
        accepted = ", ".join(sorted(f.upper() for f in formats))
        raise MediaError(f"The video is {info.container.upper()}; {service} accepts {accepted}.")
    if max_bytes is not None and info.size > max_bytes:
        raise MediaError(f"The video is {format_size(info.size)}; {service} accepts at most {format_size(max_bytes)}.")
    if max_seconds is not None and info.duration > max_seconds:
        raise MediaError(f"The video is {format_duration(info.duration)} long; "
                         f"{service} accepts at most {format_duration(max_seconds)}.")
    if min_seconds is not None and info.duration < min_seconds:
        raise MediaError(f"The video is only {format_duration(info.duration)} long; "
                         f"{service} needs at least {format_duration(min_seconds)}.")
    if max_side is not None and info.longest_side > max_side:
        raise MediaError(f"The video is {info.width}×{info.height}; {service} accepts at most "
                         f"{max_side} px on the longest side.")
    if min_side is not None and info.shortest_side < min_side:
        raise MediaError(f"The video is only {info.width}×{info.height}; {service} needs at least {min_side} px "
                         "on the shorter side.")
    if min_frames is not None and info.frames < min_frames:
        many = "a single frame" if info.frames == 1 else f"only {info.frames} frames"
        raise MediaError(f"The video holds {many}; {service} needs at least {min_frames} frames "
                         "(a moving clip, not a still).")
