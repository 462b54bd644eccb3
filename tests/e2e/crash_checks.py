"""The crash test's invariants, judged from outside the bot: the sandbox channel (what users saw),
the providers' own records (what was paid for and how it ended), the bot's database read with
sqlite3 (its saved objects) and its spool folder on disk."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.crash_plan import Lifecycle
from tests.e2e.crash_world import Sandboxes

INVARIANTS = ("exit", "answered", "terminal", "payment", "delivery", "notice", "card", "saved", "spool")
_PART = re.compile(r"\(part (\d+)/(\d+)\)")
#: "your Viggle render is ready", "your Scenario layers are ready"
READY = re.compile(r" (is|are) ready\b")
_MARKER = re.compile(r"\s*\[vb:([a-z0-9]+)\]\s*$")
_CARD_WORD = {"done": "Done", "failed": "Failed", "cancelled": "Cancelled"}


@dataclass
class Remote:
    """One paid submission as the provider recorded it."""

    marker: str | None  # the bot's job id in the remote title, where the provider keeps one
    succeeded: bool


@dataclass
class Report:
    violations: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in INVARIANTS})
    notes: list[str] = field(default_factory=list)

    def add(self, invariant: str, lc: Lifecycle, text: str) -> None:
        self.violations[invariant].append(f"lifecycle {lc.index} ({lc.kind}, job {lc.job_id}): {text}")

    @property
    def clean(self) -> bool:
        return not any(self.violations.values())

    def counts(self) -> dict[str, int]:
        return {name: len(found) for name, found in self.violations.items()}

    def describe(self, limit: int = 6) -> str:
        lines = [f"{name}: {len(found)} violation(s)" for name, found in self.violations.items() if found]
        for name, found in self.violations.items():
            for text in found[:limit]:
                lines.append(f"  [{name}] {text}")
            if len(found) > limit:
                lines.append(f"  [{name}] … and {len(found) - limit} more")
        return "\n".join(lines + self.notes)


def _split_marker(title: str) -> tuple[str, str | None]:
    match = _MARKER.search(title)
    return (title[:match.start()], match.group(1)) if match else (title, None)


def paid(world: Sandboxes, lc: Lifecycle) -> list[Remote]:
    """Every submission a provider accepted for this lifecycle, found by the user's own input."""
    found = []
    if lc.kind in ("character", "scene"):
        records = world.viggle.characters if lc.kind == "character" else world.viggle.scenes
        for rec in records.values():
            name, marker = _split_marker(rec.name)
            if name == lc.tag:
                found.append(Remote(marker, rec.status == "ready"))
    elif lc.kind == "render":
        colour = tuple(int(c) for c in lc.tag.split(","))
        found = [Remote(None, r.status == "complete") for r in world.viggle.jobs.values()
                 if r.bg_color is not None and tuple(r.bg_color) == colour]
    elif lc.kind == "splat":
        now = world.v2s.clock()
        for rec in world.v2s.jobs.values():
            title, marker = _split_marker(rec.title)
            if title == lc.tag:
                found.append(Remote(marker, world.v2s.worker.status(rec, now) == "Finished"))
    else:
        for rec in world.scenario.jobs.values():
            if rec.job_type == "custom" and rec.input.get("separationInstruction") == lc.tag:
                found.append(Remote(None, rec.status == "success"))
    return found


def _footer(message) -> str:
    return " ".join((e.get("footer") or {}).get("text", "") for e in message.embeds or [])


def _state_field(message) -> str:
    for embed in message.embeds or []:
        for f in embed.get("fields", []):
            if f["name"] == "State":
                return f["value"]
    return ""


def check(world: Sandboxes, lifecycles: list[Lifecycle], jobs: list[dict[str, Any]],
          saved: list[dict[str, Any]], spool_dir: Path, own_exits: list[str] = ()) -> Report:
    report = Report()
    report.violations["exit"] += [f"the bot ended without being killed, {text}" for text in own_exits]
    by_id = {row["id"]: row for row in jobs}
    saved_keys = {(s["provider"], s["kind"], s["remote_id"]) for s in saved}
    messages = [m for m in world.emu.messages() if not m.ephemeral]
    render_unpaid_deliveries = 0
    for lc in lifecycles:
        remote = paid(world, lc)
        if lc.job_id is None:
            report.add("answered", lc, f"the command started no job: {lc.refusal!r}")
            if remote:
                report.add("payment", lc, f"{len(remote)} paid submission(s) for a command that started no job")
            continue
        job = by_id.get(lc.job_id)
        if job is None:
            report.add("answered", lc, "the bot named a job its database does not hold")
            continue
        state, marker = job["state"], f"job `{lc.job_id}`"
        if state not in _CARD_WORD:
            report.add("terminal", lc, f"still {state} at the end (last error: {job['last_error']!r})")
        # -- money: one submission, and the one that bears this job's marker
        if len(remote) > 1 or (state == "done" and len(remote) != 1):
            report.add("payment", lc, f"{len(remote)} paid submissions, job {state}")
        strangers = [r.marker for r in remote if r.marker not in (None, lc.job_id)]
        if strangers:
            report.add("payment", lc, f"paid submission(s) carry another job's marker: {strangers}")
        # -- what the user saw
        results = [m for m in messages if marker in m.content and READY.search(m.content)]
        notices = [m for m in messages if f"failed · {marker}" in m.content]
        parts = [int(p.group(1)) if (p := _PART.search(m.content)) else 1 for m in results]
        if state == "done" and not results:
            report.add("delivery", lc, "done, but no result message was posted")
        if len(parts) != len(set(parts)):
            report.add("delivery", lc, f"result posted more than once ({len(results)} messages, parts {parts})")
        if state in ("failed", "cancelled") and results:
            report.add("delivery", lc, f"{state}, yet {len(results)} result message(s) were posted")
        if lc.kind != "render" and any(r.succeeded for r in remote) and state != "done":
            report.add("delivery", lc, f"the provider finished the paid work but the job ended {state}: "
                                       f"{job['last_error']!r}")
        if lc.kind == "render" and state == "failed" and any(r.succeeded for r in remote):
            render_unpaid_deliveries += 1  # Viggle cannot list renders: allowed, with a plain notice
        if state == "failed" and len(notices) != 1:
            report.add("notice", lc, f"failed with {len(notices)} failure notice(s) ({job['last_error']!r})")
        if state == "done" and notices:
            report.add("notice", lc, f"done, yet {len(notices)} failure notice(s) were posted")
        cards = [m for m in messages if _footer(m) == f"Job {lc.job_id}"]
        if len(cards) != 1:
            report.add("card", lc, f"{len(cards)} status cards")
        word = _CARD_WORD.get(state)
        stale = [_state_field(c) for c in cards if word is None or not _state_field(c).startswith(word)]
        if stale:
            report.add("card", lc, f"job {state}, card(s) show {stale}")
        # -- what the bot keeps
        if state == "done" and lc.kind in ("character", "scene", "splat"):
            key = ("vid2scene", "scene", job["remote_id"]) if lc.kind == "splat" else (
                "viggle", lc.kind, job["remote_id"])
            if key not in saved_keys:
                report.add("saved", lc, f"no saved {key[0]} {key[1]} {job['remote_id']}")
        if state in _CARD_WORD and (spool_dir / lc.job_id).exists():
            report.add("spool", lc, "its spool folder is still on disk")
    known = {lc.job_id for lc in lifecycles}
    orphans = sorted(p.name for p in spool_dir.iterdir()) if spool_dir.exists() else []
    orphans = [name for name in orphans if name not in known]
    if orphans:
        report.violations["spool"].append(f"spool entries of no job: {orphans}")
    if render_unpaid_deliveries:
        report.notes.append(f"note: {render_unpaid_deliveries} Viggle render(s) paid for and ended failed "
                            "(allowed: Viggle cannot list renders)")
    return report


def summary(lifecycles: list[Lifecycle], jobs: list[dict[str, Any]], started: float) -> dict[str, Any]:
    states: dict[str, int] = {}
    by_id = {row["id"]: row for row in jobs}
    for lc in lifecycles:
        row = by_id.get(lc.job_id or "")
        key = row["state"] if row else "no job"
        states[key] = states.get(key, 0) + 1
    resent = sum(lc.commands - 1 for lc in lifecycles if lc.commands > 1)
    return {"lifecycles": len(lifecycles), "states": states, "commands resent": resent,
            "seconds": round(time.monotonic() - started, 1)}
