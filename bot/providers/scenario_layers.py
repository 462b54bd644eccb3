"""What the user receives from a layers job: file names that say which layer is which, in the
model's order, and one preview image showing every layer side by side.

The preview is `bot.media.layers.layers_preview`: the first frame of each layer on a checkerboard
(so transparent parts read as transparent), labelled with its index and name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bot.media.layers import layers_preview_async

_EXT = {"video/webm": ".webm", "video/quicktime": ".mov", "video/mp4": ".mp4", "image/png": ".png",
        "image/webp": ".webp", "image/gif": ".gif", "image/jpeg": ".jpg"}


def slug(text: str, limit: int = 28) -> str:
    """'Foreground person (left)' -> 'foreground-person-left'."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-")


def layer_label(asset: dict[str, Any]) -> str:
    """What the layer holds, if Scenario says: its description, else a name in its metadata."""
    meta = asset.get("metadata") or {}
    for value in (asset.get("description"), meta.get("layerName"), meta.get("name"), asset.get("name"),
                  meta.get("label"), meta.get("description")):
        if isinstance(value, str) and value.strip():
            return value.strip()[:80]
    return ""


def output_index(asset: dict[str, Any], fallback: int) -> int:
    """Order within the job: `outputIndex` (top level or in metadata), else the assetIds position."""
    for value in (asset.get("outputIndex"), (asset.get("metadata") or {}).get("outputIndex")):
        if isinstance(value, int | float) and value >= 0:
            return int(value)
    return fallback


def layer_filename(index: int, asset: dict[str, Any]) -> str:
    """`layer-00-foreground-person.webm`, or `layer-00.webm` when the layer has no name."""
    ext = _EXT.get(str(asset.get("mimeType", "")).split(";")[0].strip().lower(), ".webm")
    name = slug(layer_label(asset))
    return f"layer-{index:02d}-{name}{ext}" if name else f"layer-{index:02d}{ext}"


def download_key(asset_id: str) -> str:
    """The asset id's short form for a Download button's custom_id ([a-z0-9_], at most 20)."""
    short = asset_id.removeprefix("asset_")
    return re.sub(r"[^a-z0-9_]", "", short.lower())[-20:] or "layer"


async def make_preview(videos: list[Path], dest: Path, labels: list[str]) -> Path:
    """The side-by-side image (first frame of each layer on a checkerboard), drawn in a thread."""
    return await layers_preview_async(videos, dest, labels=labels)
