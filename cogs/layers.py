"""/layers: split a video into transparent layers with Scenario. Thin: check the cheap things
(an attachment that looks like a video, within the size limit; a usable instruction; 1-10 layers),
then hand the job to the job service. Probing and uploading happen in the runner."""

from __future__ import annotations

from pathlib import PurePosixPath

import discord
from discord import app_commands
from discord.ext import commands

from bot.confirm import JobRequest, launch
from bot.costs import scenario_estimate
from bot.jobs import JobError

PROVIDER, DISPLAY = "scenario", "Scenario"
VIDEO_EXTENSIONS = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}
MAX_INSTRUCTION = 500
DEFAULT_MAX_BYTES = 500 * 1024 * 1024


def _mib(size: int) -> str:
    return f"{size / 1048576:.0f} MB" if size >= 1048576 else f"{size / 1024:.0f} KB"


def check_attachment(video: discord.Attachment, max_bytes: int) -> str | None:
    """Why this attachment cannot be used, or None. The runner probes the real bytes later."""
    ext = PurePosixPath(video.filename.lower()).suffix
    ctype = (video.content_type or "").split(";")[0].strip().lower()
    if ext not in VIDEO_EXTENSIONS and not ctype.startswith("video/"):
        kind = f"`{ext}` file" if ext else "file without an extension"
        return (f"`{discord.utils.escape_markdown(video.filename)[:80]}` is a {kind}, not a video. "
                "Attach an MP4, MOV or WebM video.")
    if ctype and not ctype.startswith("video/") and ctype != "application/octet-stream":
        return f"Discord says this attachment is `{ctype[:40]}`, not a video. Attach an MP4, MOV or WebM video."
    if video.size == 0:
        return "The attached video is empty."
    if video.size > max_bytes:
        return f"The video is {_mib(video.size)}; Scenario's layer extraction accepts at most {_mib(max_bytes)}."
    return None


def check_instruction(text: str) -> str | None:
    if not text.strip():
        return ("Describe how to split the video, e.g. `the dancer, her shadow, the background` or "
                "`each person separately`.")
    if len(text) > MAX_INSTRUCTION:
        return f"The separation instruction is {len(text)} characters; please keep it under {MAX_INSTRUCTION}."
    return None


def prepare_layers(provider, video: dict, instruction: str, max_layers: int) -> JobRequest:
    """Every check `/layers` makes, for the command and the "Try another instruction" button.
    `video` is the attachment's stored form (url, filename, size, content_type). Raises JobError."""
    instruction = " ".join(str(instruction).split())
    problem = check_instruction(instruction)
    if problem is None and not 1 <= int(max_layers) <= 10:
        problem = "Max layers must be between 1 and 10."
    if problem:
        raise JobError(problem)
    params = {"video": video, "instruction": instruction, "max_layers": int(max_layers)}
    quote = getattr(provider, "quotes", {}).get(int(max_layers))
    summary = f"Layers (up to {int(max_layers)}) of {video.get('filename', 'a video')[:60]}: {instruction[:200]}"
    return JobRequest(PROVIDER, "layers", summary, params, scenario_estimate(quote, int(max_layers)))


class Layers(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    @app_commands.command(name="layers", description="Split a video into transparent layers (Scenario)")
    @app_commands.guild_only()  # a paid job: only where a server's budget and limits apply
    @app_commands.describe(
        video="The video to split (MP4, MOV or WebM)",
        instruction="How to split it: the objects or the rule, e.g. 'each person separately', not the scene",
        max_layers="At most this many layers (1-10, default 6); more layers cost more",
    )
    async def layers(self, interaction: discord.Interaction, video: discord.Attachment,
                     instruction: app_commands.Range[str, 1, MAX_INSTRUCTION],
                     max_layers: app_commands.Range[int, 1, 10] = 6) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            provider = await interaction.client.jobs.recalled_provider(PROVIDER, DISPLAY)
        except JobError as exc:
            await interaction.edit_original_response(content=str(exc))
            return
        max_bytes = int(getattr(provider, "max_input_bytes", DEFAULT_MAX_BYTES))
        video_params = {"url": video.url, "filename": video.filename, "size": video.size,
                        "content_type": video.content_type}
        try:
            problem = check_attachment(video, max_bytes)
            if problem:
                raise JobError(problem)
            request = prepare_layers(provider, video_params, str(instruction), int(max_layers))
        except JobError as exc:
            await interaction.edit_original_response(content=str(exc))
            return
        await launch(interaction, request)


async def setup(bot) -> None:
    await bot.add_cog(Layers(bot))
