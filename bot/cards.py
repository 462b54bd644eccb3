"""The finished status card, in the style of Midjourney's bot: it becomes the result card.

It shows how long the job took, a preview (the result message's own image attachment, since an
`attachment://` image works only in the message that carries the file), a one-line summary, the
files with a jump link to the result message, and what it cost. The result message itself stays
the one place the files are posted (exactly once, see delivery.py).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePosixPath

import discord

from bot.costs import amount_words, estimate_of, reported_cost
from bot.models import Artifact, Job
from bot.plain import plain

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".gif", ".webp")
#: what a kind of job makes, said so the verb agrees ("your Scenario layers are ready")
KIND_NOUNS = {"splat": "3D scene", "layers": "layers", "character": "character", "scene": "scene",
              "template": "scene", "render": "render", "mix": "video"}
PLURAL = {"layers"}
DONE_COLOUR = 0x2ECC71


def kind_noun(kind: str) -> str:
    return KIND_NOUNS.get(kind, kind)


def ready_words(provider_name: str, kind: str) -> str:
    """`your Viggle render is ready`, `your Scenario layers are ready`."""
    verb = "are" if kind_noun(kind) in PLURAL else "is"
    return f"your {provider_name} {kind_noun(kind)} {verb} ready"


def shorten(text: str, limit: int) -> str:
    """Cut to `limit` characters with an ellipsis, so a reader sees that something was cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def elapsed_words(delta: timedelta) -> str:
    seconds = max(0, round(delta.total_seconds()))
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def preview_file(files: list[Artifact]) -> Artifact | None:
    """The file to show on the card: a turntable animation first, then any image."""
    images = [a for a in files if PurePosixPath(a.filename.lower()).suffix in IMAGE_EXTS]
    turntable = [a for a in images if "turntable" in a.filename.lower()]
    return (turntable or images or [None])[0]


def jump_url(job: Job, message_id: int) -> str:
    return f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{message_id}"


def cost_words(job: Job) -> str | None:
    """The actual charge once the provider reported it, else the estimate the job started with."""
    actual = reported_cost(job)
    estimate = estimate_of(job)
    if actual is not None:
        note = f" (estimated {amount_words(job.provider, estimate)})" if estimate not in (None, actual) else ""
        return amount_words(job.provider, actual) + note
    if estimate is not None:
        return f"about {amount_words(job.provider, estimate)} (estimate)"
    return None


def result_embed(job: Job, provider_name: str) -> discord.Embed:
    embed = discord.Embed(title=f"{provider_name} · {kind_noun(job.kind)}",
                          description=shorten(plain(job.summary), 300),
                          colour=DONE_COLOUR)
    took = f" in {elapsed_words(job.finished_at - job.created_at)}" if job.finished_at is not None else ""
    embed.add_field(name="State", value=f"Done{took}", inline=True)
    cost = cost_words(job)
    if cost:
        embed.add_field(name="Cost", value=cost, inline=True)
    embed.add_field(name="Owner", value=f"<@{job.owner_id}>", inline=True)
    files = [a.filename for a in job.artifacts]
    if files:
        listed = ", ".join(plain(f) for f in files[:4])
        if len(files) > 4:
            listed += f" and {len(files) - 4} more"
        if job.result_message_ids:
            listed = f"[{listed}]({jump_url(job, job.result_message_ids[0])})"
        embed.add_field(name="Files", value=shorten(listed, 1000), inline=False)
    if job.preview_url and job.preview_url.startswith(("http://", "https://")):
        embed.set_image(url=job.preview_url)
    embed.set_footer(text=f"Job {job.id}")
    return embed
