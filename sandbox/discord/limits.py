"""Discord's message limits, checked before anything is stored, answering 50035 with the same
error paths the real API uses (so the bot's error handling meets realistic bodies)."""

from __future__ import annotations

from typing import Any

from .errors import ApiError, FormErrors

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_FILES = 10
MAX_ROWS = 5
MAX_BUTTONS_PER_ROW = 5
MAX_CHOICES = 25
#: whole-request cap when sending a message (sum of all files), unless the per-file limit is larger
REQUEST_CAP = 25 * 1024 * 1024

_EMBED_TEXT = {"title": 256, "description": 4096}


def embed_chars(embed: dict) -> int:
    """What counts towards the 6000-character total: title, description, field names and values,
    footer text and author name."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
    for f in embed.get("fields") or []:
        total += len(f.get("name") or "") + len(f.get("value") or "")
    return total


def check_embeds(embeds: list[dict], errors: FormErrors) -> None:
    if len(embeds) > MAX_EMBEDS:
        errors.max_length(("embeds",), MAX_EMBEDS)
        return
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in _EMBED_TEXT.items():
            if len(embed.get(key) or "") > limit:
                errors.max_length(("embeds", i, key), limit)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.max_length(("embeds", i, "fields"), 25)
        for j, f in enumerate(fields):
            if not f.get("name"):
                errors.add(("embeds", i, "fields", j, "name"), "BASE_TYPE_REQUIRED", "This field is required")
            elif len(f["name"]) > 256:
                errors.max_length(("embeds", i, "fields", j, "name"), 256)
            if not f.get("value"):
                errors.add(("embeds", i, "fields", j, "value"), "BASE_TYPE_REQUIRED", "This field is required")
            elif len(f["value"]) > 1024:
                errors.max_length(("embeds", i, "fields", j, "value"), 1024)
        if len((embed.get("footer") or {}).get("text") or "") > 2048:
            errors.max_length(("embeds", i, "footer", "text"), 2048)
        if len((embed.get("author") or {}).get("name") or "") > 256:
            errors.max_length(("embeds", i, "author", "name"), 256)
        total += embed_chars(embed)
    if total > MAX_EMBED_TOTAL:
        errors.add(("embeds",), "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}")


def check_components(rows: list[dict], errors: FormErrors) -> None:
    """Classic action rows: ≤5 rows, ≤5 buttons (or one select) per row, custom_id 1..100 and
    unique within the message, button labels ≤80."""
    if len(rows) > MAX_ROWS:
        errors.max_length(("components",), MAX_ROWS)
        return
    seen: set[str] = set()

    def check_custom_id(path: tuple, item: dict) -> None:
        cid = item.get("custom_id")
        if cid is None:
            if item.get("type") == 2 and item.get("style") not in (5, 6):
                errors.add((*path, "custom_id"), "BASE_TYPE_REQUIRED", "This field is required")
            return
        if not 1 <= len(cid) <= 100:
            errors.add((*path, "custom_id"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if cid in seen:
            errors.add((*path, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
        seen.add(cid)

    for i, row in enumerate(rows):
        if row.get("type") != 1:
            check_custom_id(("components", i), row)
            continue
        children = row.get("components") or []
        if not children:
            errors.add(("components", i, "components"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        if len(children) > MAX_BUTTONS_PER_ROW:
            errors.add(("components", i, "components"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        if any(c.get("type") in (3, 5, 6, 7, 8) for c in children) and len(children) > 1:
            errors.add(("components", i, "components"), "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                       "The specified component exceeds the maximum width")
        for j, child in enumerate(children):
            path = ("components", i, "components", j)
            if len(child.get("label") or "") > 80:
                errors.max_length((*path, "label"), 80)
            check_custom_id(path, child)


def check_message(payload: dict[str, Any], *, n_files: int, kept_attachments: int = 0, creating: bool = True) -> None:
    """Raise 50035 (or 50006 for an empty create) for a create/edit body. `n_files` new uploads."""
    errors = FormErrors()
    content = payload.get("content")
    if content is not None and len(content) > MAX_CONTENT:
        errors.max_length(("content",), MAX_CONTENT)
    if payload.get("embeds"):
        check_embeds(payload["embeds"], errors)
    if payload.get("components"):
        check_components(payload["components"], errors)
    if n_files + kept_attachments > MAX_FILES:
        errors.max_length(("attachments",), MAX_FILES)
    errors.raise_if_any()
    if creating and not (content or payload.get("embeds") or n_files or payload.get("components")
                         or payload.get("sticker_ids") or payload.get("poll")):
        raise ApiError(400, 50006, "Cannot send an empty message")


def check_choices(choices: list[dict]) -> None:
    errors = FormErrors()
    if len(choices) > MAX_CHOICES:
        errors.max_length(("data", "choices"), MAX_CHOICES)
    for i, c in enumerate(choices[:MAX_CHOICES]):
        if not 1 <= len(str(c.get("name", ""))) <= 100:
            errors.add(("data", "choices", i, "name"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    errors.raise_if_any()
