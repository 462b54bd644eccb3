"""Starting a paid job: state its cost, ask first when it is above the server's threshold.

Slash commands and follow-up buttons both end here with a validated `JobRequest`, so both take the
same path to `JobService.start` (which books the cost against the budget with the job). A question
is kept in the store, and its buttons carry only a token, so it can be answered after a restart;
taking it from the store is atomic, so a double click starts the job once.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import discord

from bot.costs import Estimate, amount_words
from bot.jobs import GUILD_ONLY, JobError, reply_private

#: the slash command each kind of job belongs to. Its cooldown is that command's whether the job is
#: started by the command, by a cost question's "Go ahead" or by a follow-up button (those carry no
#: command of their own, so naming the cooldown after the interaction let them skip it).
JOB_COMMANDS: dict[tuple[str, str], str] = {
    ("viggle", "character"): "viggle character", ("viggle", "scene"): "viggle scene",
    ("viggle", "template"): "viggle template", ("viggle", "render"): "viggle render",
    ("viggle", "mix"): "viggle mix", ("vid2scene", "splat"): "splat create", ("scenario", "layers"): "layers",
}


@dataclass(frozen=True)
class JobRequest:
    """A job a command or button has validated and is ready to start. `command` (the slash
    command the job belongs to, for its cooldown) defaults from JOB_COMMANDS; a kind with no
    command there is a programming error, caught when the request is built."""

    provider: str
    kind: str
    summary: str
    params: dict[str, Any]
    estimate: Estimate | None = None
    command: str = ""

    def __post_init__(self) -> None:
        if not self.command:
            command = JOB_COMMANDS.get((self.provider, self.kind))
            if command is None:
                raise ValueError(f"no command for {self.provider} {self.kind} jobs: add it to JOB_COMMANDS")
            object.__setattr__(self, "command", command)

    def to_json(self) -> dict[str, Any]:
        estimate = self.estimate
        return {"provider": self.provider, "kind": self.kind, "summary": self.summary, "params": self.params,
                "command": self.command,
                "estimate": None if estimate is None else {"amount": estimate.amount, "basis": estimate.basis}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRequest:
        raw = data.get("estimate")
        estimate = Estimate(data["provider"], raw["amount"], raw["basis"]) if raw else None
        # a question asked before requests carried their command gets it from its kind
        return cls(data["provider"], data["kind"], data["summary"], data["params"], estimate,
                   command=data.get("command") or "")


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
            params=request.params, estimate=request.estimate, command=request.command)
    except JobError as exc:
        await interaction.edit_original_response(content=str(exc)[:2000], view=None)


async def launch(interaction: discord.Interaction, request: JobRequest) -> None:
    """Start the job, or first ask with a button when it costs more than the threshold. The
    interaction must have been deferred (ephemerally)."""
    if interaction.guild_id is None:
        await interaction.edit_original_response(content=GUILD_ONLY, view=None)
        return
    estimate = request.estimate
    threshold = await confirm_threshold(interaction.client, interaction.guild_id, request.provider)
    if estimate is None or estimate.amount is None or threshold is None or estimate.amount <= threshold:
        await _start(interaction, request)
        return
    token = secrets.token_hex(6)
    await interaction.client.store.save_pending(token, interaction.user.id, request.to_json())  # type: ignore[attr-defined]
    view = discord.ui.View(timeout=None)
    view.add_item(CostAnswer("go", token))
    view.add_item(CostAnswer("no", token))
    text = (f"This will cost {estimate.words()}. That is more than "
            f"{amount_words(request.provider, threshold)}, so please confirm before anything is spent.")
    await interaction.edit_original_response(content=text, view=view)


class CostAnswer(discord.ui.DynamicItem[discord.ui.Button], template=r"cost:(?P<answer>go|no):(?P<token>[0-9a-f]{12})"):
    """Go ahead / Cancel under a cost question; only the asker may answer."""

    def __init__(self, answer: str, token: str) -> None:
        label, style = (("Go ahead", discord.ButtonStyle.success) if answer == "go"
                        else ("Cancel", discord.ButtonStyle.secondary))
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"cost:{answer}:{token}"))
        self.answer, self.token = answer, token

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> CostAnswer:
        return cls(match["answer"], match["token"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # two store round trips follow: ack Discord first
        store = interaction.client.store  # type: ignore[attr-defined]
        owner = await store.pending_owner(self.token)
        if owner is not None and owner != interaction.user.id:
            await reply_private(interaction, "This question was for someone else.")
            return
        data = await store.take_pending(self.token, interaction.user.id)
        if data is None:
            await reply_private(interaction, "This question was already answered or has expired; "
                                             "run the command again if you still want it.")
            return
        if self.answer == "no":
            await interaction.edit_original_response(content="Cancelled; nothing was started or spent.", view=None)
            return
        await _start(interaction, JobRequest.from_json(data))
