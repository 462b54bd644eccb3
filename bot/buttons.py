"""Buttons whose custom_id carries the job id, so they keep working after a restart.

Each click is routed to the bot's job service (`client.jobs`), which checks who may act.
"""

from __future__ import annotations

import re

import discord

from bot.models import Job, JobState


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"job:(?P<action>cancel|refresh|dl):"
                                                                        r"(?P<job_id>[a-z0-9]{4,16})"
                                                                        r"(?::(?P<key>[a-z0-9_]{1,20}))?"):
    """Cancel / Refresh on the status message, Download on a result message."""

    def __init__(self, action: str, job_id: str, key: str | None = None, *, label: str | None = None) -> None:
        styles = {"cancel": discord.ButtonStyle.danger, "refresh": discord.ButtonStyle.secondary,
                  "dl": discord.ButtonStyle.primary}
        custom_id = f"job:{action}:{job_id}" + (f":{key}" if key else "")
        super().__init__(discord.ui.Button(label=label or action.title(), style=styles[action], custom_id=custom_id))
        self.action, self.job_id, self.key = action, job_id, key

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> JobButton:
        return cls(match["action"], match["job_id"], match["key"], label=item.label)

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.jobs.on_button(interaction, self.action, self.job_id, self.key)  # type: ignore[attr-defined]


def job_buttons(job: Job) -> discord.ui.View | None:
    """Cancel and Refresh while a job can still be stopped; nothing once it is over."""
    if job.state.is_terminal or job.state is JobState.DELIVERING:
        return None
    view = discord.ui.View(timeout=None)
    if not job.cancel_requested and job.cancel_refused_at is None:
        view.add_item(JobButton("cancel", job.id))
    view.add_item(JobButton("refresh", job.id))
    return view


def result_buttons(job: Job, downloads: list[tuple[str, str]]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for label, key in downloads[:25]:
        view.add_item(JobButton("dl", job.id, key, label=label))
    return view
