"""The first frame of a video as a Pillow image, keeping transparency when the file has it.

FFmpeg's native VP8/VP9 decoders ignore the alpha plane that WebM carries as a side stream
(Matroska BlockAdditional, flagged by the track tag `alpha_mode=1`); libvpx's decoders read it.
So alpha WebM goes through an explicit `libvpx-vp9` / `libvpx` decoder, everything else through
the stream's own. Only packets up to the first picture are read.
"""

from __future__ import annotations

from pathlib import Path

from bot.media.probe import IMAGE_KINDS, MediaError, describe_kind, sniff

_ALPHA_DECODERS = {"vp9": "libvpx-vp9", "vp8": "libvpx"}


def has_alpha_track(stream) -> bool:
    """WebM marks a VP8/VP9 track with an alpha side stream by the tag alpha_mode=1."""
    tags = {k.lower(): v for k, v in (stream.metadata or {}).items()}
    return tags.get("alpha_mode") == "1" and stream.codec_context.name in _ALPHA_DECODERS


def first_frame(path: Path | str):
    """A PIL image: RGBA when the video has transparency, else RGB."""
    import av
    from PIL import Image

    kind = sniff(path)
    refusal = f"This file is not a video I can read (it looks like {describe_kind(kind)})."
    if kind in IMAGE_KINDS:
        raise MediaError(refusal)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(refusal) from exc
    with container:
        if not container.streams.video:
            raise MediaError("This file has no video track.")
        stream = container.streams.video[0]
        alpha = has_alpha_track(stream)
        if alpha:
            decoder = av.CodecContext.create(_ALPHA_DECODERS[stream.codec_context.name], "r")
            if stream.codec_context.extradata:
                decoder.extradata = stream.codec_context.extradata
            decode = decoder.decode
        else:
            decoder, decode = None, lambda packet: packet.decode()
        try:
            for packet in container.demux(stream):
                for frame in decode(packet):
                    return _to_image(frame, alpha, Image)
            if decoder is not None:  # flush: libvpx may hold the first picture back
                for frame in decoder.decode(None):
                    return _to_image(frame, alpha, Image)
        except av.error.FFmpegError as exc:
            raise MediaError("This video is damaged: I could not decode its first frame.") from exc
    raise MediaError("This video has no frames I can decode.")


def _to_image(frame, alpha: bool, image_module):
    if alpha and frame.format.name.startswith("yuva"):
        return image_module.fromarray(frame.to_ndarray(format="rgba"), "RGBA")
    return image_module.fromarray(frame.to_ndarray(format="rgb24"), "RGB")
