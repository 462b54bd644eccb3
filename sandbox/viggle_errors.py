"""Viggle's error codes and the three envelopes its docs show for them.

The docs disagree on the envelope (`{"detail": {...}}`, `{"detail": "..."}`, top-level
`{"error_code", "message"}`), so the sandbox can answer in any of them and a client must parse all.
"""

from __future__ import annotations

from aiohttp import web

from sandbox.base import json_response

#: code -> (HTTP status, message, action), from the error-codes page
CODES: dict[str, tuple[int, str, str]] = {
    "CS-UORC01-006": (401, "Authentication required", "Include Authorization: Bearer sk-..."),
    "CS-UORC01-007": (401, "Invalid or expired API key", "Check your API key or create a new one"),
    "CS-UORC01-008": (402, "Insufficient credits to start this job", "Add credits to your account"),
    "CS-UORC01-001": (400, "Fast mode is temporarily unavailable", "Retry without fast=true"),
    "CS-UORC01-002": (400, "Request failed validation", "Check your request parameters"),
    "CS-ORIV-001": (400, "Reference image is required (PNG/JPG)", "Upload a PNG or JPG image"),
    "CS-ORIV-002": (400, "Driving video is required (MP4)", "Upload an MP4 video or provide scene_id"),
    "CS-ORIV-003": (400, "Video format not supported", "Use MP4, MOV or AVI"),
    "CS-ORIV-004": (400, "Video exceeds maximum duration", "Use a video under 5 minutes"),
    "CS-ORIV-005": (400, "Video file too large", "Use a video under 500MB"),
    "CS-ORIV-006": (400, "Video resolution too high", "Use a video under 4096x4096"),
    "CS-ORIV-007": (400, "Could not read video file", "Check the file is a valid, complete video"),
    "CS-ORIV-008": (400, "Character not found", "Check the character_id"),
    "CS-ORIV-009": (400, "Scene not found", "Check the scene_id"),
    "CS-ORIV-010": (400, "Scene preprocessing not complete", "Wait until the scene is ready"),
    "CS-ORIV-011": (400, "Invalid background mode", "Use original, solid or transparent"),
    "CS-ORIV-012": (400, "Invalid character_mapping JSON", "Send a JSON object of segment uuid -> character_id"),
}

#: the exact string the authentication page shows for a missing key
MISSING_KEY_TEXT = "API key required. Use Authorization: Bearer sk-xxx"

STYLES = ("nested", "string", "flat")


class ViggleError(Exception):
    """Raised anywhere in a handler; rendered once in the service's chosen envelope."""

    def __init__(self, code: str, message: str | None = None, *, status: int | None = None) -> None:
        default_status, default_message, self.action = CODES[code]
        self.code = code
        self.status = status or default_status
        self.message = message or default_message
        super().__init__(f"{code}: {self.message}")


def error_response(error: ViggleError, style: str) -> web.Response:
    if style == "string":
        text = MISSING_KEY_TEXT if error.code == "CS-UORC01-006" else error.message
        return json_response({"detail": text}, error.status)
    if style == "flat":
        return json_response({"error_code": error.code, "message": error.message}, error.status)
    return json_response({"detail": {"error_code": error.code, "message": error.message,
                                     "action": error.action}}, error.status)


def not_found(what: str) -> web.Response:
    """Unknown ids on GET/DELETE are undocumented; answer like FastAPI's HTTPException(404)."""
    return json_response({"detail": f"{what} not found"}, 404)
