"""/echo: the test provider's command, built the way real cogs are (defer first, then the job)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs import JobError


class Echo(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    @app_commands.command(name="echo", description="Echo a text through the test provider")
    async def echo(self, interaction: discord.Interaction, text: str, file: discord.Attachment | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        params = {"text": text}
        if file is not None:
            params["file"] = {"url": file.url, "filename": file.filename, "size": file.size}
        try:
            await self.bot.jobs.start(interaction, provider="echo", kind="echo", summary=f"Echo: {text}",
                                      params=params)
        except JobError as exc:
            await interaction.edit_original_response(content=str(exc))


async def setup(bot) -> None:
    await bot.add_cog(Echo(bot))
