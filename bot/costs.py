"""What a job costs, in each provider's own unit: the estimate a command states before spending,
and the actual charge read from what the provider reported.

Prices (from the providers' published terms): Viggle charges 1 credit per second of rendered
video (twice that with `fast`) and 1 credit per character; vid2scene takes 1 API credit per scene
on per-scene plans; Scenario prices each run in creative units, quoted by a dry run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.models import Job, JobState, utcnow

UNITS = {"viggle": "credits", "vid2scene": "credits", "scenario": "creative units"}
UNIT_ONE = {"viggle": "credit", "vid2scene": "credit", "scenario": "creative unit"}
#: params key where a job keeps the estimate it was started with
ESTIMATE_KEY = "_estimate"


@dataclass(frozen=True, slots=True)
class Estimate:
    """`amount` is None when it cannot be known before the job runs; `basis` says how it is worked out."""

    provider: str
    amount: float | None
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "basis": self.basis}

    def words(self) -> str:
        if self.amount is None:
            return self.basis
        if self.amount == 0:
            return f"nothing ({self.basis})"
        return f"about {amount_words(self.provider, self.amount)} ({self.basis})"


def amount_words(provider: str, amount: float) -> str:
    """`5 credits`, `1 credit`, `6.7 credits`, `50 creative units`."""
    value = f"{amount:.1f}".rstrip("0").rstrip(".")
    unit = UNIT_ONE.get(provider, "unit") if value == "1" else UNITS.get(provider, "units")
    return f"{value} {unit}"


def month_key(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m")


def viggle_estimate(kind: str, *, seconds: float | None = None, fast: bool = False) -> Estimate:
    if kind == "character":
        return Estimate("viggle", 1.0, "1 credit per character")
    if kind in ("scene", "template"):
        return Estimate("viggle", 0.0, "Viggle lists preparing a scene as free")
    rate = 2 if fast else 1
    per = f"{rate} credit{'s' if rate > 1 else ''} per second of video" + (" with fast" if fast else "")
    if seconds is None:
        return Estimate("viggle", None, f"{per}; the clip's length is known once it is uploaded")
    return Estimate("viggle", round(seconds * rate, 2), f"{per}, {seconds:.1f} s")


def vid2scene_estimate() -> Estimate:
    return Estimate("vid2scene", 1.0, "1 credit per scene on per-scene plans")


def scenario_estimate(quote: float | None, max_layers: int) -> Estimate:
    if quote is None:
        return Estimate("scenario", None, "Scenario quotes the price in creative units with a dry run before "
                                          "anything is spent")
    return Estimate("scenario", float(quote), f"Scenario's quote for up to {max_layers} layers")


def estimate_of(job: Job) -> float | None:
    value = (job.params.get(ESTIMATE_KEY) or {}).get("amount")
    return float(value) if isinstance(value, int | float) else None


def reported_cost(job: Job) -> float | None:
    """What the provider said this job cost, once it said so: Viggle's `credits_used`, Scenario's
    `billing.cuCost` (final) or `creativeUnitsCost` (at submission), vid2scene's one credit."""
    final = job.provider_data.get("_status") or {}
    if job.provider == "scenario":
        for value in (final.get("cu_cost"), job.provider_data.get("cost")):
            if isinstance(value, int | float):
                return float(value)
        return None
    if job.provider == "viggle":
        value = final.get("credits_used", job.provider_data.get("_charge"))
        return float(value) if isinstance(value, int | float) else None
    if job.provider == "vid2scene" and job.state is JobState.DONE:
        return 1.0
    return None


def settled_amount(job: Job) -> float | None:
    """The ledger's final amount for a finished job, or None to keep the estimate. Nothing is
    charged when nothing was submitted, or when the job was cancelled (the providers refund a
    cancelled job); a failed paid job keeps its charge unless the provider says otherwise."""
    if not job.state.is_terminal:
        return None
    if job.remote_id is None or job.state is JobState.CANCELLED:
        return 0.0
    reported = reported_cost(job)
    if job.state is JobState.FAILED and job.provider == "scenario":
        return 0.0  # Scenario refunds failed jobs
    return reported
