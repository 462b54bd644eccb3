"""The one interface every provider implements, and the small error taxonomy it raises.

The runner only ever talks to a provider through `Provider`; the only place provider errors are
turned into words for users is `user_message`.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from bot.models import Artifact, Job, RemoteStatus, SavedObject
from bot.redact import mask


class ProviderError(Exception):
    """Base of the taxonomy. `public` is safe to show a user (no secrets, no URLs with tokens)."""

    def __init__(self, public: str, *, hint: str | None = None) -> None:
        super().__init__(public)
        self.public = public
        self.hint = hint


class InputRejected(ProviderError):
    """The provider (or our own check before spending) refuses what the user gave. Final."""


class AuthFailed(ProviderError):
    """Our credentials were refused. Final for the job; the operator must act."""


class OutOfCredits(ProviderError):
    """The account cannot pay for this job. Final for the job."""


class NotFound(ProviderError):
    """The remote object is gone (deleted elsewhere, expired). Final."""


class RateLimited(ProviderError):
    """Slow down; try the same step again after `retry_after` seconds. Not counted as an attempt."""

    def __init__(self, retry_after: float, public: str = "The provider asked us to slow down.", *,
                 local: bool = False) -> None:
        super().__init__(public)
        self.retry_after = max(0.0, float(retry_after))
        #: a wait of our own making for this job only (not the provider's account-wide limit)
        self.local = local


class Transient(ProviderError):
    """A passing fault (5xx, timeout, reset). Retried with backoff, counted as an attempt."""


class SubmissionUnknown(ProviderError):
    """A paid call's outcome is unknown and cannot be looked up; never resubmit blindly."""


class ReconcileUnknown(ProviderError):
    """A lookup for an earlier submission could not finish (pages left unread, an error on the
    way): the answer is "unknown", never "not created". Look again after `retry_after` seconds;
    submitting again now could pay twice."""

    def __init__(self, public: str, *, retry_after: float = 30.0) -> None:
        super().__init__(public)
        self.retry_after = max(1.0, float(retry_after))


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What the runner needs to schedule a provider's jobs. Seconds throughout."""

    poll_min: float = 3.0
    poll_max: float = 60.0
    #: heavy steps at once (uploading, collecting, delivering: files and conversions)
    max_concurrent: int = 4
    #: status calls at once, apart from the heavy steps: 10,000 waiting jobs polled every 30 s at
    #: 100 ms a call need about 35
    max_concurrent_polls: int = 64
    deadlines: Mapping[str, float] = field(default_factory=dict)
    default_deadline: float = 3600.0
    #: after a paid call whose answer was lost, wait this long before looking for the job it made
    reconcile_settle: float = 60.0

    def deadline_for(self, kind: str) -> float:
        return float(self.deadlines.get(kind, self.default_deadline))

    @classmethod
    def from_settings(cls, section: Any) -> ProviderLimits:
        """From a provider's settings section (minutes there, seconds here)."""
        return cls(poll_min=section.poll_min_seconds, poll_max=section.poll_max_seconds,
                   max_concurrent=section.max_concurrent, max_concurrent_polls=section.max_concurrent_polls,
                   deadlines={k: v * 60 for k, v in section.deadline_minutes.items()},
                   reconcile_settle=section.reconcile_settle_seconds)


class Provider(abc.ABC):
    """A video AI service, driven one step at a time by the runner.

    Every method receives the job as stored and may read `job.params` (what the user asked,
    validated by the cog) and `job.provider_data` (what earlier steps recorded). Methods that
    return a dict merge it into `provider_data`, committed before the next step runs.
    """

    name: ClassVar[str]
    #: shown in embeds: "vid2scene", "Viggle", "Scenario"
    display_name: ClassVar[str]
    limits: ProviderLimits
    #: the bot's Discord upload limit in bytes (set by the app): results are fitted to it
    upload_limit: int = 10 * 1024 * 1024

    @abc.abstractmethod
    async def upload(self, job: Job, workdir: Path) -> dict[str, Any]:
        """Get the inputs to the provider: stream Discord attachments to a spool file in
        `workdir`, check them against the provider's limits (raise InputRejected before anything
        is spent), and upload them. Free of charge; safe to repeat after a crash."""

    @abc.abstractmethod
    async def submit(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The paid call. Returns (remote_id, provider_data). Never retried automatically: on a
        timeout or 5xx, raise SubmissionUnknown or look the job up yourself."""

    async def reconcile(self, job: Job) -> str | None:
        """After a crash between recording intent and recording the remote id: find the job we
        may have submitted (by the marker `job_marker(job)` we put in its title or name).
        Return its remote id ("created"), or None only after a complete scan ("not created").
        Raise ReconcileUnknown when the scan could not finish (look again later), and
        SubmissionUnknown when the provider offers no way to know at all."""
        raise SubmissionUnknown(
            "The bot restarted while submitting this job and cannot tell whether the provider "
            "received it, so it was not submitted again to avoid paying twice."
        )

    @abc.abstractmethod
    async def poll(self, job: Job) -> RemoteStatus:
        """Ask how the remote job is doing."""

    #: whether `poll_many` can answer several jobs in one request (a job list that tells status)
    batch_status: ClassVar[bool] = False
    #: a batched poll also takes the jobs due within this many seconds: the list answers them
    #: anyway, so each rides along instead of costing a request of its own moments later
    batch_ahead_seconds: ClassVar[float] = 10.0

    def can_batch(self, job: Job) -> bool:
        """Whether `poll_many` can answer this job (a provider may list only some kinds)."""
        return self.batch_status

    async def poll_many(self, jobs: Sequence[Job]) -> dict[str, RemoteStatus]:
        """How several remote jobs are doing, in as few requests as the provider allows, keyed by
        our job id. Jobs left out of the answer are polled one by one with `poll`."""
        return {}

    @abc.abstractmethod
    async def collect(self, job: Job, status: RemoteStatus, workdir: Path) -> list[Artifact]:
        """Download the results into `workdir` (streamed, never whole in memory)."""

    async def measured_cost(self, job: Job, artifacts: list[Artifact]) -> float | None:
        """What the job cost, in the provider's unit, when the provider does not report it but its
        price follows from the result (Viggle: seconds of rendered video). None: not known."""
        return None

    async def cancel(self, job: Job) -> str | None:
        """Best effort: stop the remote job (and get a refund where the provider gives one).
        Returns a note for the user when the provider would not stop it (it may still bill)."""
        return None

    def recall(self, recent: Sequence[Job]) -> None:
        """Learn what this provider's recent jobs (newest first, from the store) already told, which
        a restart, or another process that ran them, would otherwise forget (Scenario's quotes)."""
        return None

    def saved_object(self, job: Job) -> SavedObject | None:
        """What the user keeps from this job for later commands (a Viggle character, a splat
        scene), recorded by the runner after submission and again when the job is done."""
        return None

    async def fresh_link(self, job: Job, key: str) -> str:
        """A newly signed download URL for the result named `key` (see Artifact.download_key)."""
        raise NotFound("This result has no download link.")

    async def check(self) -> str:
        """A harmless request proving the credentials work; returns a short description."""
        return "configured"

    async def close(self) -> None:  # noqa: B027 - optional
        """Release anything the provider holds."""


def job_marker(job: Job) -> str:
    """The tag we put in remote titles/names so a crashed submission can be found again."""
    return f"[vb:{job.id}]"


#: anything that looks like our marker, with the spacing and case variations a forger might try
_MARKER_LIKE = re.compile(r"\[\s*vb\s*:[^\]]*\]?", re.IGNORECASE)


def strip_markers(text: str) -> str:
    """User text without anything resembling our marker: a user must never be able to put another
    job's marker into their own title (reconcile would then bind that job to their scene)."""
    return re.sub(r"\s{2,}", " ", _MARKER_LIKE.sub("", text or "")).strip()


def marked_name(label: str, job: Job) -> str:
    """The exact remote title/name we send for `job`: the user's label (markers stripped), one
    space, our marker. Reconcile accepts only this full form, never the marker found elsewhere."""
    label = strip_markers(label)
    return f"{label} {job_marker(job)}" if label else job_marker(job)


def has_exact_marker(remote_name: str, job: Job) -> bool:
    """Whether a remote title is in our full form for this job: it ends with the job's marker and
    holds no other marker (a title holding two markers was forged or tampered with)."""
    name = (remote_name or "").strip()
    marker = job_marker(job)
    return name.endswith(marker) and len(_MARKER_LIKE.findall(name)) == 1 and \
        (name == marker or name[-len(marker) - 1] == " ")


_DEFAULT_MESSAGES: dict[type[ProviderError], str] = {
    AuthFailed: "{provider} refused the bot's credentials. An operator needs to check the API key.",
    OutOfCredits: "{provider} says the account is out of credits, so the job could not start.",
    RateLimited: "{provider} is busy right now; the bot will try again shortly.",
    Transient: "{provider} had a temporary problem.",
    NotFound: "{provider} no longer knows this job.",
}


def user_message(error: BaseException, provider: str) -> str:
    """The one mapping from any error to the words a user sees. Unknown errors say nothing
    internal: their text might hold a URL with a signature or a header value."""
    if isinstance(error, InputRejected | SubmissionUnknown):
        text = error.public
    elif isinstance(error, ProviderError):
        template = next((t for cls, t in _DEFAULT_MESSAGES.items() if isinstance(error, cls)), None)
        text = template.format(provider=provider) if template else error.public
        if isinstance(error, AuthFailed | OutOfCredits | NotFound) and error.public and template:
            text = f"{text} ({error.public})"
    else:
        text = f"Something went wrong on the bot's side while talking to {provider}."
    hint = getattr(error, "hint", None)
    if hint:
        text = f"{text}\nHint: {hint}"
    return mask(text)


def parse_timestamp(text: Any) -> datetime | None:
    """A provider's ISO 8601 time (`Z` or an offset such as DRF's `-08:00`); a naive one is taken
    as UTC, and anything unreadable is None."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
