"""What the crash test does, drawn from one seed: which users run which commands, which of them a
provider is scripted to fail, and when the bot is killed. The same seed gives the same plan;
the exact interleaving with a real process still varies a little from run to run."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

KINDS = ("character", "scene", "render", "splat", "layers")
#: the provider behind each kind, and the job parameter that carries the lifecycle's own tag
PROVIDER = {"character": "viggle", "scene": "viggle", "render": "viggle", "splat": "vid2scene",
            "layers": "scenario"}
TAG_PARAM = {"character": "name", "scene": "name", "render": "bg_color", "splat": "title", "layers": "instruction"}
#: how a kill is aimed: after a random delay; into a paid submission whose answer is still on its
#: way; just after a job's result or failure notice went out; just after the bot recorded a job's
#: end (in both, its other finishing steps are pending)
KILL_MODES = ("random", "paid", "finish", "ended")


@dataclass
class Lifecycle:
    index: int
    user: int  # index into the plan's users
    kind: str
    fail: bool  # the provider is scripted to fail this job
    setup: bool = False  # made before any kill: the character and scene a user's renders use
    job_id: str | None = None
    commands: int = 0  # times the command was sent (again after a kill lost the answer)
    refusal: str | None = None  # the bot answered without starting a job

    @property
    def provider(self) -> str:
        return PROVIDER[self.kind]

    @property
    def tag(self) -> str:
        """Unique per lifecycle, sent as the user's own input, so both the bot's job row and the
        provider's record can be traced back to it."""
        if self.kind == "render":
            return f"{self.index},{self.user},200"  # the solid background colour R,G,B
        if self.kind == "layers":
            return f"each person separately, run {self.index:03d}"
        who = "base " if self.setup else ""
        return f"crash {who}{self.kind} {self.index:03d}"


@dataclass
class Plan:
    seed: int
    users: int
    lifecycles: list[Lifecycle]
    #: (mode, delay or jitter, breather after the restart), in seconds
    kills: list[tuple[str, float, float]] = field(default_factory=list)

    def for_user(self, user: int) -> list[Lifecycle]:
        return [lc for lc in self.lifecycles if lc.user == user]

    def base(self, user: int, kind: str) -> Lifecycle:
        return next(lc for lc in self.lifecycles if lc.user == user and lc.setup and lc.kind == kind)


def make_plan(seed: int, count: int, users: int = 6, fail_share: float = 0.25, kills: int | None = None) -> Plan:
    """`count` lifecycles under kills (every kind about equally often, every user's renders
    using a base character and scene made first, without kills), and the kill schedule: about
    one kill per lifecycle (`kills`), with a breather now and then so that steps longer than the
    gap between kills (a splat's turntable) still finish, and no kill once they are used up."""
    rng = random.Random(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(kinds)
    chaos = [Lifecycle(i, i % users, kind, fail=rng.random() < fail_share) for i, kind in enumerate(kinds)]
    render_users = sorted({lc.user for lc in chaos if lc.kind == "render"})
    setup = []
    for user in render_users:
        for kind in ("character", "scene"):
            setup.append(Lifecycle(count + len(setup), user, kind, fail=False, setup=True))
    schedule = []
    for _ in range(count if kills is None else kills):
        mode = rng.choices(KILL_MODES, weights=(3, 2, 2, 2))[0]
        pause = {"random": (0.3, 1.5), "finish": (0.0, 0.5)}.get(mode, (0.0, 0.05))
        rest = rng.uniform(3.0, 6.0) if rng.random() < 0.2 else 0.0
        schedule.append((mode, rng.uniform(*pause), rest))
    return Plan(seed, users, setup + chaos, schedule)
