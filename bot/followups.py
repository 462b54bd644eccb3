"""Follow-up buttons on result cards: the next step after a result, one click away.

Their custom_id carries the action and the job id, so they work after a restart. What a click does
lives in the `cogs.followups` cog (it reuses the commands' own checks), reached as
`client.followups`; this module only knows which buttons a finished job gets.
"""

from __future__ import annotations

import re

import discord

from bot.models import Job, JobState

#: (provider, kind) -> the buttons its result card carries: (action, label)
FOLLOW_UPS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("viggle", "character"): (("scene", "Render into a scene…"),),
    ("viggle", "scene"): (("char", "Render a character…"),),
    ("viggle", "template"): (("char", "Render a character…"),),
    ("viggle", "render"): (("again", "Render again"), ("mix", "Mix with another image")),
    ("viggle", "mix"): (("again", "Render again"), ("mix", "Mix with another image")),
    ("vid2scene", "splat"): (("ply", "Get PLY"), ("vis", "Make public/private"), ("rename", "Rename")),
    ("scenario", "layers"): (("instr", "Try another instruction"),),
}
ACTIONS = "|".join(sorted({a for buttons in FOLLOW_UPS.values() for a, _ in buttons}))
#: a job id as custom_ids carry it (buttons, the picker and the forms they open)
JOB_ID = r"[a-z0-9]{4,16}"


class FollowUpButton(discord.ui.DynamicItem[discord.ui.Button],
                     template=rf"fu:(?P<action>{ACTIONS}):(?P<job_id>{JOB_ID})"):
    def __init__(self, action: str, job_id: str, *, label: str | None = None) -> None:
        style = discord.ButtonStyle.primary if action in ("scene", "char", "again", "mix", "instr") \
            else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label or action, style=style, custom_id=f"fu:{action}:{job_id}"))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> FollowUpButton:
        return cls(match["action"], match["job_id"], label=item.label)

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = getattr(interaction.client, "followups", None)
        if handler is None:
            await interaction.response.send_message("This button is switched off on this bot.", ephemeral=True)
            return
        await handler.on_click(interaction, self.action, self.job_id)


def followup_view(job: Job) -> discord.ui.View | None:
    buttons = FOLLOW_UPS.get((job.provider, job.kind))
    if not buttons or job.state is not JobState.DONE:
        return None
    view = discord.ui.View(timeout=None)
    for action, label in buttons:
        view.add_item(FollowUpButton(action, job.id, label=label))
    return view
