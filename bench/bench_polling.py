"""Polling policies on simulated jobs shaped like each provider's, with the configured bounds.

Each provider's jobs are drawn from what its contract says it reports:
- Viggle: characters and scenes report nothing but "pending" until ready (no progress); renders
  report checkpoints with a `progress_pct` estimate (step-wise);
- vid2scene: a queue position, then "Processing video" (no percent), then "Generating 3D scene"
  with `percent_complete` updated at each training preview (step-wise), then a short export tail;
- Scenario: queued, then `progress` 0..1 (linear, reported in 2% steps).

Durations are log-normal around a median (spread `--spread`, default 0.25). The adaptive policy is
the bot's own (`bot.polling.plan_poll`, the code the runner calls), fed the same observations the
runner has: phase, reported progress, queue position, time since it first saw the job running, and
the typical duration of that kind learned from the previous jobs. Baselines poll every 5 s and 30 s.

For each provider: p50/p95/max lateness (seconds from completion to the poll that saw it) and polls
per job. Prints one table and a last JSON line; no pass/fail.
Run: python bench/bench_polling.py [--jobs 400] [--spread 0.25] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import ScenarioSettings, Vid2SceneSettings, ViggleSettings
from bot.models import RemotePhase
from bot.polling import DurationHistory, PollBounds, PollClock, plan_poll


@dataclass(frozen=True)
class Segment:
    """A stretch of a job as the provider reports it."""

    phase: RemotePhase
    seconds: float
    #: None: no progress; "linear": 0..1 in `step` increments; a tuple: (fraction of time, value) steps
    progress: str | tuple[tuple[float, float], ...] | None = None
    step: float = 0.02
    queue_position: int | None = None
    start: float = 0.0
    end: float = 1.0

    def observe(self, into: float) -> tuple[float | None, int | None]:
        share = into / self.seconds if self.seconds else 1.0
        if self.progress is None:
            value = None
        elif self.progress == "linear":
            value = self.start + (self.end - self.start) * share
            value = math.floor(value / self.step) * self.step
        else:
            value = self.start
            for at, reported in self.progress:
                if share >= at:
                    value = reported
        position = None
        if self.queue_position is not None:
            position = max(1, math.ceil(self.queue_position * (1 - share)))
        return value, position


Job = list[Segment]


def lognormal(rng: random.Random, median: float, spread: float) -> float:
    return median * math.exp(rng.gauss(0.0, spread))


def viggle_job(rng: random.Random, spread: float) -> tuple[str, Job]:
    kind = rng.choice(["character", "scene", "render", "render"])
    if kind == "character":
        return kind, [Segment(RemotePhase.RUNNING, lognormal(rng, 35, spread))]
    if kind == "scene":
        return kind, [Segment(RemotePhase.RUNNING, lognormal(rng, 75, spread))]
    checkpoints = ((0.15, 0.2), (0.45, 0.6), (0.7, 0.8), (0.92, 0.95))  # ref, dri, bg, render done
    return kind, [Segment(RemotePhase.QUEUED, lognormal(rng, 10, spread)),
                  Segment(RemotePhase.RUNNING, lognormal(rng, 160, spread), checkpoints)]


def vid2scene_job(rng: random.Random, spread: float) -> tuple[str, Job]:
    ahead = rng.randint(0, 3)
    segments = []
    if ahead:
        segments.append(Segment(RemotePhase.QUEUED, lognormal(rng, 90 * ahead, spread), queue_position=ahead))
    segments += [Segment(RemotePhase.RUNNING, lognormal(rng, 120, spread)),  # processing video, no percent
                 Segment(RemotePhase.RUNNING, lognormal(rng, 900, spread), "linear", step=0.02),
                 Segment(RemotePhase.RUNNING, lognormal(rng, 25, spread), (), start=1.0)]  # export at 100%
    return "splat", segments


def scenario_job(rng: random.Random, spread: float) -> tuple[str, Job]:
    return "layers", [Segment(RemotePhase.QUEUED, lognormal(rng, 15, spread)),
                      Segment(RemotePhase.RUNNING, lognormal(rng, 120, spread), "linear", step=0.02)]


def status_at(job: Job, t: float) -> tuple[RemotePhase, float | None, int | None] | None:
    """What a poll at `t` sees; None once the job has finished."""
    for segment in job:
        if t < segment.seconds:
            progress, position = segment.observe(t)
            return segment.phase, progress, position
        t -= segment.seconds
    return None


Policy = Callable[[PollClock, RemotePhase, float | None, int | None, float], float]


def simulate(job: Job, policy: Policy, clock: PollClock) -> tuple[int, float]:
    """Returns (polls, lateness): polls made until one saw the finished job."""
    end = sum(s.seconds for s in job)
    t, polls = 0.0, 0
    while True:
        polls += 1
        seen = status_at(job, t)
        if seen is None:
            return polls, t - end
        phase, progress, position = seen
        t += policy(clock, phase, progress, position, t)


def adaptive(bounds: PollBounds, typical: float | None) -> Policy:
    def choose(clock: PollClock, phase, progress, position, now) -> float:
        return plan_poll(bounds, clock, phase=phase, progress=progress, queue_position=position,
                         now=now, typical_total=typical)
    return choose


def fixed(seconds: float) -> Policy:
    return lambda *_: seconds


PROVIDERS = {
    "viggle": (ViggleSettings, viggle_job),
    "vid2scene": (Vid2SceneSettings, vid2scene_job),
    "scenario": (ScenarioSettings, scenario_job),
}


def run(jobs: int, spread: float, seed: int) -> dict:
    results: dict = {}
    for name, (settings_cls, make) in PROVIDERS.items():
        defaults = settings_cls.model_construct()
        bounds = PollBounds(defaults.poll_min_seconds, defaults.poll_max_seconds)
        rng = random.Random(f"{seed}-{name}")
        history: dict[str, DurationHistory] = {}
        rows: dict[str, tuple[list[int], list[float]]] = {}
        for _ in range(jobs):
            kind, job = make(rng, spread)
            learned = history.setdefault(kind, DurationHistory())
            policies = {"adaptive": adaptive(bounds, learned.typical()), "fixed 5 s": fixed(5.0),
                        "fixed 30 s": fixed(30.0)}
            for label, policy in policies.items():
                polls, late = simulate(job, policy, PollClock())
                counts, lateness = rows.setdefault(label, ([], []))
                counts.append(polls)
                lateness.append(late)
            learned.add(sum(s.seconds for s in job))
        results[name] = {"bounds": [bounds.minimum, bounds.maximum], "policies": {
            label: {"polls_per_job": statistics.fmean(counts), "p50_late_s": percentile(lateness, 50),
                    "p95_late_s": percentile(lateness, 95), "max_late_s": max(lateness)}
            for label, (counts, lateness) in rows.items()}}
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=400, help="simulated jobs per provider")
    parser.add_argument("--spread", type=float, default=0.25, help="log-normal sigma of durations")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    results = run(args.jobs, args.spread, args.seed)
    print(f"{args.jobs} jobs per provider, duration spread {args.spread}, seed {args.seed}")
    print(f"{'provider':<11}{'bounds':>10}{'policy':>13}{'polls/job':>11}{'p50 late':>10}{'p95 late':>10}"
          f"{'max late':>10}{'requests vs 5 s':>17}")
    for name, result in results.items():
        base = result["policies"]["fixed 5 s"]["polls_per_job"]
        for label, row in result["policies"].items():
            bounds = "{:g}-{:g} s".format(*result["bounds"])
            print(f"{name:<11}{bounds:>10}{label:>13}{row['polls_per_job']:>11.1f}{row['p50_late_s']:>10.1f}"
                  f"{row['p95_late_s']:>10.1f}{row['max_late_s']:>10.1f}{row['polls_per_job'] / base:>17.2f}")
    summary = {name: {"p95_late_s": round(r["policies"]["adaptive"]["p95_late_s"], 2),
                      "requests_vs_fixed_5s": round(r["policies"]["adaptive"]["polls_per_job"]
                                                    / r["policies"]["fixed 5 s"]["polls_per_job"], 3)}
               for name, r in results.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
