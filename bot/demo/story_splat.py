"""The splat story for `python -m bot demo`: a user films a small scene, asks for a 3D splat,
watches the queue and training progress, and gets the SPZ and a preview back."""

from __future__ import annotations

SECTION = "vid2scene"


def make_sandbox():
    """vid2scene's stand-in with quick timings, so the story takes seconds."""
    from sandbox.vid2scene import Vid2SceneSandbox

    return Vid2SceneSandbox(**QUICK)


#: a queue, a short processing phase and a few seconds of training with previews
QUICK = {"queue_seconds": 1.0, "pickup_seconds": 0.1, "processing_seconds": 0.5, "training_seconds": 4.0}


async def play(ctx) -> None:
    from sandbox.media import make_video

    video = make_video(ctx.workdir / "desk-orbit.mp4", seconds=2.0, width=160, height=120, fps=12, hue=3)
    attachment = ctx.emu.attachment(video, "desk-orbit.mp4", "video/mp4")
    job_id = await ctx.run("splat create", video=attachment, title="My desk, orbit")
    job = await ctx.wait_done(job_id, timeout=90)
    if str(job.state) != "done":
        raise RuntimeError(f"the splat job ended {job.state}: {job.last_error}")
    listing = await ctx.emu.slash("splat list", user=ctx.user, options={})
    await listing.wait_reply(timeout=10)
    ctx.notes.append(f"splat job {job_id} delivered {len(job.artifacts)} file(s)")
