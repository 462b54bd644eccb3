"""Request validation of the Scenario sandbox: pure functions, so the rules read like the contract.

Each returns the cleaned values or raises `Rejected(reason)`, which the API answers as
`400 {"reason": ..., "trace_id": ...}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.scenario_records import LAYERS_MODEL_INPUTS
from sandbox.scenario_s3 import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE

UPLOAD_KINDS = {"3d", "asset", "audio", "avatar", "image", "model", "text", "video"}
VIDEO_TYPES = {"video/mp4", "video/webm", "video/quicktime"}


class Rejected(Exception):
    """A 400 with this reason."""


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


@dataclass(frozen=True)
class UploadRequest:
    file_name: str
    content_type: str
    file_size: int
    kind: str
    parts: int
    asset_options: dict[str, Any] | None


def check_upload(body: dict[str, Any]) -> UploadRequest:
    """`POST /uploads` (multipart form only; the `url`/civitai/huggingface ingests are not emulated)."""
    if any(body.get(k) for k in ("url", "civitaiModelUrl", "huggingFaceModelName")):
        raise Rejected("The sandbox only emulates multipart uploads (fileName, contentType, fileSize, parts)")
    file_name, content_type, kind = body.get("fileName"), body.get("contentType"), body.get("kind")
    if not isinstance(file_name, str) or not file_name.strip():
        raise Rejected("fileName is required for multipart upload")
    if not isinstance(content_type, str) or not content_type:
        raise Rejected("contentType is required for multipart upload")
    if kind not in UPLOAD_KINDS:
        raise Rejected(f"kind must be one of {', '.join(sorted(UPLOAD_KINDS))}")
    if kind != "video":
        raise Rejected("The sandbox only emulates kind=video uploads")
    if content_type not in VIDEO_TYPES:
        raise Rejected(f"Unsupported contentType {content_type!r} for a video (use {', '.join(sorted(VIDEO_TYPES))})")
    file_size, parts = _whole_number(body.get("fileSize")), _whole_number(body.get("parts"))
    if file_size is None or file_size <= 0:
        raise Rejected("fileSize must be a positive number of bytes")
    if parts is None or not 1 <= parts <= MAX_PARTS:
        raise Rejected(f"parts must be a whole number between 1 and {MAX_PARTS}")
    if file_size <= (parts - 1) * MIN_PART_SIZE:
        raise Rejected(f"Too many parts for fileSize {file_size}: every part but the last must be at least "
                       f"{MIN_PART_SIZE} bytes (5 MiB), so at most {max(1, -(-file_size // MIN_PART_SIZE))} "
                       "parts")
    if file_size > parts * MAX_PART_SIZE:
        raise Rejected("Too few parts: a part cannot exceed 5 GiB")
    options = body.get("assetOptions")
    if options is not None and not isinstance(options, dict):
        raise Rejected("assetOptions must be an object")
    return UploadRequest(file_name.strip(), content_type, file_size, kind, parts, options)


@dataclass(frozen=True)
class LayersRequest:
    video: str
    separation_instruction: str
    max_layers: int

    def echo(self) -> dict[str, Any]:
        return {"video": self.video, "separationInstruction": self.separation_instruction,
                "maxLayers": self.max_layers}


def check_layers_inputs(body: Any) -> LayersRequest:
    """The model's inputs, passed verbatim by `generate.run_model(body=...)`.

    Unknown names are refused (a snake_case `max_layers` would otherwise be silently ignored)."""
    if not isinstance(body, dict):
        raise Rejected("The request body must be a JSON object of model inputs")
    known = {i["name"] for i in LAYERS_MODEL_INPUTS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise Rejected(f"Unknown input(s) {', '.join(unknown)}; this model takes {', '.join(sorted(known))}")
    video = body.get("video")
    if not isinstance(video, str) or not video:
        raise Rejected("Input video is required (an asset id)")
    instruction = body.get("separationInstruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise Rejected("Input separationInstruction is required")
    raw = body.get("maxLayers", 6)
    max_layers = _whole_number(raw)
    if max_layers is None or not 1 <= max_layers <= 10:
        raise Rejected(f"Input maxLayers must be a whole number between 1 and 10 (got {raw!r})")
    return LayersRequest(video, instruction.strip(), max_layers)
