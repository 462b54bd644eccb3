"""Checks `/viggle` runs before anything is spent: attachments, colours, models, mappings.

Pure functions returning the user's words on failure, so they are tested without Discord and the
cog stays a thin adapter. Each refusal says what was wrong and what to do instead.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from bot.models import SavedObject
from bot.outbound import OutboundPolicy, Refused
from bot.providers.base import strip_markers

MIB = 1024 * 1024
MODELS = ("V4_Preview", "V3_Preview")
BACKGROUND_MODES = ("original", "solid", "transparent")
IMAGE_EXTS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
VIDEO_EXTS = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm", ".avi": "video/x-msvideo"}
MAX_IMAGE_BYTES = 30 * MIB
MAX_VIDEO_BYTES = 500 * MIB


class Refusal(Exception):
    """A reason to refuse a command, phrased for the user."""


def clean_name(value: str | None, what: str) -> str:
    """A user's name for a character or scene: whitespace collapsed, anything looking like the
    bot's crash-recovery marker removed (it must not be forgeable), and never blank."""
    name = " ".join(strip_markers(value or "").split())
    if not name:
        raise Refusal(f"The {what} needs a name: it cannot be blank or only spaces.")
    return name


def attachment_params(att: Any) -> dict[str, Any]:
    return {"url": att.url, "filename": att.filename, "size": att.size, "content_type": att.content_type}


def check_attachment(att: Any, kind: str, label: str) -> None:
    """An image must be PNG/JPG, a video MP4/MOV/WebM/AVI, both within Viggle's sizes."""
    exts = IMAGE_EXTS if kind == "image" else VIDEO_EXTS
    ext = PurePosixPath(att.filename or "").suffix.lower()
    ctype = (att.content_type or "").split(";")[0].strip().lower()
    if ext not in exts and ctype not in exts.values():
        wanted = "a PNG or JPG image" if kind == "image" else "an MP4, MOV, WebM or AVI video"
        raise Refusal(f"`{att.filename}` does not look like {wanted}; {label} must be {wanted}.")
    limit = MAX_IMAGE_BYTES if kind == "image" else MAX_VIDEO_BYTES
    if att.size > limit:
        raise Refusal(f"`{att.filename}` is {att.size / MIB:.0f} MB; Viggle accepts at most {limit // MIB} MB.")
    if att.size == 0:
        raise Refusal(f"`{att.filename}` is empty.")


def check_link(url: str, label: str, policy: OutboundPolicy | None = None) -> str:
    """A link Viggle will fetch for us: http(s), and (with the bot's outbound policy) not at a
    private or reserved address. Names are resolved and checked again before the job submits."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Refusal(f"The {label} link must start with http:// or https://.")
    if policy is not None:
        try:
            policy.check_user_url(url)
        except Refused as exc:
            raise Refusal(f"The {label} link cannot be used: {exc.public}") from None
    return url


def one_input(att: Any, url: str | None, kind: str, label: str,
              policy: OutboundPolicy | None = None) -> dict[str, Any]:
    """Exactly one of an attachment or a link; the params the job stores for it."""
    if att is not None and url:
        raise Refusal(f"Give the {label} as an attachment or as a link, not both.")
    if att is not None:
        check_attachment(att, kind, f"the {label}")
        return {"attachment": attachment_params(att)}
    if url:
        return {"url": check_link(url, label, policy)}
    raise Refusal(f"Attach the {label} or give a link to it.")


def parse_bg_color(value: str | None, mode: str) -> str | None:
    """`R,G,B` with each 0–255, and only with the solid background."""
    if value is None or not value.strip():
        return None
    if mode != "solid":
        raise Refusal(f"`bg_color` only applies to the solid background; you chose `{mode}`. "
                      "Set `background_mode` to solid, or leave `bg_color` out.")
    parts = [p.strip() for p in value.strip().split(",")]
    try:
        rgb = [int(p) for p in parts]
    except ValueError:
        rgb = []
    if len(parts) != 3 or len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise Refusal(f"`bg_color` must be three numbers 0–255 as R,G,B (for example `0,255,0`), "
                      f"not `{value.strip()[:40]}`. Hex colours are not accepted.")
    return ",".join(str(c) for c in rgb)


def check_model(scene: SavedObject, requested: str | None) -> str:
    """A scene is bound to the model it was prepared with; the other model cannot render it."""
    bound = (scene.data or {}).get("model") or MODELS[0]
    if requested and requested != bound:
        raise Refusal(f"Scene “{scene.name}” was prepared with {bound}, so it cannot be rendered with "
                      f"{requested}. Leave `model` empty, or create the scene again with {requested}.")
    return bound


def parse_mapping(text: str) -> dict[str, str]:
    """The mapping JSON: an object of segment → character (both strings), at least one entry."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Refusal(f"`mapping` is not valid JSON ({exc.msg} at character {exc.pos + 1}). Write it like "
                      '`{"person_a1b2c3d4": "Alice", "person_e5f6a7b8": "Bob"}`.') from exc
    if not isinstance(value, dict) or not value:
        raise Refusal("`mapping` must be a JSON object of segment → character, like "
                      '`{"person_a1b2c3d4": "Alice"}`.')
    bad = [k for k, v in value.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise Refusal(f"In `mapping`, segment `{bad[0][:40]}` must map to a character name or id (a string).")
    return {k.strip(): v.strip() for k, v in value.items()}


def check_segments(mapping: dict[str, str], scene: SavedObject) -> None:
    segments = (scene.data or {}).get("segments") or []
    if not segments:
        raise Refusal(f"Scene “{scene.name}” has only one person, so it takes `character`, not `mapping`.")
    unknown = [k for k in mapping if k not in segments]
    if unknown:
        raise Refusal(f"Scene “{scene.name}” has no segment `{unknown[0][:40]}`. Its segments are: "
                      + ", ".join(f"`{s}`" for s in segments) + ".")


def find_saved(objects: list[SavedObject], value: str) -> SavedObject | None:
    """By id first, then by name (case-insensitive); the newest wins a name clash."""
    value = value.strip()
    for obj in objects:
        if obj.remote_id == value:
            return obj
    folded = value.casefold()
    return next((o for o in objects if o.name.casefold() == folded), None)


def describe(obj: SavedObject) -> str:
    """One autocomplete line: name, model and people for scenes, and readiness."""
    data = obj.data or {}
    bits = [obj.name]
    if obj.kind == "scene":
        bits.append(str(data.get("model") or MODELS[0]).replace("_Preview", ""))
        if data.get("segments"):
            bits.append(f"{len(data['segments'])} people")
    if obj.status != "ready":
        bits.append(obj.status or "pending")
    return " · ".join(bits)[:100]


def mapping_suggestions(typed: str, segments: list[str], characters: list[SavedObject]) -> list[tuple[str, str]]:
    """Autocomplete for `mapping`: what is typed so far plus the next unmapped segment given each
    ready character. Values stay within Discord's 100 characters (names, not ids, when shorter)."""
    try:
        current = json.loads(typed) if typed.strip() else {}
    except ValueError:
        current = {}
    if not isinstance(current, dict):
        current = {}
    out: list[tuple[str, str]] = []
    if current:
        value = json.dumps(current, ensure_ascii=False)
        if len(value) <= 100:
            out.append((f"Use this mapping ({len(current)} of {len(segments)} segments)", value))
    free = [s for s in segments if s not in current]
    if not free:
        return out
    seg = free[0]
    index = segments.index(seg) + 1
    for char in characters:
        if char.status != "ready":
            continue
        label = char.name if len(char.name) <= len(char.remote_id) else char.remote_id
        value = json.dumps({**current, seg: label}, ensure_ascii=False)
        if len(value) > 100:
            continue
        out.append((f"person {index} ({seg}) → {char.name}"[:100], value))
        if len(out) >= 25:
            break
    return out
