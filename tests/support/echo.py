"""A test provider: a fake remote service ("EchoRemote") and the Provider that drives it.

The remote outlives bot instances, like a real provider does, so restart tests can stop one bot and
start another on the same database. The provider does real work where the engine expects it: it
streams the Discord attachment to the spool over HTTP and writes real result files.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.models import Artifact, Job, RemotePhase, RemoteStatus, SavedObject
from bot.net import Net
from bot.providers.base import InputRejected, Provider, ProviderLimits, Transient, job_marker


@dataclass
class RemoteJob:
    id: str
    title: str
    text: str
    polls_queued: int
    polls_running: int
    polls: int = 0
    cancelled: bool = False
    fail_with: str | None = None


@dataclass
class EchoRemote:
    """What the provider's servers know. Scriptable per job through the job's text."""

    jobs: dict[str, RemoteJob] = field(default_factory=dict)
    submits: int = 0
    poll_calls: dict[str, int] = field(default_factory=dict)
    broken_poll_texts: set[str] = field(default_factory=set)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def create(self, title: str, text: str, queued: int, running: int) -> RemoteJob:
        self.submits += 1
        job = RemoteJob(f"echo-{next(self._ids)}", title, text, queued, running)
        self.jobs[job.id] = job
        return job

    def status(self, remote_id: str) -> RemoteStatus:
        job = self.jobs[remote_id]
        job.polls += 1
        self.poll_calls[job.text] = self.poll_calls.get(job.text, 0) + 1
        if job.text in self.broken_poll_texts:
            raise Transient("the echo service is broken for this job")
        if job.cancelled:
            return RemoteStatus(RemotePhase.CANCELLED)
        if job.fail_with:
            return RemoteStatus(RemotePhase.FAILED, error=job.fail_with, hint="try a shorter text")
        if job.polls <= job.polls_queued:
            return RemoteStatus(RemotePhase.QUEUED, queue_position=job.polls_queued - job.polls + 1,
                                raw_status="queued")
        step = job.polls - job.polls_queued
        if step <= job.polls_running:
            return RemoteStatus(RemotePhase.RUNNING, progress=step / (job.polls_running + 1),
                                detail=f"step {step}", raw_status="running")
        return RemoteStatus(RemotePhase.SUCCEEDED, progress=1.0, data={"echo": job.text.upper()})


class EchoProvider(Provider):
    name = "echo"
    display_name = "Echo"

    def __init__(self, remote: EchoRemote, net: Net, *, limits: ProviderLimits | None = None,
                 queued_polls: int = 2, running_polls: int = 3, result_bytes: int = 2000, result_files: int = 1,
                 refuse_cancel: bool = False) -> None:
        self.remote = remote
        self.net = net
        self.limits = limits or ProviderLimits(poll_min=0.05, poll_max=0.2, max_concurrent=4,
                                               deadlines={"echo": 60}, reconcile_settle=0.2)
        self.queued_polls, self.running_polls, self.result_bytes = queued_polls, running_polls, result_bytes
        self.result_files, self.refuse_cancel = result_files, refuse_cancel
        self.submit_hook = None  # an async callable run right after the remote job is created

    async def upload(self, job: Job, workdir: Path) -> dict[str, Any]:
        file = job.params.get("file")
        if not file:
            return {}
        size = await self.net.download(file["url"], workdir / "input.bin", max_bytes=5_000_000)
        if size == 0:
            raise InputRejected("The file is empty.")
        return {"input_bytes": size}

    async def submit(self, job: Job) -> tuple[str, dict[str, Any]]:
        text = job.params["text"]
        if text == "reject":
            raise InputRejected("The echo service refuses to echo 'reject'.")
        remote = self.remote.create(f"{text} {job_marker(job)}", text, self.queued_polls, self.running_polls)
        if text.startswith("fail"):
            remote.fail_with = "The echo service could not echo this."
        if self.submit_hook is not None:
            await self.submit_hook(job)
        return remote.id, {"title": remote.title}

    async def reconcile(self, job: Job) -> str | None:
        marker = job_marker(job)
        return next((j.id for j in self.remote.jobs.values() if j.title.endswith(marker)), None)

    async def poll(self, job: Job) -> RemoteStatus:
        await asyncio.sleep(0)
        return self.remote.status(job.remote_id)

    async def collect(self, job: Job, status: RemoteStatus, workdir: Path) -> list[Artifact]:
        body = (status.data["echo"] + "\n").encode()
        names = ["echo.txt"] if self.result_files == 1 else [f"echo-{i + 1}.txt" for i in range(self.result_files)]
        for name in names:
            (workdir / name).write_bytes(body * max(1, self.result_bytes // len(body)))
        return [Artifact(path=workdir / name, filename=name, description="the echo") for name in names]

    async def cancel(self, job: Job) -> str | None:
        if self.refuse_cancel:
            return "The echo service does not stop a job once it has started."
        self.remote.jobs[job.remote_id].cancelled = True
        return None

    def saved_object(self, job: Job) -> SavedObject | None:
        """The echo the user keeps (like a Viggle character), recorded once submitted and when done."""
        if not job.remote_id:
            return None
        return SavedObject(provider=self.name, kind="echo", remote_id=job.remote_id, owner_id=job.owner_id,
                           guild_id=job.guild_id, name=job.params.get("text", ""), status=str(job.state))

    async def close(self) -> None:
        await self.net.close()
