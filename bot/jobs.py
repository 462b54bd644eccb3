"""The job service: what a cog or a button may do with jobs, with the checks that go with it.

Cogs answer the interaction first (an ephemeral defer), then call `start`; the service stores the
job, posts the public status message and wakes the runner. Uploads happen later, in the runner.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

import discord

from bot.costs import ESTIMATE_KEY, Estimate, amount_words, month_key
from bot.delivery import Delivery, status_embed
from bot.models import Job, JobState, utcnow
from bot.providers.base import Provider, user_message
from bot.runner import Runner
from bot.store import BudgetExceeded, Charge, Cooldown, CoolingDown, LimitReached, Store, new_job_id

log = logging.getLogger(__name__)

#: a new job's first step waits this long for the command to post its status card (it is woken
#: at once when the card is up)
FIRST_STEP_DELAY = timedelta(seconds=3)


class JobError(Exception):
    """A refusal phrased for the user (shown ephemerally)."""


#: why a job is refused outside a server: budgets, job limits and cost questions are per server
GUILD_ONLY = ("Jobs that spend credits can only be started in a server, where its budget and limits apply; "
              "nothing was started. Run the command in a server channel instead.")


async def reply_private(interaction: discord.Interaction, text: str | None, **kwargs: Any) -> None:
    """Answer only the user who acted, whether or not the interaction was answered already."""
    kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, **kwargs)
    else:
        await interaction.response.send_message(text, ephemeral=True, **kwargs)


#: what posting results needs; checked before anything is spent (the status card itself goes out
#: through the interaction webhook, which needs none of these, so a job could otherwise run and
#: fail only when its paid results cannot be posted)
NEEDED = (("send_messages", "Send Messages"), ("embed_links", "Embed Links"), ("attach_files", "Attach Files"),
          ("read_message_history", "Read Message History"))


def missing_permissions(interaction: discord.Interaction) -> list[str]:
    perms = interaction.app_permissions
    if interaction.guild_id is None or perms.administrator:
        return []
    return [label for attr, label in NEEDED if not getattr(perms, attr)]


def is_manager(interaction: discord.Interaction) -> bool:
    perms = getattr(interaction.user, "guild_permissions", None)
    return bool(perms and (perms.manage_guild or perms.administrator))


class JobService:
    def __init__(self, store: Store, runner: Runner, delivery: Delivery, providers: dict[str, Provider], *,
                 max_per_user: int, max_per_guild: int, cooldowns: dict[str, float] | None = None) -> None:
        self.store = store
        self.runner = runner
        self.delivery = delivery
        self.providers = providers
        self.max_per_user = max_per_user
        self.max_per_guild = max_per_guild
        #: seconds between two uses of a command by one user, by command name ("viggle render")
        self.cooldowns = dict(cooldowns or {})

    def _cooldown_for(self, interaction: discord.Interaction, command: str | None = None) -> Cooldown | None:
        """The user's cooldown for `command`, else for the slash command being run (a button or
        form names the command it belongs to: it has none of its own)."""
        command = command or (interaction.command.qualified_name if interaction.command is not None else None)
        if command is None:
            return None
        seconds = self.cooldowns.get(command, self.cooldowns.get("*", 0.0))
        return Cooldown(interaction.user.id, command, seconds, utcnow()) if seconds > 0 else None

    @staticmethod
    def _wait_text(exc: CoolingDown) -> str:
        seconds = max(1, math.ceil((exc.until - utcnow()).total_seconds()))
        return (f"You're going too fast: you can use `/{exc.command}` again <t:{math.ceil(exc.until.timestamp())}:R> "
                f"(in {seconds} s).")

    async def cooldown(self, interaction: discord.Interaction, command: str | None = None) -> None:
        """Take the user's cooldown for a command that calls a provider (default: the one being
        run); JobError, saying how long to wait, while it runs. Job commands take theirs in
        `start`, in the same write as the job."""
        taken = self._cooldown_for(interaction, command)
        if taken is None:
            return
        try:
            await self.store.take_cooldown(taken)
        except CoolingDown as exc:
            raise JobError(self._wait_text(exc)) from None

    def provider(self, name: str, display: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise JobError(f"{display} is not configured on this bot, so this command is switched off. "
                           "An operator can enable it by setting its API key.")
        return provider

    async def recalled_provider(self, name: str, display: str, *, recent: int = 50) -> Provider:
        """`provider`, first told what its latest jobs in the store know (see Provider.recall)."""
        provider = self.provider(name, display)
        provider.recall(await self.store.list_jobs(provider=name, limit=recent))
        return provider

    async def start(self, interaction: discord.Interaction, *, provider: str, kind: str, summary: str,
                    params: dict[str, Any], estimate: Estimate | None = None, command: str | None = None) -> Job:
        """Store a new job, post its status message, wake the runner. The interaction must have
        been deferred ephemerally; JobError means nothing was created. An `estimate` is booked
        against the server's monthly budget in the same transaction as the job, and the cooldown
        of `command` (the slash command the job belongs to, also when a button starts it) is
        taken there too. Only in a server: outside one no budget or server limit would apply."""
        prov = self.provider(provider, provider)
        if interaction.guild_id is None:
            raise JobError(GUILD_ONLY)
        missing = missing_permissions(interaction)
        if missing:
            raise JobError("I can't deliver results in this channel: I'm missing the "
                           f"{', '.join(missing)} permission{'s' if len(missing) > 1 else ''} here. "
                           "Ask a server manager to grant it, or use another channel.")
        owner = interaction.user.id
        now = utcnow()
        charge = None
        if estimate is not None:
            params = {**params, ESTIMATE_KEY: estimate.to_json()}
            charge = Charge(provider, interaction.guild_id, month_key(now), estimate.amount)
        job = Job(id=new_job_id(), provider=provider, kind=kind, state=JobState.ACCEPTED, owner_id=owner,
                  channel_id=interaction.channel_id or 0, guild_id=interaction.guild_id, summary=summary,
                  params=params, created_at=now, updated_at=now, next_run_at=now + FIRST_STEP_DELAY,
                  deadline_at=now + timedelta(seconds=prov.limits.deadline_for(kind)))
        try:
            job = await self.store.create_job(job, max_per_user=self.max_per_user, max_per_guild=self.max_per_guild,
                                              charge=charge,
                                              cooldown=self._cooldown_for(interaction, command))
        except CoolingDown as exc:
            raise JobError(self._wait_text(exc)) from None
        except BudgetExceeded as exc:
            name = prov.display_name
            if exc.left <= 0:
                raise JobError(f"This server's monthly {name} budget is used up "
                               f"({amount_words(provider, exc.limit)}); nothing was started. "
                               "A server manager can raise it with `/budget set`.") from None
            raise JobError(f"This would cost {amount_words(provider, exc.amount)}, but only "
                           f"{amount_words(provider, exc.left)} of this server's monthly {name} budget "
                           f"({amount_words(provider, exc.limit)}) is left; nothing was started.") from None
        except LimitReached as exc:
            if exc.scope == "user":
                raise JobError(f"You already have {exc.limit} jobs running; wait for one to finish or "
                               "cancel one with `/jobs cancel`.") from None
            raise JobError("This server has too many jobs running right now; please try again in a few "
                           "minutes.") from None
        embed, view, fp = self.delivery.status_payload(job)
        try:
            cost = f" Expected cost: {estimate.words()}." if estimate is not None else ""
            await interaction.edit_original_response(
                content=f"Started job `{job.id}`; progress is shown below.{cost}", view=None)
            # with the job's nonce: a card the runner posts after a crash here is this same one
            channel = self.delivery.client.get_partial_messageable(job.channel_id)
            message = await self.delivery.post_card(job, channel, embed, view, update=False)
            await self.store.record_status(job.id, message_id=message.id, fingerprint=fp, edited_at=utcnow(),
                                           only_if_unset=True)
        except discord.HTTPException:
            log.warning("job %s: could not post the status message; the runner will", job.id)
        await self.store.wake(job.id)
        self.runner.wake()
        return job

    async def get_visible(self, interaction: discord.Interaction, job_id: str) -> Job:
        job = await self.store.get_job(job_id.strip().lower().strip("`"))
        if job is None or (job.owner_id != interaction.user.id
                           and not (is_manager(interaction) and job.guild_id == interaction.guild_id)):
            raise JobError(f"There is no job `{discord.utils.escape_markdown(job_id)[:20]}` that you can see.")
        return job

    def may_act(self, interaction: discord.Interaction, job: Job) -> bool:
        return job.owner_id == interaction.user.id or (is_manager(interaction) and job.guild_id == interaction.guild_id)

    async def cancel(self, interaction: discord.Interaction, job_id: str) -> str:
        job = await self.get_visible(interaction, job_id)
        if not self.may_act(interaction, job):
            raise JobError("Only the person who started this job, or a server manager, can cancel it.")
        if job.state.is_terminal:
            return f"Job `{job.id}` is already {job.state}."
        if job.cancel_refused_at is not None:
            return (f"{self.delivery.provider_name(job)} would not stop job `{job.id}`: it keeps running there "
                    "and counts toward your job limit until it ends; its results will be posted here.")
        if job.state in (JobState.COLLECTING, JobState.DELIVERING):
            return (f"Job `{job.id}` has finished and its results are on their way; "
                    "it can no longer be cancelled.")
        if not await self.store.request_cancel(job.id):
            return f"Job `{job.id}` can no longer be cancelled."
        self.runner.wake()
        return f"Cancelling job `{job.id}`…"

    async def list_for(self, interaction: discord.Interaction) -> list[Job]:
        if is_manager(interaction) and interaction.guild_id:
            return await self.store.list_jobs(guild_id=interaction.guild_id, limit=20)
        return await self.store.list_jobs(owner_id=interaction.user.id, limit=20)

    def card(self, job: Job) -> discord.Embed:
        return status_embed(job, self.delivery.provider_name(job))

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: str, key: str | None) -> None:
        """Cancel, Refresh and Download clicks, from any message, before or after a restart."""
        # store round trips follow (three for Cancel): ack Discord's 3 s deadline first
        if action == "dl":
            await interaction.response.defer(ephemeral=True, thinking=True)
        else:
            await interaction.response.defer()
        job = await self.store.get_job(job_id)
        if job is None:
            await reply_private(interaction, "This job no longer exists.")
            return
        if action == "cancel":
            if not self.may_act(interaction, job):
                await reply_private(interaction, "Only the person who started this job, or a server manager, "
                                                 "can cancel it.")
                return
            try:
                text = await self.cancel(interaction, job_id)
            except JobError as exc:
                text = str(exc)
            await reply_private(interaction, text)
        elif action == "refresh":
            if not self.may_act(interaction, job):
                await reply_private(interaction, "Only the person who started this job, or a server manager, "
                                                 "can refresh it.")
                return
            self.runner.refresh(job)
        elif action == "dl" and key:
            await self._download(interaction, job, key)

    async def _download(self, interaction: discord.Interaction, job: Job, key: str) -> None:
        """A fresh signed link, made at click time and shown only to whoever clicked."""
        provider = self.providers.get(job.provider)
        if provider is None:
            await reply_private(interaction, "This provider is not configured on this bot any more.")
            return
        try:
            url = await provider.fresh_link(job, key)
        except Exception as exc:
            await interaction.followup.send(user_message(exc, provider.display_name), ephemeral=True)
            return
        await interaction.followup.send(f"Here is a fresh link (it expires soon): <{url}>", ephemeral=True)
