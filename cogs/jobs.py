"""/jobs: list, show and cancel jobs. Thin: parse, ask the job service, answer privately."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.cards import shorten
from bot.jobs import JobError, reply_private
from bot.plain import plain


def _line(job) -> str:
    progress = f" {job.progress * 100:.0f}%" if job.progress is not None and job.state.is_live else ""
    summary = plain(shorten(job.summary, 60))
    return f"`{job.id}` · {job.provider} {job.kind} · **{job.state}**{progress} · <@{job.owner_id}> · {summary}"


class Jobs(commands.GroupCog, group_name="jobs", group_description="Your video jobs"):
    def __init__(self, bot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="list", description="Your recent jobs (server managers see the whole server's)")
    async def list_jobs(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # the store may be slow: ack first
        jobs = await self.bot.jobs.list_for(interaction)
        if not jobs:
            await reply_private(interaction, "No jobs yet. Start one with `/splat create`, `/viggle` or `/layers`.")
            return
        lines, used = [], 0
        for job in jobs:  # whole lines only: a cut line would hide its end
            line = _line(job)
            if used + len(line) + 1 > 1950:
                lines.append(f"…and {len(jobs) - len(lines)} more.")
                break
            lines.append(line)
            used += len(line) + 1
        await reply_private(interaction, "\n".join(lines))

    @app_commands.command(name="show", description="Details of one job")
    @app_commands.describe(id="The job id, as shown on its status message")
    async def show(self, interaction: discord.Interaction, id: app_commands.Range[str, 1, 32]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            job = await self.bot.jobs.get_visible(interaction, id)
        except JobError as exc:
            await reply_private(interaction, str(exc))
            return
        await reply_private(interaction, None, embed=self.bot.jobs.card(job))

    @app_commands.command(name="cancel", description="Cancel one of your jobs")
    @app_commands.describe(id="The job id, as shown on its status message")
    async def cancel(self, interaction: discord.Interaction, id: app_commands.Range[str, 1, 32]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await self.bot.jobs.cancel(interaction, id)
        except JobError as exc:
            text = str(exc)
        await reply_private(interaction, text)


async def setup(bot) -> None:
    await bot.add_cog(Jobs(bot))
