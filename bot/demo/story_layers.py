"""Demo story for Scenario: a short clip split into transparent layers, posted in order with a
side-by-side preview."""

from __future__ import annotations

from bot.demo import DemoContext

SECTION = "scenario"


def make_sandbox():
    from sandbox.scenario import ScenarioSandbox

    return ScenarioSandbox(upload_validate_seconds=0.2, queue_seconds=0.3, warmup_seconds=0.2, run_seconds=1.0,
                           layers_found=3, layer_seconds=1.0)


async def play(ctx: DemoContext) -> None:
    from sandbox.media import make_video

    clip = make_video(ctx.workdir / "street.mp4", seconds=2.0, width=160, height=120, fps=12, hue=3)
    job_id = await ctx.run("layers", video=ctx.emu.attachment(clip, "street.mp4", "video/mp4"),
                           instruction="each person separately, then the background", max_layers=4)
    job = await ctx.wait_done(job_id, timeout=60)
    if job.state != "done":
        raise RuntimeError(f"the layers job ended {job.state}: {job.last_error}")
