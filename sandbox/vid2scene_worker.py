"""The vid2scene job lifecycle, by the clock: one RQ worker, its queue, and `get_status_string`.

Nothing runs in the background: every request first lets the worker catch up to `now`, so status
is a pure function of the clock and tests can drive it with a fake one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

PREVIEW_EVERY = 500  # training steps between preview images (the first one appears at this step)


@dataclass
class SceneJob:
    """One SceneProcessingJob plus its RQ job's schedule (times are clock seconds)."""

    job_id: str
    owner: str
    title: str
    public: bool
    allow_as_example: bool
    reconstruction_method: str
    training_max_num_gaussians: int
    training_num_steps: int
    remove_background: bool
    apriltag_size_mm: float | None
    camera_data: Any
    video_blob: str
    uploaded_at: float
    fate: str = "finish"  # finish | fail | stick
    fail_reason: str = ""
    fail_during: str = "processing"  # processing | training
    paid: bool = False
    rq_record: bool = True
    taken_at: float | None = None  # the worker popped it from the queue
    started_at: float | None = None  # RQ status `started`
    training_at: float | None = None  # processing done, the trainer runs (previews from here)
    end_at: float | None = None  # finished, failed or stalled; the worker is free from here
    camera_written_at: float = 0.0
    camera_auto_done: bool = False


def is_video(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video)
    except Exception:  # noqa: BLE001 - anything PyAV cannot open is not a video to the worker
        return False


def sync_camera(job: SceneJob, now: float) -> None:
    """The trainer writes an auto camera when processing ends (keeping cameraType)."""
    if job.camera_auto_done or job.training_at is None or now < job.training_at:
        return
    job.camera_auto_done = True
    if job.camera_written_at > job.training_at:
        return
    kind = job.camera_data.get("cameraType") if isinstance(job.camera_data, dict) else None
    auto: dict[str, Any] = {"lookAt": {"x": 0.0, "y": 0.0, "z": 0.0}, "position": {"x": 0.0, "y": -1.1, "z": -3.2},
                            "up": {"x": 0.0, "y": -1.0, "z": 0.0}}
    job.camera_data = auto | ({"cameraType": kind} if kind else {})


class Worker:
    """The single worker: takes queued jobs in order; a stuck job frees it without ever finishing."""

    def __init__(self, *, queue_seconds: float, pickup_seconds: float, processing_seconds: float,
                 training_seconds: float, stick_fraction: float) -> None:
        self.queue_seconds, self.pickup_seconds = queue_seconds, pickup_seconds
        self.processing_seconds, self.training_seconds = processing_seconds, training_seconds
        self.stick_fraction = stick_fraction
        self.queue: list[SceneJob] = []
        self.running: SceneJob | None = None
        self.free_at = 0.0

    def advance(self, now: float) -> None:
        """Let the worker take queued jobs, in order, up to `now`."""
        while True:
            if self.running is not None:
                if self.running.end_at is not None and self.running.end_at > now:
                    return
                self.free_at, self.running = self.running.end_at or now, None
            if not self.queue:
                return
            job = self.queue[0]
            taken = max(self.free_at, job.uploaded_at + self.queue_seconds)
            if taken > now:
                return
            self.queue.pop(0)
            self._schedule(job, taken)
            self.running = job

    def _schedule(self, job: SceneJob, taken: float) -> None:
        job.taken_at, job.started_at = taken, taken + self.pickup_seconds
        job.training_at = job.started_at + self.processing_seconds
        if job.fate == "fail" and job.fail_during == "processing":
            job.training_at, job.end_at = None, job.started_at + self.processing_seconds
        elif job.fate == "fail":
            job.end_at = job.training_at + self.training_seconds * 0.5
        elif job.fate == "stick":
            job.end_at = job.training_at + self.training_seconds * self.stick_fraction
        else:
            job.end_at = job.training_at + self.training_seconds

    def drop(self, job: SceneJob, now: float) -> None:
        """The job was deleted: dequeue it, or abort it if it is running."""
        if job in self.queue:
            self.queue.remove(job)
        if self.running is job:
            self.running, self.free_at = None, now

    def reject(self, job: SceneJob, now: float) -> None:
        """The video turned out unreadable: the job fails while processing, unless training already began."""
        if job.training_at is None or now < job.training_at:
            job.fate, job.fail_reason, job.fail_during = "fail", "not a readable video", "processing"
            if job.started_at is not None:
                job.training_at, job.end_at = None, job.started_at + self.processing_seconds

    @staticmethod
    def finished(job: SceneJob, now: float) -> bool:
        return job.fate == "finish" and job.end_at is not None and now >= job.end_at

    def step(self, job: SceneJob, now: float) -> int | None:
        """Training step of the newest preview image, None before the first one."""
        if job.training_at is None or now < job.training_at:
            return None
        assert job.end_at is not None
        steps = job.training_num_steps
        if self.finished(job, now):
            return steps // PREVIEW_EVERY * PREVIEW_EVERY
        frac = (min(now, job.end_at) - job.training_at) / max(self.training_seconds, 1e-9)
        step = int(frac * steps) // PREVIEW_EVERY * PREVIEW_EVERY
        return min(step, steps) if step >= PREVIEW_EVERY else None

    def status(self, job: SceneJob, now: float) -> str:
        """`utils.get_status_string`: files, failed, preview, queued (position), started, raw RQ word."""
        if self.finished(job, now):
            return "Finished"
        if job.rq_record and job.fate == "fail" and job.end_at is not None and now >= job.end_at:
            return "Failed"
        if self.step(job, now) is not None:
            return "Generating 3D scene"
        if not job.rq_record:
            return "Not found"
        if job.taken_at is None:
            return f"Queued - position: {self.queue.index(job) + 1}"
        if job.started_at is not None and now < job.started_at:
            return "Queued"  # popped by the worker, not yet marked started: no position
        return "Processing video"

    def percent(self, job: SceneJob, now: float) -> float | int | None:
        if self.finished(job, now):
            return 100
        step = self.step(job, now)
        return None if step is None else min(step / job.training_num_steps * 100, 100)
