"""What the Scenario sandbox remembers (uploads, jobs, assets) and their wire JSON.

Why a module of its own: the JSON shapes are the contract the official SDK parses (camelCase, ISO
timestamps, required fields present), so they live in one place next to the records they describe.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OWNER_ID = "proj_SandboxProject0000000001"
AUTHOR_ID = "5f1d0c0ffee0000000000000000000aa"
LAYERS_MODEL_ID = "model_scenario-video-layers-extractor"
TERMINAL = frozenset({"success", "failure", "canceled"})
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """Opaque ids shaped like Scenario's (`job_ocZCnG1Df35XRL1QyCZSRxAG8`)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def iso(ts: float) -> str:
    """`2023-02-03T11:19:41.579Z`"""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class UploadRecord:
    id: str
    file_name: str
    content_type: str
    file_size: int
    kind: str
    parts_count: int
    job_id: str
    created: float
    parts: list[dict[str, Any]]
    asset_options: dict[str, Any] | None = None
    status: str = "pending"
    updated: float = 0.0
    entity_id: str | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "authorId": AUTHOR_ID, "ownerId": OWNER_ID, "createdAt": iso(self.created),
            "updatedAt": iso(self.updated or self.created), "fileName": self.file_name,
            "originalFileName": self.file_name, "kind": self.kind, "source": "multipart", "status": self.status,
            "contentType": self.content_type, "fileSize": self.file_size, "partsCount": self.parts_count,
            "jobId": self.job_id, "parts": self.parts}
        if self.asset_options is not None:
            data["assetOptions"] = self.asset_options
        if self.entity_id:
            data["entityId"] = self.entity_id
        if self.error_message:
            data["errorMessage"] = self.error_message
        return data


@dataclass
class JobRecord:
    id: str
    job_type: str  # "custom" for model runs, "upload" for the job behind an upload
    created: float
    input: dict[str, Any]
    status: str = "queued"
    updated: float = 0.0
    history: list[tuple[str, float]] = field(default_factory=list)
    progress: float = 0.0
    run_started: float | None = None  # when in-progress began; progress is derived from it on read
    run_seconds: float = 1.0
    asset_ids: list[str] = field(default_factory=list)
    output: dict[str, Any] | None = None
    error: str | None = None
    hint: str | None = None
    cu_cost: float | None = None

    def set_status(self, status: str, now: float, progress: float | None = None) -> None:
        self.status, self.updated = status, now
        self.history.append((status, now))
        if progress is not None:
            self.progress = progress

    def current_progress(self, now: float) -> float:
        if self.status == "in-progress" and self.run_started is not None:
            share = min(1.0, max(0.0, (now - self.run_started) / max(self.run_seconds, 1e-6)))
            return round(0.05 + 0.85 * share, 3)  # a stuck job hangs at 0.9, like a hung worker
        return self.progress

    def to_json(self, now: float) -> dict[str, Any]:
        metadata: dict[str, Any] = {"input": self.input}
        if self.asset_ids:
            metadata["assetIds"] = list(self.asset_ids)
        if self.output is not None:
            metadata["output"] = self.output
        if self.error:
            metadata["error"] = self.error
        if self.hint:
            metadata["hint"] = self.hint
        data: dict[str, Any] = {
            "jobId": self.id, "jobType": self.job_type, "status": self.status,
            "progress": self.current_progress(now), "metadata": metadata,
            "statusHistory": [{"status": s, "date": iso(t)} for s, t in self.history],
            "createdAt": iso(self.created), "updatedAt": iso(self.updated or self.created),
            "authorId": AUTHOR_ID, "ownerId": OWNER_ID}
        if self.cu_cost is not None:
            data["billing"] = {"cuCost": self.cu_cost, "cuDiscount": 0}
        return data


@dataclass
class AssetRecord:
    id: str
    path: Path
    mime_type: str
    properties: dict[str, Any]
    source: str  # "uploaded-video" or "video2video"
    created: float
    kind: str = "video"
    output_index: int | None = None
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self, url: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "authorId": AUTHOR_ID, "ownerId": OWNER_ID, "createdAt": iso(self.created),
            "updatedAt": iso(self.created), "kind": self.kind, "mimeType": self.mime_type, "url": url,
            "status": "success", "privacy": "private", "source": self.source, "tags": [], "collectionIds": [],
            "editCapabilities": [], "isHidden": False, "nsfw": [],
            "metadata": {"kind": self.kind, "type": self.source, **self.metadata},
            "properties": self.properties}
        if self.output_index is not None:
            data["outputIndex"] = self.output_index
        if self.description is not None:
            data["description"] = self.description
        return data


#: the model's published inputs; the generate endpoint validates against these names
LAYERS_MODEL_INPUTS: list[dict[str, Any]] = [
    {"name": "video", "type": "file", "kind": "video", "label": "Video", "required": {"always": True},
     "parent": True, "description": "The video to split into layers (an asset id)."},
    {"name": "separationInstruction", "type": "string", "label": "Separation instruction",
     "required": {"always": True}, "minLength": 1,
     "description": "Describe the objects or the rule for splitting them, not the scene."},
    {"name": "maxLayers", "type": "number", "label": "Max layers", "default": 6, "min": 1, "max": 10, "step": 1,
     "costImpact": True, "description": "Maximum number of layers; the model may stop sooner. More layers cost "
     "more."},
]


def layers_model_json(created: float) -> dict[str, Any]:
    return {
        "id": LAYERS_MODEL_ID, "name": "Video to Layers", "type": "custom", "custom": False, "source": "scenario",
        "status": "trained", "privacy": "public", "capabilities": ["video2video"], "tags": ["video", "layers"],
        "collectionIds": [], "exampleAssetIds": [], "trainingImagesNumber": 0, "createdAt": iso(created),
        "updatedAt": iso(created), "shortDescription": "Split a video into transparent layers.",
        "inputs": LAYERS_MODEL_INPUTS}


def layer_cost(max_layers: int) -> int:
    """Sandbox pricing (undocumented upstream): 20 CU base + 5 CU per allowed layer."""
    return 20 + 5 * max_layers
