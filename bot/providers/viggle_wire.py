"""Viggle's JSON, read once: the three error envelopes, the optional `{"data": ...}` wrapper, and
the status words of characters, scenes and renders folded into `RemoteStatus`.

Pure functions (no I/O), so every documented shape can be tested without a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.models import RemotePhase, RemoteStatus
from bot.net import classify
from bot.providers import phrases
from bot.providers.base import ProviderError

#: our words for Viggle's error codes, where theirs are terse; the action comes back as a hint
FRIENDLY: dict[str, str] = {
    "CS-UORC01-001": "Viggle's fast mode is busy right now; run the render again without `fast`.",
    "CS-UORC01-008": "Insufficient credits to start this job.",
    "CS-ORCR-001": "Insufficient credits to start this job.",
    "CS-ORIV-001": "Viggle needs a PNG or JPG image of the character.",
    "CS-ORIV-002": "Viggle needs a driving video (MP4) or a scene.",
    "CS-ORIV-003": "Viggle does not support this video format; use MP4, MOV or WebM.",
    "CS-ORIV-004": "The video is too long for Viggle; keep it under 5 minutes.",
    "CS-ORIV-005": "The video file is too large for Viggle; keep it under 500 MB.",
    "CS-ORIV-006": "The video resolution is too high for Viggle; keep it under 4096×4096.",
    "CS-ORIV-007": "Viggle could not read the file; check it is a valid, complete video or image.",
    "CS-ORIV-008": "Viggle does not know that character (it may have been deleted).",
    "CS-ORIV-009": "Viggle does not know that scene (it may have been deleted).",
    "CS-ORIV-010": "That scene is still being prepared; wait until it is ready.",
    "CS-ORIV-011": "Invalid background mode; use original, solid or transparent.",
    "CS-ORIV-012": "Viggle refused the character mapping.",
}

_URLISH = re.compile(r"https?://\S+|sk-[A-Za-z0-9_\-]+|Bearer\s+\S+", re.IGNORECASE)


def safe_text(text: Any, limit: int = 300) -> str:
    """Provider text made fit to show: no URLs (maybe signed), no key-looking strings, bounded."""
    if text is None:
        return ""
    return _URLISH.sub("[redacted]", str(text)).strip()[:limit]


def unwrap(body: Any) -> Any:
    """One doc snapshot wraps objects as `{"data": {...}}`; the schema is flat. Accept both."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict) and len(body) <= 3 and \
            not {"id", "job_id", "status"} & body.keys():
        return body["data"]
    return body


def parse_error(body: Any) -> tuple[str | None, str, str | None]:
    """(code, message, action) from any of Viggle's error envelopes; message is safe to show."""
    body = unwrap(body)
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, dict):
            return (detail.get("error_code"), safe_text(detail.get("message")),
                    safe_text(detail.get("action")) or None)
        if isinstance(detail, str):
            return None, safe_text(detail), None
        if isinstance(detail, list) and detail:  # FastAPI's own 422 validation shape
            first = detail[0] if isinstance(detail[0], dict) else {}
            where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
            msg = safe_text(first.get("msg") or "invalid request")
            return None, f"{where}: {msg}" if where else msg, None
        if body.get("error_code") or body.get("message"):
            return body.get("error_code"), safe_text(body.get("message")), safe_text(body.get("action")) or None
        if isinstance(body.get("error"), str):
            return None, safe_text(body["error"]), None
    if isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        return None, safe_text(body), None
    return None, "", None


def error_for(status: int, body: Any, retry_after: str | None = None) -> ProviderError:
    """The taxonomy error for a non-2xx Viggle answer, with the most specific words we have."""
    code, message, action = parse_error(body)
    text = FRIENDLY.get(code or "", message) or message
    if code in ("CS-UORC01-008", "CS-ORCR-001") and message:
        text = message
    if code and code not in (text or ""):
        text = f"{text} ({code})" if text else f"Viggle refused the request ({code})."
    if status in (401, 403) and not text:
        text = "The API key was refused."
    error = classify(status, text, retry_after=retry_after, hint=action)
    error.hint = error.hint or (action if status == 402 else None)
    error.code = code  # type: ignore[attr-defined]
    error.status = status  # type: ignore[attr-defined]
    return error


#: error codes whose meaning decides the taxonomy when Viggle sends them inside an HTTP 200
_CODE_STATUS = {"CS-UORC01-006": 401, "CS-UORC01-007": 401, "CS-ORAU-001": 401, "CS-ORAU-002": 401,
                "CS-UORC01-008": 402, "CS-ORCR-001": 402}
_ID_KEYS = ("job_id", "character_id", "scene_id", "id")
_ERROR_WORDS = ("credit", "api key", "error", "invalid", "required", "not found", "failed", "denied", "exceed")


def envelope_error(body: Any) -> ProviderError | None:
    """An error envelope that arrived with HTTP 200 (seen in Viggle's older snippets, which test
    `result.get("error_code")`), as the error its code means; None for a normal answer. An answer
    that names an object (`job_id`, `id`...) is never an envelope: failed renders carry
    `error_code` too."""
    body = unwrap(body)
    if not isinstance(body, dict) or any(body.get(k) for k in _ID_KEYS):
        return None
    detail = body.get("detail")
    errorish = isinstance(detail, str) and any(w in detail.lower() for w in _ERROR_WORDS)
    if not (body.get("error_code") or (isinstance(detail, dict) and detail.get("error_code")) or errorish
            or (isinstance(body.get("error"), str) and "status" not in body)):
        return None  # e.g. `{"detail": "Character deleted"}`: a plain success message
    code, message, _ = parse_error(body)
    low = message.lower()
    status = _CODE_STATUS.get(code or "")
    if status is None:
        status = 402 if "credit" in low else 401 if ("api key" in low or "authoriz" in low) else 400
    return error_for(status, body)


def error_code(error: BaseException) -> str | None:
    return getattr(error, "code", None)


# -- statuses -----------------------------------------------------------------------------------

OBJECT_PHASES = {"pending": RemotePhase.QUEUED, "queued": RemotePhase.QUEUED,
                  "processing": RemotePhase.RUNNING, "ready": RemotePhase.SUCCEEDED,
                  "complete": RemotePhase.SUCCEEDED, "completed": RemotePhase.SUCCEEDED,
                  "failed": RemotePhase.FAILED, "cancelled": RemotePhase.CANCELLED,
                  "canceled": RemotePhase.CANCELLED}

_RENDER_PHASES = {"queued": RemotePhase.QUEUED, "pending": RemotePhase.QUEUED,
                  "processing": RemotePhase.RUNNING, "rendering": RemotePhase.RUNNING,
                  "merging": RemotePhase.RUNNING, "complete": RemotePhase.SUCCEEDED,
                  "completed": RemotePhase.SUCCEEDED, "failed": RemotePhase.FAILED,
                  "cancelled": RemotePhase.CANCELLED, "canceled": RemotePhase.CANCELLED}


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A character or scene as a command needs it now (readiness, thumbnail, length)."""

    status: str
    thumbnail_url: str | None = None
    duration: float | None = None


def object_info(body: Any) -> ObjectInfo:
    body = unwrap(body)
    if not isinstance(body, dict):
        return ObjectInfo("pending")
    return ObjectInfo(status=str(body.get("status") or "pending").lower(),
                      thumbnail_url=body.get("thumbnail_url") or None,
                      duration=_number(body.get("duration_seconds")))


def credit_balance(body: Any) -> float | None:
    body = unwrap(body)
    return _number(body.get("balance", body.get("credits"))) if isinstance(body, dict) else None


def object_status(body: Any, what: str) -> RemoteStatus:
    """A character or scene (`pending | processing | ready | failed`) as a RemoteStatus.
    `data` keeps the fields the bot records (thumbnail, duration, segments, model)."""
    body = unwrap(body)
    if not isinstance(body, dict):
        return RemoteStatus(RemotePhase.RUNNING, detail="waiting for Viggle")
    raw = str(body.get("status") or "pending").lower()
    phase = OBJECT_PHASES.get(raw, RemotePhase.RUNNING)
    keep = ("id", "name", "status", "thumbnail_url", "duration_seconds", "fps", "total_frames", "width",
            "height", "segments", "model", "background_mode", "credits_used")
    data = {k: body[k] for k in keep if body.get(k) is not None}
    if phase is RemotePhase.FAILED:
        reason = safe_text(body.get("error_message") or body.get("error")) or f"Viggle could not prepare the {what}."
        return RemoteStatus(phase, error=f"Viggle could not prepare the {what}: {reason}",
                            hint=_object_hint(what), raw_status=raw, data=data)
    detail = phrases.viggle_object(raw, what)
    thumb = body.get("thumbnail_url")
    return RemoteStatus(phase, progress=1.0 if phase is RemotePhase.SUCCEEDED else None, detail=detail,
                        preview_url=thumb if isinstance(thumb, str) else None, raw_status=raw, data=data)


def _object_hint(what: str) -> str:
    if what == "character":
        return "Use a clear, front-facing, well-lit picture of one person."
    return "Use a clip with a clearly visible person moving."


def render_status(body: Any) -> RemoteStatus:
    """A render's status JSON: progress_pct, checkpoint, cdn_url/mask_cdn_url, error_code/message."""
    body = unwrap(body)
    if not isinstance(body, dict):
        return RemoteStatus(RemotePhase.RUNNING, detail="waiting for Viggle")
    raw = str(body.get("status") or "queued").lower()
    phase = _RENDER_PHASES.get(raw, RemotePhase.RUNNING)
    pct = _number(body.get("progress_pct"))
    if pct is None and isinstance(body.get("progress"), dict):  # the "v1 compat progress object"
        pct = _number(body["progress"].get("percent") or body["progress"].get("pct"))
    progress = max(0.0, min(1.0, pct / 100)) if pct is not None else None
    checkpoint = body.get("checkpoint")
    cdn = body.get("cdn_url") or body.get("video_url") or body.get("result_url")
    data = {"status": raw, "cdn_url": cdn, "mask_cdn_url": body.get("mask_cdn_url") or body.get("alpha_url"),
            "mode": body.get("mode"), "checkpoint": checkpoint}
    if phase is RemotePhase.FAILED:
        code = body.get("error_code")
        reason = safe_text(body.get("error_message") or body.get("error")) or "no reason given"
        text = f"Viggle could not render this: {reason}" + (f" ({code})" if code else "")
        return RemoteStatus(phase, progress=progress, error=text, raw_status=raw, data=data,
                            hint="Try another clip, or run it again later.")
    if phase is RemotePhase.SUCCEEDED and not cdn:
        # complete but no link yet: keep polling rather than deliver nothing
        return RemoteStatus(RemotePhase.RUNNING, progress=progress, detail="finishing up", raw_status=raw)
    words = phrases.viggle_render(raw, str(checkpoint) if checkpoint else None)
    queue = body.get("queue_position")
    return RemoteStatus(phase, progress=progress if phase is not RemotePhase.QUEUED or progress else None,
                        queue_position=int(queue) if isinstance(queue, int) and queue > 0 else None,
                        detail=words, raw_status=raw, data=data)
