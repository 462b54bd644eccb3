"""Starting a paid job: state its cost, ask first when it is above the server's threshold.

Slash commands and follow-up buttons both end here with a validated `JobRequest`, so both take the
same path to `JobService.start` (which books the cost against the budget with the job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from bot.costs import Estimate, amount_words
from bot.jobs import JobError

#: how long a cost question stays answerable (it is not kept across restarts)
CONFIRM_SECONDS = 600


@dataclass(frozen=True)
class JobRequest:
    """A job a command or button has validated and is ready to start."""

    provider: str
    kind: str
    summary: str
    params: dict[str, Any]
    estimate: Estimate | None = None


async def confirm_threshold(client: Any, guild_id: int | None, provider: str) -> float | None:
    """Above this expected cost the user is asked first: the server's own setting, else the bot's."""
    if guild_id is not None:
        budget = await client.store.get_budget(guild_id, provider)
        if budget is not None and budget.confirm_above is not None:
            return budget.confirm_above
    return client.settings.confirm_cost_above


async def _start(interaction: discord.Interaction, request: JobRequest) -> None:
    try:
        await interaction.client.jobs.start(  # type: ignore[attr-defined]
            interaction, provider=request.provider, kind=request.kind, summary=request.summary,
            params=request.params, estimate=request.estimate)
    except JobError as exc:
        await interaction.edit_original_response(content=str(exc)[:2000], view=None)


async def launch(interaction: discord.Interaction, request: JobRequest) -> None:
    """Start the job, or first ask with a button when it costs more than the threshold. The
    interaction must have been deferred (ephemerally)."""
    estimate = request.estimate
    threshold = await confirm_threshold(interaction.client, interaction.guild_id, request.provider)
    if estimate is None or estimate.amount is None or threshold is None or estimate.amount <= threshold:
        await _start(interaction, request)
        return
    text = (f"This will cost {estimate.words()}. That is more than "
            f"{amount_words(request.provider, threshold)}, so please confirm before anything is spent.")
    await interaction.edit_original_response(content=text, view=ConfirmCost(interaction.user.id, request))


class ConfirmCost(discord.ui.View):
    """Go ahead / Cancel under a cost question; only the asker may answer."""

    def __init__(self, owner_id: int, request: JobRequest) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.owner_id, self.request = owner_id, request

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message("This question was for someone else.", ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Go ahead", style=discord.ButtonStyle.success)
    async def go(self, interaction: discord.Interaction, _button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.defer()
        await _start(interaction, self.request)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, _button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Cancelled; nothing was started or spent.", view=None)
