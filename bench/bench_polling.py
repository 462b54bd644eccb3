"""Polling policies on simulated jobs shaped like each provider's, with the configured bounds.

Each provider's jobs are drawn from what its contract says it reports:
- Viggle: characters and scenes report nothing but "pending" until ready (no progress); renders
  report checkpoints with a `progress_pct` estimate (step-wise);
- vid2scene: a queue position, then "Processing video" (no percent), then "Generating 3D scene"
  with `percent_complete` updated at each training preview (step-wise), then a short export tail;
- Scenario: queued, then `progress` 0..1 (linear, reported in 2% steps).

Durations are log-normal around a median (spread `--spread`, default 0.25); the medians are our
guesses from the sandboxes' shapes (no provider publishes them), the shapes are the contracts'. The adaptive policy is
the bot's own (`bot.polling.plan_poll`, the code the runner calls), fed the same observations the
runner has: phase, reported progress, queue position, time since it first saw the job running, and
the typical duration of that kind learned from the previous jobs (as observed, lateness included).
Baselines poll every 5 s and 30 s, one request per job and poll.

Two runs per provider:
- **alone**: one job at a time, every poll a request of its own; with the **bound** no policy can
  beat under the provider's longest wait (and, for kinds without progress, their duration
  spread): see `bound_polls`;
- **fleet** (`--live`, default 20 jobs running at once, arriving at random): as the runner polls.
  Where the provider has a list that tells status (Scenario's job list; Viggle's character and
  scene lists, not renders), a due job's poll is one list request (100 a page, up to the
  provider's `batch_max_pages`) that also answers the jobs of that list due within
  `batch_ahead_seconds` (Viggle then reads each finished object whole: one request more). vid2scene's
  list carries no status, so it never batches.

For each provider: p50/p95/max lateness (seconds from completion to the poll that saw it) and
requests per job. Prints tables and a last JSON line; no pass/fail.
Run: python bench/bench_polling.py [--jobs 400] [--spread 0.25] [--live 20] [--seed 7]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.config import ScenarioSettings, Vid2SceneSettings, ViggleSettings
from bot.models import RemotePhase
from bot.polling import DurationHistory, PollBounds, PollClock, plan_poll
from bot.providers.base import Provider
from bot.providers.scenario import ScenarioProvider
from bot.providers.viggle import ViggleProvider


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

#: which list answers a kind's status in one request, and how many pages of it one scan may read
#: (what `can_batch` / `batch_max_pages` of each provider say; vid2scene's list has no status)
LISTS = {
    "viggle": ({"character": "characters", "scene": "scenes"}, ViggleProvider.batch_max_pages),
    "scenario": ({"layers": "jobs"}, ScenarioProvider.batch_max_pages),
}
PAGE = 100
FIVE_SECONDS = 5.0


def bounds_of(name: str) -> PollBounds:
    defaults = PROVIDERS[name][0].model_construct()
    return PollBounds(defaults.poll_min_seconds, defaults.poll_max_seconds)


def draw(name: str, jobs: int, spread: float, seed: int) -> list[tuple[str, Job]]:
    rng = random.Random(f"{seed}-{name}")
    return [PROVIDERS[name][1](rng, spread) for _ in range(jobs)]


def total(job: Job) -> float:
    return sum(s.seconds for s in job)


# -- one job at a time -----------------------------------------------------------------------------

def run_alone(name: str, drawn: list[tuple[str, Job]]) -> dict:
    """Each job alone, in order; the policy learns from those before. Rows per policy and kind."""
    bounds = bounds_of(name)
    history: dict[str, DurationHistory] = {}
    rows: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for kind, job in drawn:
        learned = history.setdefault(kind, DurationHistory())
        policies = {"adaptive": adaptive(bounds, learned.typical()), "fixed 5 s": fixed(FIVE_SECONDS),
                    "fixed 30 s": fixed(30.0)}
        for label, policy in policies.items():
            polls, late = simulate(job, policy, PollClock())
            for key in ((label, "all"), (label, kind)):
                counts, lateness = rows.setdefault(key, ([], []))
                counts.append(polls)
                lateness.append(late)
            if label == "adaptive":
                learned.add(total(job) + late)  # what the runner records: submission to seen done
    return {key: summary(counts, lateness) for key, (counts, lateness) in rows.items()}


def bound_polls(durations: list[float], maximum: float, progress: bool) -> float:
    """Fewest polls per job, on average, that any policy needs to see these jobs finish within
    5 s at p95: one at submission, then never more than the provider's longest wait apart. Jobs
    that report no progress also need a poll every 5 s across the window holding 95% of their
    durations (from 5 s after the 2.5th percentile; for a log-normal spread the central window is
    close to the best one). A bound, not a policy: it knows each duration distribution exactly."""
    ordered = sorted(durations)
    start = percentile(ordered, 2.5) + FIVE_SECONDS
    return statistics.fmean(max(1 + math.ceil(t / maximum),
                                1 if progress else 2 + max(0, math.ceil((t - start) / FIVE_SECONDS)))
                            for t in ordered)


#: kinds whose provider reports no progress at all until they end
NO_PROGRESS = {("viggle", "character"), ("viggle", "scene")}


# -- many jobs at once, as the runner polls them ---------------------------------------------------

@dataclass
class Live:
    kind: str
    job: Job
    arrived: float
    clock: PollClock
    due: float
    version: int = 0
    late: float | None = None


@dataclass
class Fleet:
    requests: int = 0
    lateness: list[float] = field(default_factory=list)


def run_fleet(name: str, drawn: list[tuple[str, Job]], live: int, seed: int, policy: str) -> Fleet:
    """Jobs arrive at random so that about `live` run at once; each is polled when its policy
    says (adaptive, or every 5 s). A due job of a listed kind costs one list request (a page per
    100 objects created since the oldest job asked about), answering too the jobs of that list
    due within `batch_ahead_seconds`; other jobs cost a request each."""
    bounds = bounds_of(name)
    lists, max_pages = LISTS.get(name, ({}, 0))
    rng = random.Random(f"{seed}-{name}-arrivals")
    mean = statistics.fmean(total(job) for _, job in drawn)
    t, jobs = 0.0, []
    for kind, job in drawn:
        t += rng.expovariate(live / mean)
        jobs.append(Live(kind, job, t, PollClock(submitted_at=t), due=t))
    history: dict[str, DurationHistory] = {}
    heap = [(j.due, n, 0) for n, j in enumerate(jobs)]
    heapq.heapify(heap)
    fleet = Fleet()
    running: set[int] = set()

    def observe(n: int, now: float) -> None:
        j = jobs[n]
        seen = status_at(j.job, now - j.arrived)
        if seen is None:
            j.late = now - (j.arrived + total(j.job))
            fleet.lateness.append(j.late)
            history.setdefault(j.kind, DurationHistory()).add(now - j.arrived)
            running.discard(n)
            return
        phase, progress, position = seen
        if policy == "adaptive":
            delay = plan_poll(bounds, j.clock, phase=phase, progress=progress, queue_position=position, now=now,
                              typical_total=history.get(j.kind, DurationHistory()).typical())
        else:
            delay = FIVE_SECONDS
        j.due, j.version = now + delay, j.version + 1
        heapq.heappush(heap, (j.due, n, j.version))

    while heap:
        now, n, version = heapq.heappop(heap)
        j = jobs[n]
        if j.late is not None or version != j.version:
            continue
        running.add(n)
        listed = lists.get(j.kind)
        if listed is None:
            fleet.requests += 1
            observe(n, now)
            continue
        ahead = now + Provider.batch_ahead_seconds
        group = [m for m in running if lists.get(jobs[m].kind) == listed and jobs[m].due <= ahead] or [n]
        oldest = min(jobs[m].arrived for m in group)
        newer = sum(1 for k in jobs if lists.get(k.kind) == listed and oldest <= k.arrived <= now)
        pages = max(1, math.ceil(newer / PAGE))
        fleet.requests += min(pages, max_pages)
        if pages > max_pages:  # the scan stopped early: the oldest jobs are polled one by one
            reached = sorted(group, key=lambda m: jobs[m].arrived)
            fleet.requests += max(0, len(group) - max_pages * PAGE)
            group = reached
        for m in group:
            observe(m, now)
            if name == "viggle" and jobs[m].late is not None:
                fleet.requests += 1  # Viggle reads a listed object whole once it is finished
    return fleet


def summary(counts: list[float], lateness: list[float]) -> dict:
    return {"polls_per_job": statistics.fmean(counts), "p50_late_s": percentile(lateness, 50),
            "p95_late_s": percentile(lateness, 95), "max_late_s": max(lateness)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run(jobs: int, spread: float, seed: int, live: int) -> dict:
    results: dict = {}
    for name in PROVIDERS:
        drawn = draw(name, jobs, spread, seed)
        alone = run_alone(name, drawn)
        base = alone[("fixed 5 s", "all")]["polls_per_job"]
        bounds = bounds_of(name)
        kinds = sorted({kind for kind, _ in drawn})
        polls = {k: bound_polls([total(job) for kind, job in drawn if kind == k], bounds.maximum,
                                (name, k) not in NO_PROGRESS) for k in kinds}
        bound = {k: polls[k] / alone[("fixed 5 s", k)]["polls_per_job"] for k in kinds}
        counts = {k: sum(1 for kind, _ in drawn if kind == k) for k in kinds}
        bound["all"] = sum(polls[k] * counts[k] for k in kinds) / len(drawn) / base
        fleets = {label: run_fleet(name, drawn, live, seed, label) for label in ("adaptive", "fixed 5 s")}
        results[name] = {
            "bounds": [bounds.minimum, bounds.maximum], "kinds": kinds, "alone": alone, "fixed_5s_polls": base,
            "bound_vs_fixed_5s": bound,
            "fleet": {label: {"requests_per_job": f.requests / jobs, "p95_late_s": percentile(f.lateness, 95),
                              "requests_vs_fixed_5s": f.requests / jobs / base} for label, f in fleets.items()}}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=400, help="simulated jobs per provider")
    parser.add_argument("--spread", type=float, default=0.25, help="log-normal sigma of durations")
    parser.add_argument("--live", type=int, default=20, help="jobs running at once in the fleet run")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    results = run(args.jobs, args.spread, args.seed, args.live)
    print(f"{args.jobs} jobs per provider, duration spread {args.spread}, seed {args.seed}")
    print("\nalone: one job at a time, a request per poll")
    print(f"{'provider':<11}{'bounds':>10}{'kind':>11}{'policy':>13}{'polls/job':>11}{'p50 late':>10}"
          f"{'p95 late':>10}{'max late':>10}{'vs fixed 5 s':>14}")
    for name, result in results.items():
        bounds = "{:g}-{:g} s".format(*result["bounds"])
        for kind in ["all", *result["kinds"]] if len(result["kinds"]) > 1 else ["all"]:
            base = result["alone"][("fixed 5 s", kind)]["polls_per_job"]
            for label in ("adaptive", "fixed 5 s", "fixed 30 s"):
                row = result["alone"][(label, kind)]
                print(f"{name:<11}{bounds:>10}{kind:>11}{label:>13}{row['polls_per_job']:>11.1f}"
                      f"{row['p50_late_s']:>10.1f}{row['p95_late_s']:>10.1f}{row['max_late_s']:>10.1f}"
                      f"{row['polls_per_job'] / base:>14.2f}")
        for kind, ratio in result["bound_vs_fixed_5s"].items():
            if len(result["kinds"]) > 1 or kind == "all":
                print(f"{name:<11}{bounds:>10}{kind:>11}{'bound':>13}{'':>41}{ratio:>14.2f}")
    print(f"\nfleet: about {args.live} jobs running at once, batched where a list tells status")
    print(f"{'provider':<11}{'policy':>13}{'requests/job':>14}{'p95 late':>10}{'vs fixed 5 s alone':>20}")
    for name, result in results.items():
        for label, row in result["fleet"].items():
            print(f"{name:<11}{label:>13}{row['requests_per_job']:>14.2f}{row['p95_late_s']:>10.1f}"
                  f"{row['requests_vs_fixed_5s']:>20.2f}")
    summary_line = {name: {
        "alone": {"p95_late_s": round(r["alone"][("adaptive", "all")]["p95_late_s"], 2),
                  "bound_vs_fixed_5s": round(r["bound_vs_fixed_5s"]["all"], 3),
                  "requests_vs_fixed_5s": round(r["alone"][("adaptive", "all")]["polls_per_job"]
                                                / r["fixed_5s_polls"], 3)},
        "fleet": {"live": args.live, "p95_late_s": round(r["fleet"]["adaptive"]["p95_late_s"], 2),
                  "requests_vs_fixed_5s": round(r["fleet"]["adaptive"]["requests_vs_fixed_5s"], 3)}}
        for name, r in results.items()}
    print(json.dumps(summary_line))


if __name__ == "__main__":
    main()
