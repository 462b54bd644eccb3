"""A contact sheet for Scenario's video layers: first frames side by side, transparency visible.

A layer is mostly transparent, so it is drawn over a grey checkerboard (as image editors do) and
a user can see at a glance which part of the scene each layer holds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.media.frames import first_frame

CHECKER = ((204, 204, 204), (153, 153, 153))  # light/dark squares
CHECKER_SIZE = 8
BACKGROUND = (47, 49, 54)  # Discord's dark theme, so the strip blends into the chat
LABEL_COLOR = (235, 235, 235)
GAP = 8
LABEL_HEIGHT = 20


def checkerboard(width: int, height: int, size: int = CHECKER_SIZE):
    """An RGB grey checkerboard of the given size."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width]
    dark = ((yy // size + xx // size) % 2).astype(bool)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[~dark], pixels[dark] = CHECKER
    return Image.fromarray(pixels, "RGB")


def _tile(path: Path, tile_height: int):
    from PIL import Image

    frame = first_frame(path)
    if frame.mode == "RGBA":
        base = checkerboard(frame.width, frame.height)
        base.paste(frame, (0, 0), frame)  # alpha-composite onto the checkerboard
        frame = base
    width = max(1, round(frame.width * tile_height / frame.height))
    return frame.resize((width, tile_height), Image.Resampling.LANCZOS) if frame.height != tile_height else frame


def layers_preview(videos: list[Path], dest: Path, *, labels: list[str] | None = None, tile_height: int = 180) -> Path:
    """One PNG: the first frame of each layer in order, on a checkerboard, with its label underneath."""
    from PIL import Image, ImageDraw

    if not videos:
        raise ValueError("no layers to preview")
    labels = list(labels) if labels is not None else [f"Layer {i + 1}" for i in range(len(videos))]
    tiles = [_tile(Path(v), tile_height) for v in videos]
    width = sum(t.width for t in tiles) + GAP * (len(tiles) + 1)
    sheet = Image.new("RGB", (width, tile_height + LABEL_HEIGHT + 2 * GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    x = GAP
    for tile, label in zip(tiles, labels + [""] * len(tiles), strict=False):
        sheet.paste(tile, (x, GAP))
        text = _fit_text(draw, label, tile.width)
        text_width = draw.textlength(text)
        draw.text((x + (tile.width - text_width) / 2, GAP + tile_height + 4), text, fill=LABEL_COLOR)
        x += tile.width + GAP
    dest = Path(dest)
    sheet.save(dest, format="PNG", optimize=True)
    return dest


def _fit_text(draw, text: str, width: int) -> str:
    """Shorten a label with an ellipsis so it stays under its own tile."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..." if text else ""


async def layers_preview_async(videos: list[Path], dest: Path, **kwargs) -> Path:
    return await asyncio.to_thread(layers_preview, videos, dest, **kwargs)
