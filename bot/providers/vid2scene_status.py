"""vid2scene's words, typed: job status strings, `percent_complete`, and its four error-body shapes.

Pure functions (no I/O) so every documented form, and the undocumented ones the server really
sends (`Queued - position: 3`, lowercase RQ states, `Not found`), is unit-tested in isolation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from bot.models import RemotePhase, RemoteStatus

_QUEUED_AT = re.compile(r"^queued\s*(?:[-:–]\s*)?(?:position\s*[:#]?\s*(\d+))?\s*$", re.IGNORECASE)
_QUEUED_WORDS = {"queued", "deferred", "scheduled", "pending"}
_RUNNING_WORDS = {"processing video", "processing", "started", "running"}
_CANCELLED_WORDS = {"canceled", "cancelled", "stopped"}
_SECRETISH = re.compile(r"https?://\S+|(?:sig|se|sp|sv|sr|st|skoid)=[^&\s]+", re.IGNORECASE)


def parse_percent(value: Any) -> float | None:
    """`percent_complete` as a 0..1 fraction: null until the first preview, then a float (37.5),
    sometimes an int or a numeric string; anything else or NaN is 'unknown'."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return max(0.0, min(100.0, number)) / 100.0


def has_result(body: dict[str, Any]) -> bool:
    return bool(body.get("has_spz") or body.get("has_ply"))


def parse_job(body: dict[str, Any]) -> RemoteStatus:
    """One `GET /jobs/{id}/` answer (or submit-job's 201 body) as a RemoteStatus.

    Follows the server's own order: files present means finished whatever the words say; a
    preview means training ('Generating 3D scene', which can last forever when a worker dies, so
    the engine's deadline is what ends it); unknown words keep us polling rather than failing."""
    raw = str(body.get("status") or "").strip()
    word = raw.lower()
    progress = parse_percent(body.get("percent_complete"))
    data = {"has_ply": bool(body.get("has_ply")), "has_spz": bool(body.get("has_spz")),
            "title": str(body.get("title") or ""), "public": bool(body.get("public"))}
    if word == "finished" or (has_result(body) and word not in ("failed",)):
        if has_result(body):
            return RemoteStatus(RemotePhase.SUCCEEDED, progress=1.0, raw_status=raw, data=data)
        if raw == "Finished":  # files flip with the status; be lenient if the flags lag behind
            return RemoteStatus(RemotePhase.SUCCEEDED, progress=1.0, raw_status=raw,
                                data={**data, "has_spz": True})
        return RemoteStatus(RemotePhase.FAILED, raw_status=raw,
                            error="vid2scene finished the job without producing a 3D scene.",
                            hint="Try a steadier video that circles the subject.")
    if word == "failed":
        return RemoteStatus(RemotePhase.FAILED, raw_status=raw,
                            error="vid2scene could not reconstruct a 3D scene from this video.",
                            hint="Use a sharp, well-lit video that moves slowly around the subject.")
    if word == "not found":
        return RemoteStatus(RemotePhase.FAILED, raw_status=raw,
                            error="vid2scene lost track of this job before it produced a scene.")
    if word in _CANCELLED_WORDS:
        return RemoteStatus(RemotePhase.CANCELLED, raw_status=raw)
    match = _QUEUED_AT.match(raw)
    if match or word in _QUEUED_WORDS:
        position = int(match.group(1)) if match and match.group(1) else None
        detail = "Waiting in vid2scene's queue" if position else "Queued at vid2scene, starting soon"
        return RemoteStatus(RemotePhase.QUEUED, queue_position=position or None, raw_status=raw,
                            detail=detail, data=data)
    if word == "generating 3d scene":
        return RemoteStatus(RemotePhase.RUNNING, progress=progress, raw_status=raw,
                            detail="Training the 3D scene", data=data)
    if word in _RUNNING_WORDS:
        return RemoteStatus(RemotePhase.RUNNING, progress=progress, raw_status=raw,
                            detail="Processing the video", data=data)
    # a word this client has never seen: keep polling; the per-kind deadline bounds the wait
    return RemoteStatus(RemotePhase.RUNNING, progress=progress, raw_status=raw,
                        detail=_safe(raw)[:60] or None, data=data)


def _safe(text: str) -> str:
    """Drop anything that could be a signed URL or SAS parameter before showing a message."""
    return _SECRETISH.sub("[link]", text).strip()


def error_message(body: Any, status: int) -> str:
    """The safe text of any of vid2scene's error bodies: `{"error"}`, `{"success": false,
    "error_message"}`, DRF's `{"detail"}`, DRF field errors `{"field": ["..."]}`, Azure XML, or HTML."""
    text = ""
    if isinstance(body, dict):
        for key in ("error_message", "error", "detail", "message"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                text = value
                break
        else:
            parts = []
            for key, value in body.items():
                if key == "success":
                    continue
                if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                    parts.append(f"{key}: {' '.join(value)}")
            text = "; ".join(parts)
    elif isinstance(body, str):
        code = re.search(r"<Code>([^<]+)</Code>", body)
        if code:
            text = f"storage error {code.group(1)}"
        elif body.lstrip().startswith("<"):
            text = ""  # Django's HTML error page says nothing useful
        else:
            text = body.strip().splitlines()[0] if body.strip() else ""
    text = _safe(text)[:300]
    return text or f"vid2scene answered HTTP {status}"


def azure_error_code(body: Any) -> str | None:
    """`AuthenticationFailed` etc. from an Azure Storage XML error body."""
    if isinstance(body, str):
        match = re.search(r"<Code>([^<]+)</Code>", body)
        if match:
            return match.group(1).strip()
    return None


def strip_marker(title: str) -> str:
    """A remote title without the `[vb:<job id>]` tag the bot adds for crash recovery."""
    return re.sub(r"\s*\[vb:[a-z0-9]+\]\s*$", "", title or "").strip()


@dataclass(frozen=True, slots=True)
class SceneDetails:
    """A scene job as /splat shows it, so no cog reads vid2scene's JSON."""

    job_id: str
    title: str
    status: str
    percent: float | None
    public: bool
    has_ply: bool
    has_spz: bool
    reconstruction_method: str
    gaussians: int | None
    steps: int | None
    remove_background: bool
    camera_type: str | None

    @property
    def finished(self) -> bool:
        return self.status == "Finished"


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def scene_details(body: dict[str, Any]) -> SceneDetails:
    camera = body.get("camera_data")
    return SceneDetails(
        job_id=str(body.get("job_id") or ""),
        title=strip_marker(str(body.get("title") or "")),
        status=str(body.get("status") or "?"),
        percent=parse_percent(body.get("percent_complete")),
        public=bool(body.get("public")),
        has_ply=bool(body.get("has_ply")),
        has_spz=bool(body.get("has_spz")),
        reconstruction_method=str(body.get("reconstruction_method") or "glomap"),
        gaussians=_int_or_none(body.get("training_max_num_gaussians")),
        steps=_int_or_none(body.get("training_num_steps")),
        remove_background=bool(body.get("remove_background")),
        camera_type=camera.get("cameraType") if isinstance(camera, dict) else None,
    )
