"""What the Viggle sandbox remembers: characters, scenes, render jobs and built-in templates.

Each record renders itself in the shape the docs show, so handlers stay about HTTP.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.viggle_errors import ViggleError

MODELS = ("V4_Preview", "V3_Preview")
BACKGROUND_MODES = {"original": "original", "inpaint": "original", "solid": "solid", "transparent": "transparent"}
RENDER_STATES = ("queued", "processing", "rendering", "merging", "complete")
TERMINAL = ("complete", "failed", "cancelled")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def new_uuid() -> str:
    return str(uuid.uuid4())


def short_id(prefix: str, full: str) -> str:
    """Docs show job ids like `char_550e8400e29b`: a prefix and the first 12 hex digits."""
    return f"{prefix}_{full.replace('-', '')[:12]}"


class Ledger:
    """The account's credit balance: charged when a job is accepted, refunded on cancel or failure."""

    def __init__(self, balance: float, clock: Callable[[], float]) -> None:
        self.clock, self.balance, self.updated_at = clock, balance, clock()
        self.charges = 0  # how many times the account was charged (refunds do not undo the count)

    def set(self, amount: float) -> None:
        self.balance, self.updated_at = round(float(amount), 4), self.clock()

    def charge(self, amount: float) -> None:
        if amount > self.balance + 1e-9:
            raise ViggleError("CS-UORC01-008", f"Insufficient credits: this job needs {amount:g}, "
                              f"balance is {self.balance:g}")
        self.set(self.balance - amount)
        self.charges += 1

    def refund(self, amount: float) -> None:
        self.set(self.balance + amount)


@dataclass
class Character:
    id: str
    name: str
    created_at: float
    status: str = "pending"
    credits_used: float = 1
    error: str | None = None
    error_message: str | None = None
    completed_at: float | None = None

    @property
    def job_id(self) -> str:
        return short_id("char", self.id)

    def to_json(self, thumbnail_url: str | None) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "job_id": self.job_id,
                "error": self.error, "error_message": self.error_message, "thumbnail_url": thumbnail_url,
                "credits_used": self.credits_used, "created_at": iso(self.created_at),
                "completed_at": iso(self.completed_at)}


@dataclass
class Scene:
    id: str
    name: str
    created_at: float
    model: str
    background_mode: str
    duration: float
    fps: float
    frames: int
    width: int
    height: int
    credits_used: float = 0
    status: str = "pending"
    segments: list[dict[str, str]] = field(default_factory=list)
    error_message: str | None = None
    completed_at: float | None = None

    @property
    def job_id(self) -> str:
        return short_id("scene", self.id)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status,
                "duration_seconds": round(self.duration, 2), "fps": round(self.fps, 3),
                "total_frames": self.frames, "width": self.width, "height": self.height, "job_id": self.job_id,
                "error_message": self.error_message, "credits_used": self.credits_used,
                "created_at": iso(self.created_at), "completed_at": iso(self.completed_at)}


@dataclass
class RenderJob:
    job_id: str
    mode: str
    model: str
    background_mode: str
    bg_color: tuple[int, int, int] | None
    duration: float
    width: int
    height: int
    fps: float
    cost: float
    created_at: float
    status: str = "queued"
    checkpoint: str | None = None
    progress_pct: int = 0
    cdn_name: str | None = None
    mask_name: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    completed_at: float | None = None
    character_ids: list[str] = field(default_factory=list)
    scene_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self, cdn_url: str | None, mask_url: str | None) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "mode": self.mode, "checkpoint": self.checkpoint,
                "progress_pct": self.progress_pct, "cdn_url": cdn_url, "mask_cdn_url": mask_url,
                "error": self.error_message, "error_code": self.error_code,
                "error_message": self.error_message, "chunks": [], "created_at": iso(self.created_at),
                "completed_at": iso(self.completed_at)}


@dataclass(frozen=True)
class Template:
    """A viggle.ai template that `POST /api/scenes/import` turns into a scene."""

    id: str
    name: str
    duration: float
    width: int
    height: int
    fps: float
    segments: tuple[str, ...] = ()
    credits_reserved: float = 0


TEMPLATES = (
    Template("8f2d6c1e-4b7a-4e0f-9c3d-5a1b2c3d4e5f", "Solo Dance", 4.0, 720, 1280, 30.0, (), 4),
    Template("1c9e7a52-3f6b-4d8a-b2e1-0f9d8c7b6a54", "Group Dance", 6.0, 1280, 720, 30.0,
             ("person_a1b2c3d4", "person_e5f6a7b8", "person_c9d0e1f2"), 15),
)
