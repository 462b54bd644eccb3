"""What users see of a job: the status message (edited in place, throttled) and the results
(new messages replying to it, posted exactly once even across crashes).

Exactly once: each message (status card, results, notices) carries a nonce derived from the job,
and Discord returns the earlier message for a repeated nonce; after a long outage (beyond the nonce
window) we first look through the channel for our own earlier message before sending again. The
split of results into messages is fixed when delivery starts and stored with the job, so a resend
after a restart posts exactly the messages that were planned.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import discord

from bot.buttons import job_buttons, result_buttons
from bot.cards import cost_words, preview_file, ready_words, result_embed, shorten
from bot.costs import estimate_of, settled_amount
from bot.followups import followup_view
from bot.media.turntable import TURNTABLE_SUFFIX
from bot.models import Artifact, Job, JobState, utcnow
from bot.plain import plain, quiet
from bot.store import Store

log = logging.getLogger(__name__)

#: Discord's nonce deduplication lasts a few minutes; past this we search history instead
NONCE_WINDOW = timedelta(minutes=4)
#: a new job is stored before its command posts the status card; meanwhile nobody else posts one
STATUS_GRACE = timedelta(seconds=10)
MAX_FILES_PER_MESSAGE = 10
REQUEST_CAP = 25 * 1024 * 1024
#: the smallest per-file limit Discord has had for bots (tried when a server refuses our upload)
SMALLEST_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_CONTENT = 2000
#: the one line of a result with nothing to show
NO_FILES = "No files."

_STATE_WORDS = {
    JobState.ACCEPTED: "Accepted",
    JobState.UPLOADING: "Uploading the input",
    JobState.SUBMITTED: "Submitted",
    JobState.RUNNING: "Running",
    JobState.COLLECTING: "Fetching the results",
    JobState.DELIVERING: "Posting the results",
    JobState.DONE: "Done",
    JobState.FAILED: "Failed",
    JobState.CANCELLED: "Cancelled",
}
_COLOURS = {JobState.DONE: 0x2ECC71, JobState.FAILED: 0xE74C3C, JobState.CANCELLED: 0x95A5A6}


def progress_bar(fraction: float, width: int = 14) -> str:
    fraction = max(0.0, min(1.0, fraction))
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled) + f" {fraction * 100:.0f}%"


def status_embed(job: Job, provider_name: str) -> discord.Embed:
    """The status card: what was asked, where it is, how far, how long to go, whose it is. Once
    done it becomes the result card (bot/cards.py)."""
    if job.state is JobState.DONE:
        return result_embed(job, provider_name)
    embed = discord.Embed(title=f"{provider_name} · {job.kind}", description=shorten(plain(job.summary), 1000),
                          colour=_COLOURS.get(job.state, 0x5865F2))
    state = _STATE_WORDS[job.state]
    if job.state in (JobState.SUBMITTED, JobState.RUNNING) and job.queue_position:
        state = f"Queued (position {job.queue_position})"  # the one place the position is shown
    if job.detail and job.state.is_live:
        state = f"{state} · {shorten(plain(job.detail), 200)}"
    embed.add_field(name="State", value=state, inline=False)
    if job.state.is_live and job.progress is not None:
        embed.add_field(name="Progress", value=progress_bar(job.progress), inline=True)
    if job.state.is_live and job.eta is not None:
        embed.add_field(name="ETA", value=f"<t:{int(job.eta.timestamp())}:R>", inline=True)
    if job.state is JobState.FAILED and job.last_error:
        embed.add_field(name="Reason", value=quiet(job.last_error)[:1000], inline=False)
    if job.state.is_live and job.cancel_refused_at is not None:
        embed.add_field(name="Cancel refused", value=f"{provider_name} would not stop this job: it keeps running "
                        "and counts toward your job limit until it ends. Its results will be posted here, since "
                        "they are paid for.", inline=False)
    if job.state is JobState.CANCELLED and job.last_error:
        embed.add_field(name="Note", value=quiet(job.last_error)[:1000], inline=False)
    if job.state.is_terminal and estimate_of(job) is not None:
        charged = settled_amount(job)
        embed.add_field(name="Cost", value="nothing was charged" if charged == 0 else (cost_words(job) or "unknown"),
                        inline=True)
    embed.add_field(name="Owner", value=f"<@{job.owner_id}>", inline=True)
    if job.preview_url and job.preview_url.startswith(("http://", "https://")) and (
            job.state.is_live or is_turntable(job.preview_url)):
        embed.set_thumbnail(url=job.preview_url)
    embed.set_footer(text=f"Job {job.id}")
    return embed


def is_turntable(url: str) -> bool:
    """A turntable we rendered and posted: it stays the card's picture after the job ends."""
    return urlsplit(url).path.endswith(TURNTABLE_SUFFIX)


def fingerprint(job: Job, embed: discord.Embed) -> str:
    """The state plus a hash of what the card shows; equal fingerprints mean no edit is needed."""
    data = embed.to_dict()
    data.pop("timestamp", None)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return f"{job.state}:{digest}"


def result_nonce(job: Job, index: int) -> str:
    """Deterministic per job and message (Discord allows at most 25 characters)."""
    return hashlib.sha256(f"{job.id}:{index}".encode()).hexdigest()[:25]


def card_nonce(job: Job, replaces: int | None = None) -> str:
    """The status card's nonce; a card that replaces a deleted or too-old one gets its own."""
    key = f"{job.id}:card" + (f":{replaces}" if replaces else "")
    return hashlib.sha256(key.encode()).hexdigest()[:25]


def shows_job(message: discord.Message, job_id: str) -> bool:
    """Whether a message is a job's status card: an embed naming the job (in its footer)."""
    return any(job_id in ((e.footer.text or "") if e.footer else "") for e in message.embeds)


def owner_only(owner_id: int) -> discord.AllowedMentions:
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(owner_id)],
                                   replied_user=False)


@dataclass
class MessagePlan:
    """One result message: its files, lines of text for what did not fit, download buttons."""

    files: list[Artifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    downloads: list[tuple[str, str]] = field(default_factory=list)  # (label, key)

    def absorb(self, plans: list[MessagePlan]) -> None:
        """Take in what other plans hold (`plan_messages`'s "No files." placeholder aside)."""
        for other in plans:
            self.files += other.files
            self.notes += [n for n in other.notes if n != NO_FILES]
            self.downloads += other.downloads

    @property
    def size(self) -> int:
        return sum(a.size for a in self.files)

    def to_json(self, artifacts: tuple[Artifact, ...]) -> dict:
        """Files by position and name in the job's artifacts (paths change when re-collected)."""
        index = {id(a): i for i, a in enumerate(artifacts)}
        return {"files": [[index.get(id(a), -1), a.filename] for a in self.files], "notes": list(self.notes),
                "downloads": [list(d) for d in self.downloads]}

    @classmethod
    def from_json(cls, data: dict, artifacts: tuple[Artifact, ...]) -> MessagePlan:
        plan = cls(notes=list(data.get("notes", [])), downloads=[(d[0], d[1]) for d in data.get("downloads", [])])
        for position, name in data.get("files", []):
            art = (artifacts[position] if 0 <= position < len(artifacts) and artifacts[position].filename == name
                   else next((a for a in artifacts if a.filename == name), None))
            if art is not None and art.is_local:
                plan.files.append(art)
            elif art is not None:  # collected again as a link only (another machine took the job over)
                plan.absorb(plan_messages([art], 0))
            else:
                plan.notes.append(f"{name} is no longer available.")
        return plan


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


#: room for the notes of one message (links are never cut: extra notes go to another message)
NOTES_BUDGET = 1500
MAX_BUTTONS = 25


def plan_messages(artifacts: list[Artifact] | tuple[Artifact, ...], limit: int) -> list[MessagePlan]:
    """Fit artifacts into messages: each file under `limit`, at most 10 per message, and each
    request under Discord's cap. What does not fit becomes a link, a Download button, or a note."""
    request_cap = max(REQUEST_CAP, limit)
    plans: list[MessagePlan] = [MessagePlan()]
    extras = plans[0]  # where notes and buttons for what did not fit go

    def room_for(note: str, button: bool) -> MessagePlan:
        nonlocal extras
        used = sum(len(n) + 1 for n in extras.notes)
        if used + len(note) > NOTES_BUDGET or (button and len(extras.downloads) >= MAX_BUTTONS):
            extras = MessagePlan()
            plans.append(extras)
        return extras

    for art in artifacts:
        size = art.size
        if size <= limit and art.is_local:
            current = plans[-1]
            if len(current.files) >= MAX_FILES_PER_MESSAGE or current.size + size > request_cap:
                current = MessagePlan()
                plans.append(current)
            current.files.append(art)
            continue
        label = art.description or art.filename
        if art.download_key:
            note = f"{label} ({_mib(size)}) is over this server's upload limit: use the button."
            target = room_for(note, button=True)
            target.downloads.append((f"Download {art.filename}"[:80], art.download_key))
            target.notes.append(note)
        elif art.link:
            note = f"{label} ({_mib(size)}): <{art.link}>"
            room_for(note, button=False).notes.append(note)
        elif not art.optional:
            note = f"{label} ({_mib(size)}) is over this server's upload limit ({_mib(limit)})."
            room_for(note, button=False).notes.append(note)
    return [p for p in plans if p.files or p.notes or p.downloads] or [MessagePlan(notes=[NO_FILES])]


def _merged(plans: list[MessagePlan], original: MessagePlan) -> MessagePlan:
    """One message from several plans of the same files, keeping the original's notes and buttons
    (it stays one part of the delivery, whose number of parts is fixed)."""
    merged = MessagePlan()
    merged.absorb([*plans, MessagePlan(notes=original.notes, downloads=original.downloads)])
    return merged


def _card_preview(index: int, plan: MessagePlan, message: discord.Message) -> dict:
    """The result card shows the first result message's preview image by its attachment URL
    (an `attachment://` name would only work inside the result message itself)."""
    if index:
        return {}  # only the first message
    chosen = preview_file(plan.files)
    url = next((a.url for a in message.attachments if chosen and a.filename == chosen.filename), None)
    return {"preview_url": url}


class Delivery:
    """Posts and edits a job's messages through the bot's Discord connection."""

    def __init__(self, client: discord.Client, store: Store, *, upload_limit: int, edit_interval: float,
                 provider_names: dict[str, str]) -> None:
        self.client = client
        self.store = store
        self.upload_limit = upload_limit
        self.edit_interval = edit_interval
        self.provider_names = provider_names
        self._card_locks: dict[str, asyncio.Lock] = {}
        self._shown: dict[str, str] = {}  # job id -> fingerprint of what its card shows now

    def provider_name(self, job: Job) -> str:
        return self.provider_names.get(job.provider, job.provider)

    def limit_for(self, job: Job) -> int:
        """Our configured limit, raised for boosted guilds (discord.py under-reports tiers 0-1)."""
        guild = self.client.get_guild(job.guild_id) if job.guild_id else None
        if guild is not None and guild.premium_tier >= 2:
            return max(self.upload_limit, guild.filesize_limit)
        return self.upload_limit

    def status_payload(self, job: Job) -> tuple[discord.Embed, discord.ui.View | None, str]:
        embed = status_embed(job, self.provider_name(job))
        view = followup_view(job) if job.state is JobState.DONE else job_buttons(job)
        return embed, view, fingerprint(job, embed)

    def status_fingerprint(self, job: Job) -> str:
        """What the card would show, without building its buttons (most polls change nothing)."""
        return fingerprint(job, status_embed(job, self.provider_name(job)))

    def edit_wait(self, job: Job) -> float:
        """Seconds before the status message may be edited again: at most one edit per
        `edit_interval` per job (Discord allows about 5 edits per 5 s per channel), except the
        final state, which is shown at once."""
        if job.state.is_terminal or job.status_edited_at is None:
            return 0.0
        elapsed = (utcnow() - job.status_edited_at).total_seconds()
        return max(0.0, self.edit_interval - elapsed)

    async def sync_status(self, job: Job, *, force: bool = False) -> Job:
        """Edit the status message if what it shows changed and the throttle allows it. Edits of
        one card go one at a time, and an edit identical to the one last shown is skipped: two
        tasks may each hold the same new state (the step's own final edit and the updater's)."""
        if len(self._card_locks) > 1000:  # forget idle cards
            for key in [k for k, lock in self._card_locks.items() if not lock.locked()]:
                self._card_locks.pop(key, None)
                self._shown.pop(key, None)
        async with self._card_locks.setdefault(job.id, asyncio.Lock()):
            shown = self._shown.get(job.id)
            if not force and shown == self.status_fingerprint(job):
                return job.evolve(status_fingerprint=shown)  # recorded in the store when it was shown
            job = await self._sync_status(job, force=force)
            if job.status_fingerprint:
                self._shown[job.id] = job.status_fingerprint
            return job

    async def _sync_status(self, job: Job, *, force: bool) -> Job:
        embed, view, fp = self.status_payload(job)
        if fp == job.status_fingerprint and not force:
            return job
        if not force and self.edit_wait(job) > 0:
            return job
        now = utcnow()
        if job.status_message_id is None and now - job.created_at < STATUS_GRACE and job.state.is_live:
            return job  # the command is still posting the card itself
        channel = self.client.get_partial_messageable(job.channel_id)
        message_id = job.status_message_id
        try:
            if message_id is None:
                message_id = (await self.post_card(job, channel, embed, view)).id
            else:
                await channel.get_partial_message(message_id).edit(embed=embed, view=view)
        except discord.NotFound:  # someone deleted the card: post a new one
            message_id = (await self.post_card(job, channel, embed, view, replaces=message_id)).id
        except discord.HTTPException as exc:
            if exc.code != 30046:
                raise
            if not job.state.is_terminal:  # too many edits to an old message: skip progress edits
                log.info("job %s: status message is too old to edit again", job.id)
            else:  # but the end must be seen: a fresh card
                message_id = (await self.post_card(job, channel, embed, view, replaces=message_id)).id
        await self.store.record_status(job.id, message_id=message_id, fingerprint=fp, edited_at=now)
        shown = job.evolve(status_message_id=message_id, status_fingerprint=fp, status_edited_at=now)
        if job.state.is_live:
            # another process (a worker, a Refresh on the gateway) may have shown the job's end while
            # this edit was on its way (a 429 wait): an older state must not be left on the card
            newest = await self.store.get_job(job.id)
            if newest is not None and newest.state.is_terminal:
                return await self._sync_status(newest, force=False)
        return shown

    async def show_final(self, job: Job) -> bool:
        """Make the card show the job's end; True once it does (a chore of a finished job)."""
        shown = await self.sync_status(job)
        return shown.status_fingerprint == self.status_payload(job)[2]

    async def post_card(self, job: Job, channel: discord.abc.Messageable, embed: discord.Embed,
                        view: discord.ui.View | None, *, replaces: int | None = None,
                        update: bool = True) -> discord.Message:
        """Post the status card once: with the job's nonce, Discord hands back a card already
        posted (by the command, or before a crash); past the nonce window the channel is searched
        for it. An adopted card that shows something else is brought up to date, unless `update`
        is off (the command's first post must never overwrite a newer state the runner showed)."""
        message = None
        if replaces is None and utcnow() - job.created_at > NONCE_WINDOW:
            message = await self._find_own(job, channel, job.created_at, lambda m: shows_job(m, job.id))
        elif replaces is not None:  # a replacement posted before a crash: newer than the card it replaced
            message = await self._find_own(job, channel, discord.utils.snowflake_time(replaces),
                                           lambda m: shows_job(m, job.id) and m.id > replaces)
        if message is None:
            message = await channel.send(embed=embed, view=view, allowed_mentions=discord.AllowedMentions.none(),
                                         nonce=card_nonce(job, replaces))
        shown = message.embeds[0] if message.embeds else None
        if update and (shown is None or fingerprint(job, shown) != fingerprint(job, embed)):
            log.info("job %s: adopted its earlier status card", job.id)
            try:
                message = await message.edit(embed=embed, view=view)
            except discord.HTTPException as exc:
                if exc.code != 30046:
                    raise
                # too old to edit again: a fresh card, with a nonce of its own
                message = await channel.send(embed=embed, view=view, nonce=card_nonce(job, message.id),
                                             allowed_mentions=discord.AllowedMentions.none())
        return message

    async def deliver(self, job: Job) -> Job:
        """Post every result message not yet recorded; record each id right after sending. The
        plan is made and stored on the first try and reused after that, so a restart (or a
        changed upload limit) cannot split the results differently from what was posted."""
        now = utcnow()
        if job.delivery_plan is None:
            planned = plan_messages(job.artifacts, self.limit_for(job))
            job = await self.store.update(job, delivery_plan=[p.to_json(job.artifacts) for p in planned],
                                          delivery_started_at=job.delivery_started_at or now)
        elif job.delivery_started_at is None:
            job = await self.store.update(job, delivery_started_at=now)
        plans = [MessagePlan.from_json(d, job.artifacts) for d in job.delivery_plan or []]
        sent = list(job.result_message_ids)
        channel = self.client.get_partial_messageable(job.channel_id)
        if len(sent) < len(plans) and now - job.delivery_started_at > NONCE_WINDOW:
            sent = await self._recover_sent(job, channel, len(plans), sent)
            job = await self.store.update(job, result_message_ids=tuple(sent))
        for index, plan in enumerate(plans):
            if index < len(sent):
                continue
            message = await self._send_part(job, channel, plan, index, len(plans))
            sent.append(message.id)
            job = await self.store.update(job, result_message_ids=tuple(sent), **_card_preview(index, plan, message))
        return job

    def _first_line(self, job: Job, index: int, total: int) -> str:
        part = f" (part {index + 1}/{total})" if total > 1 else ""
        return f"<@{job.owner_id}> {ready_words(self.provider_name(job), job.kind)}{part} · job `{job.id}`"

    def _content(self, job: Job, plan: MessagePlan, index: int, total: int) -> str:
        lines = [self._first_line(job, index, total)]
        if job.cancel_refused_at is not None and index == 0:
            lines.append(f"{self.provider_name(job)} would not cancel it, so it ran to the end and was paid for: "
                         "here are its results.")
        lines += [f"• {plain(a.filename)}: {quiet(a.description)}" for a in plan.files if a.description]
        lines += [quiet(n) for n in plan.notes]
        return "\n".join(lines)[:MAX_CONTENT]

    async def _send_part(self, job: Job, channel: discord.PartialMessageable, plan: MessagePlan, index: int,
                         total: int, fallback: int | None = None) -> discord.Message:
        files = [discord.File(a.path, filename=a.filename) for a in plan.files]
        reference = (discord.MessageReference(message_id=job.status_message_id, channel_id=job.channel_id,
                                              fail_if_not_exists=False) if job.status_message_id else None)
        view = result_buttons(job, plan.downloads) if plan.downloads else None
        try:
            return await channel.send(self._content(job, plan, index, total), files=files, reference=reference,
                                      allowed_mentions=owner_only(job.owner_id), nonce=result_nonce(job, index),
                                      view=view)
        except discord.HTTPException as exc:
            if exc.status != 413 or not plan.files:
                raise
            # the server's real limit is lower than we assumed: the same message planned again under
            # Discord's smallest limit, then with no files; what no longer fits becomes a Download
            # button or a link as usual (the files are paid for), never just dropped
            limit = SMALLEST_UPLOAD_LIMIT if fallback is None else 0
            log.warning("job %s: upload refused as too large; planning it again under %s", job.id, _mib(limit))
            smaller = _merged(plan_messages(plan.files, limit), plan)
            return await self._send_part(job, channel, smaller, index, total, fallback=limit)
        finally:
            for f in files:
                f.close()

    async def _recover_sent(self, job: Job, channel: discord.PartialMessageable, total: int,
                            sent: list[int]) -> list[int]:
        """After a long outage: find result messages we posted but never recorded."""
        if self.client.user is None:
            return sent
        found: dict[int, int] = {}
        # a part is known by its first line, exactly as `_content` writes it (a notice about the
        # same job, "would not stop your …", must never be taken for a result)
        firsts = {self._first_line(job, i, total): i for i in range(total)}
        since = (job.delivery_started_at or job.created_at) - timedelta(minutes=1)
        try:
            async for message in channel.history(after=discord.Object(discord.utils.time_snowflake(since)),
                                                 limit=500, oldest_first=True):
                part = firsts.get(message.content.split("\n", 1)[0])
                if message.author.id == self.client.user.id and part is not None:
                    found.setdefault(part, message.id)
        except discord.Forbidden:  # no Read Message History: rely on the nonce alone
            log.warning("job %s: cannot read the channel's history to look for earlier results", job.id)
            return sent
        recovered = list(sent)
        while len(recovered) in found:
            recovered.append(found[len(recovered)])
        if len(recovered) > len(sent):
            log.info("job %s: found %d result message(s) already posted", job.id, len(recovered) - len(sent))
        return recovered

    async def notify_failure(self, job: Job) -> None:
        """A short reply pinging the owner, so a failure is not missed (posted once)."""
        text = f"<@{job.owner_id}> your {self.provider_name(job)} {job.kind} failed · job `{job.id}`\n"
        text += quiet(job.last_error or "Unknown error.")
        await self._notice_once(job, text, f"failed · job `{job.id}`", 99, job.finished_at)

    async def notify_cancel_refused(self, job: Job) -> None:
        """Tell the owner a cancel did not stop the remote job, and what happens now."""
        name = self.provider_name(job)
        text = (f"<@{job.owner_id}> {name} would not stop your {job.kind} · job `{job.id}`\n"
                f"It keeps running at {name} and still counts toward your job limit until it ends. "
                "Its results will be posted here when ready, since they are paid for.")
        await self._notice_once(job, text, f"would not stop your {job.kind} · job `{job.id}`", 98,
                                job.cancel_refused_at)

    async def _notice_once(self, job: Job, text: str, marker: str, index: int, since) -> None:
        channel = self.client.get_partial_messageable(job.channel_id)
        since = since or job.created_at
        if utcnow() - since > NONCE_WINDOW:  # the nonce no longer protects us: look first
            if await self._find_own(job, channel, since, lambda m: marker in m.content) is not None:
                return
        reference = (discord.MessageReference(message_id=job.status_message_id, channel_id=job.channel_id,
                                              fail_if_not_exists=False) if job.status_message_id else None)
        await channel.send(text[:MAX_CONTENT], reference=reference, allowed_mentions=owner_only(job.owner_id),
                           nonce=result_nonce(job, index))

    async def _find_own(self, job: Job, channel: discord.abc.Messageable, since, match) -> discord.Message | None:
        """Our own message in the channel since `since` that `match`es; None when there is none
        or the history cannot be read."""
        if self.client.user is None:
            return None
        after = discord.Object(discord.utils.time_snowflake(since - timedelta(minutes=1)))
        try:
            async for message in channel.history(after=after, limit=500, oldest_first=True):
                if message.author.id == self.client.user.id and match(message):
                    return message
        except discord.Forbidden:
            log.warning("job %s: cannot read the channel's history to look for earlier messages", job.id)
        return None
