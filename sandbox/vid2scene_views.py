"""How vid2scene renders a job: the JobDetailSerializer shape, with the server's LA-time timestamps.

Reading a job is also when the trainer's auto camera shows up, so shaping syncs it first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.vid2scene_worker import SceneJob, Worker, sync_camera

LA = ZoneInfo("America/Los_Angeles")


def _iso_la(ts: float) -> str:
    return datetime.fromtimestamp(ts, LA).isoformat()


def job_body(job: SceneJob, worker: Worker, now: float) -> dict[str, Any]:
    sync_camera(job, now)
    done = worker.finished(job, now)
    return {"job_id": job.job_id, "title": job.title, "status": worker.status(job, now),
            "percent_complete": worker.percent(job, now), "uploaded_at": _iso_la(job.uploaded_at),
            "public": job.public, "reconstruction_method": job.reconstruction_method,
            "training_max_num_gaussians": job.training_max_num_gaussians,
            "training_num_steps": job.training_num_steps, "remove_background": job.remove_background,
            "has_ply": done, "has_spz": done, "camera_data": job.camera_data}


def job_list(jobs: Iterable[SceneJob], user: str) -> list[dict[str, str]]:
    """The list view shows only id and title, and only the caller's own jobs."""
    return [{"job_id": j.job_id, "title": j.title} for j in jobs if j.owner == user]
