"""Small frozen types shared by the engine, the providers and the cogs.

They hold no behaviour beyond what follows from their own fields, so every layer can import them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class JobState(enum.StrEnum):
    """Where a job is in its life; every change is one committed write in the store."""

    ACCEPTED = "accepted"
    UPLOADING = "uploading"
    SUBMITTED = "submitted"
    RUNNING = "running"
    COLLECTING = "collecting"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_live(self) -> bool:
        return self not in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class Chore(enum.StrEnum):
    """Work owed to the user beside the life cycle (an outbox), kept on the job row until done.

    A job's end is written with the chores it brings, in the same write; the runner does each
    one idempotently and strikes it off, and after a crash the due-work loop finds what is left."""

    CARD = "card"  # the status card shows the final state
    NOTICE = "notice"  # the failure notice is posted
    SAVED = "saved"  # the user's provider object is recorded
    SPOOL = "spool"  # the spool folder is removed
    CANCEL_REFUSED = "cancel_refused"  # the owner is told the provider would not stop the job
    SETTLE = "settle"  # the server's ledger books what the job really cost (or refunds it)

_FORWARD = {
    JobState.ACCEPTED: {JobState.UPLOADING},
    JobState.UPLOADING: {JobState.SUBMITTED},
    JobState.SUBMITTED: {JobState.RUNNING, JobState.COLLECTING},
    JobState.RUNNING: {JobState.COLLECTING},
    JobState.COLLECTING: {JobState.DELIVERING},
    JobState.DELIVERING: {JobState.DONE, JobState.COLLECTING},  # back to collecting if the spool was lost
}

#: once the provider has finished, the results are paid for: no cancelling from here on
_PAID = {JobState.COLLECTING, JobState.DELIVERING}

#: The life cycle: forward steps, plus failed from any live state and cancelled from any live
#: state before the results exist.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: frozenset(
        _FORWARD.get(state, set())
        | ({JobState.FAILED} if state.is_live else set())
        | ({JobState.CANCELLED} if state.is_live and state not in _PAID else set())
    )
    for state in JobState
}


class RemotePhase(enum.StrEnum):
    """A provider's own status words, folded into what the engine needs to decide the next step."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RemotePhase.SUCCEEDED, RemotePhase.FAILED, RemotePhase.CANCELLED)


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """One poll's answer, typed. `progress` is 0..1; `detail` is the provider's own words (a
    checkpoint, a status line) worth showing the user; `preview_url` a fresh image of the work."""

    phase: RemotePhase
    progress: float | None = None
    queue_position: int | None = None
    detail: str | None = None
    preview_url: str | None = None
    error: str | None = None
    hint: str | None = None
    raw_status: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Artifact:
    """A result file spooled on disk, ready for delivery.

    `optional` files are posted only when they fit the upload limit (a PLY beside its SPZ).
    `link` is a URL shown when the file does not fit; `download_key` names a Download button
    that asks the provider for a fresh link when clicked (signed URLs expire). `remote_size`
    marks a result that was deliberately not downloaded (far over any upload limit): it has no
    local file and is only ever offered as a link or button.
    """

    path: Path
    filename: str
    description: str = ""
    optional: bool = False
    link: str | None = None
    download_key: str | None = None
    remote_size: int | None = None

    @property
    def size(self) -> int:
        return self.remote_size if self.remote_size is not None else self.path.stat().st_size

    @property
    def is_local(self) -> bool:
        return self.remote_size is None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "filename": self.filename,
            "description": self.description,
            "optional": self.optional,
            "link": self.link,
            "download_key": self.download_key,
            "remote_size": self.remote_size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            path=Path(data["path"]),
            filename=data["filename"],
            description=data.get("description", ""),
            optional=bool(data.get("optional", False)),
            link=data.get("link"),
            download_key=data.get("download_key"),
            remote_size=data.get("remote_size"),
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Job:
    """A job row as the store holds it. Replace, never mutate: `job.evolve(state=...)`."""

    id: str
    provider: str
    kind: str
    state: JobState
    owner_id: int
    channel_id: int
    guild_id: int | None
    summary: str
    params: dict[str, Any] = field(default_factory=dict)
    provider_data: dict[str, Any] = field(default_factory=dict)
    remote_id: str | None = None
    progress: float | None = None
    queue_position: int | None = None
    detail: str | None = None
    preview_url: str | None = None
    eta: datetime | None = None
    status_message_id: int | None = None
    result_message_ids: tuple[int, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    attempts: int = 0
    last_error: str | None = None
    cancel_requested: bool = False
    submit_intent_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    running_since: datetime | None = None
    finished_at: datetime | None = None
    next_run_at: datetime = field(default_factory=utcnow)
    deadline_at: datetime | None = None
    status_edited_at: datetime | None = None
    status_fingerprint: str | None = None
    delivery_started_at: datetime | None = None
    #: chores still owed (see Chore); a finished job is due until this is empty
    finish_pending: tuple[str, ...] = ()
    #: how the results are split into messages, fixed when delivery starts (see delivery.plan_messages)
    delivery_plan: list[dict[str, Any]] | None = None
    #: the provider would not stop the job: it runs on, counts toward limits and is delivered
    cancel_refused_at: datetime | None = None
    #: the fencing token of the worker's lease this copy was claimed under: a write with an older
    #: one (a stalled worker whose lease was taken over) is refused
    lease_token: int = 0

    def evolve(self, **changes: Any) -> Job:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class SavedObject:
    """A provider object a user made and may reuse (a Viggle character or scene, a splat job)."""

    provider: str
    kind: str
    remote_id: str
    owner_id: int
    guild_id: int | None
    name: str
    status: str = ""
    data: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
