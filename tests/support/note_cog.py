"""/note: a test command that answers with a modal, then posts the note with a select menu whose
choice edits the message. It exercises the console's modal and select paths with the real bot."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands


class Colour(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.select(custom_id="note:colour", placeholder="Pick a colour",
                       options=[discord.SelectOption(label="Red", value="red"),
                                discord.SelectOption(label="Blue", value="blue")])
    async def colour(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        content = interaction.message.content.split(" · ")[0] + f" · colour: {select.values[0]}"
        await interaction.response.edit_message(content=content)


class NoteForm(discord.ui.Modal, title="A note"):
    text = discord.ui.TextInput(label="Your note", style=discord.TextStyle.paragraph, max_length=200)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"{interaction.user.mention} noted: {self.text.value}",
                                                view=Colour(), allowed_mentions=discord.AllowedMentions.none())


class Note(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot
        bot.add_view(Colour())

    @app_commands.command(name="note", description="Write a note in a form")
    async def note(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(NoteForm())


async def setup(bot) -> None:
    await bot.add_cog(Note(bot))
