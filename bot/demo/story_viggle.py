"""Demo story for Viggle: a character from a picture, a scene from a clip, then a render of the
character in the scene, each posted to the channel (thumbnail cards, then the MP4)."""

from __future__ import annotations

from bot.demo import DemoContext

SECTION = "viggle"


def make_sandbox():
    from sandbox.viggle import ViggleSandbox

    return ViggleSandbox(credits=50, character_seconds=0.6, scene_seconds=0.6, render_seconds=2.0)


async def _done(ctx: DemoContext, job_id: str, what: str) -> None:
    job = await ctx.wait_done(job_id, timeout=60)
    if job.state != "done":
        raise RuntimeError(f"the {what} job ended {job.state}: {job.last_error}")


async def play(ctx: DemoContext) -> None:
    from sandbox.media import image_bytes, make_video

    portrait = ctx.workdir / "alice.png"
    portrait.write_bytes(image_bytes(256, 256, label="Alice", hue=2))
    clip = make_video(ctx.workdir / "dance.mp4", seconds=2.0, width=160, height=120, fps=12)

    job = await ctx.run("viggle character", name="Alice",
                        image=ctx.emu.attachment(portrait, "alice.png", "image/png"))
    await _done(ctx, job, "character")
    job = await ctx.run("viggle scene", name="Dance", background_mode="original",
                        video=ctx.emu.attachment(clip, "dance.mp4", "video/mp4"))
    await _done(ctx, job, "scene")
    job = await ctx.run("viggle render", scene="Dance", character="Alice", background_mode="transparent")
    await _done(ctx, job, "render")
