"""What the follow-up buttons on result cards do (bot/followups.py draws them).

Each one takes the same validated path as its slash command (`prepare_render`, `prepare_mix`,
`prepare_layers`, `rename_scene`, `set_visibility`), so a button can never start what the
command would refuse. Buttons that spend are for the job's owner only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable

import discord
from discord.ext import commands

from bot.confirm import JobRequest, launch
from bot.followups import JOB_ID, FollowUpButton
from bot.jobs import JobError, reply_private
from bot.models import Job, JobState
from bot.providers.base import NotFound, ProviderError, user_message
from cogs import layers as layers_cog
from cogs import splat as splat_cog
from cogs import viggle as viggle_cog
from cogs.viggle_checks import Refusal, describe, one_input

log = logging.getLogger(__name__)

#: actions that start a paid job: only the owner may click them
SPENDING = {"scene", "char", "again", "mix", "instr"}
#: actions whose first answer is a modal (it must be the first response, so the job is looked up
#: only once the modal is submitted: a slow store would miss Discord's 3 s deadline)
MODALS = {"mix", "rename", "instr"}
NAMES = {"viggle": "Viggle", "vid2scene": "vid2scene", "scenario": "Scenario"}


def _problem(exc: Exception, provider: str) -> str:
    if isinstance(exc, NotFound) and provider == "vid2scene":
        return "vid2scene has no such scene any more (it may have been deleted)."
    if isinstance(exc, ProviderError):
        return user_message(exc, NAMES.get(provider, provider))
    return str(exc)


async def _launch_checked(interaction: discord.Interaction, job: Job,
                          prepare: Callable[[], Awaitable[JobRequest]]) -> None:
    """Defer privately, run the command's checks, then start (or ask about the cost)."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        request = await prepare()
    except (Refusal, JobError, ProviderError) as exc:
        await interaction.edit_original_response(content=_problem(exc, job.provider)[:2000])
        return
    await launch(interaction, request)


async def _answer(interaction: discord.Interaction, job: Job, run: Callable[[], Awaitable[str]],
                  command: str) -> None:
    """A quick management action, answered privately, under the cooldown of its slash `command`."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        await interaction.client.jobs.cooldown(interaction, command)  # type: ignore[attr-defined]
        text = await run()
    except (Refusal, JobError, ProviderError) as exc:
        text = _problem(exc, job.provider)
    await interaction.followup.send(text[:2000], ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


@contextlib.asynccontextmanager
async def _never_silent(interaction: discord.Interaction):
    """An unexpected error still gets the user an answer (else "thinking…" would stay up for good)."""
    try:
        yield
    except Exception:
        log.exception("follow-up %s failed", (interaction.data or {}).get("custom_id"))
        with contextlib.suppress(discord.HTTPException):
            await reply_private(interaction, "Something went wrong on our side; nothing was started. "
                                             "Please try again, or use the slash command.")


def _form(title: str, action: str, job_id: str, fields: list[discord.ui.TextInput]) -> discord.ui.Modal:
    """A form whose submit is answered from its custom_id (`FollowUps.on_interaction`), not from this
    object: nothing of it is kept here, so it still works after a restart or on another process."""
    modal = discord.ui.Modal(title=title, custom_id=f"fu-modal:{action}:{job_id}")
    for item in fields:
        modal.add_item(item)
    modal.stop()  # a stopped modal is not stored by send_modal
    return modal


def _typed(data: dict | None) -> dict[str, str]:
    """A submitted form's values by their input's custom_id (in action rows or labels)."""
    out: dict[str, str] = {}

    def walk(component: dict) -> None:
        if "value" in component and component.get("custom_id"):
            out[component["custom_id"]] = str(component["value"] or "")
        for inner in component.get("components") or []:
            walk(inner)
        if isinstance(component.get("component"), dict):
            walk(component["component"])

    for row in (data or {}).get("components") or []:
        walk(row)
    return out


#: a submitted follow-up form: what it was for and the job it came from
FORM = re.compile(rf"fu-modal:(?P<action>mix|rename|instr):(?P<job_id>{JOB_ID})")
#: the picker's kind -> the button that opened it (whose owner rule applies)
PICKED_BY = {"scene": "scene", "character": "char"}


class PickOne(discord.ui.DynamicItem[discord.ui.Select],
              template=rf"fu-pick:(?P<kind>scene|character):(?P<job_id>{JOB_ID})"):
    """A select of the user's saved objects. Persistent: the custom_id names the job, the store
    holds the rest, so picking works after a restart; the owner is checked again on use."""

    def __init__(self, kind: str, job_id: str, *, placeholder: str | None = None,
                 options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id=f"fu-pick:{kind}:{job_id}", placeholder=placeholder,
                                           options=(options or [])[:25]))
        self.kind, self.job_id = kind, job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Select,
                             match: re.Match[str]) -> PickOne:
        return cls(match["kind"], match["job_id"], placeholder=item.placeholder, options=item.options)

    async def callback(self, interaction: discord.Interaction) -> None:
        picked = (self.item.values or [""])[0]
        await interaction.client.followups.on_pick(interaction, self.kind, self.job_id, picked)


class FollowUps(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.followups = self
        self.bot.add_dynamic_items(FollowUpButton, PickOne)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(FollowUpButton, PickOne)
        self.bot.followups = None

    async def on_click(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        if action in MODALS:
            await getattr(self, f"_{action}")(interaction, job_id)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # ack before the store
        job = await self._usable(interaction, action, job_id)
        if job is not None:
            await getattr(self, f"_{action}")(interaction, job)

    async def _usable(self, interaction: discord.Interaction, action: str, job_id: str) -> Job | None:
        """The finished job a click (or a submitted modal) acts on, or None once the user was told why not.
        The interaction has been answered already."""
        job = await self.bot.store.get_job(job_id)
        if job is None or job.state is not JobState.DONE:
            await reply_private(interaction, "This result is no longer available.")
            return None
        if action in SPENDING and interaction.user.id != job.owner_id:
            await reply_private(interaction, f"Only <@{job.owner_id}>, who made this, can start a new job from it "
                                             "(it spends credits). Run the command yourself to make your own.")
            return None
        return job

    async def _submitted(self, interaction: discord.Interaction, action: str, job_id: str) -> Job | None:
        """After a modal: ack, then look the job up and check it."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        return await self._usable(interaction, action, job_id)

    async def on_pick(self, interaction: discord.Interaction, kind: str, job_id: str, picked: str) -> None:
        """A scene picked for a character (or a character for a scene): render them together."""
        await interaction.response.defer(ephemeral=True, thinking=True)  # ack before the store
        async with _never_silent(interaction):
            if not (job := await self._usable(interaction, PICKED_BY[kind], job_id)):
                return
            scene, character = (picked, job.remote_id or "") if kind == "scene" else (job.remote_id or "", picked)
            await _launch_checked(interaction, job, lambda: viggle_cog.prepare_render(
                self.bot, job.owner_id, scene=scene, character=character))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Follow-up forms are answered here, from their custom_id, whichever process showed them."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        match = FORM.fullmatch(str((interaction.data or {}).get("custom_id", "")))
        if match is None:
            return
        async with _never_silent(interaction):
            if job := await self._submitted(interaction, match["action"], match["job_id"]):
                await getattr(self, f"_submitted_{match['action']}")(interaction, job, _typed(interaction.data))

    # -- Viggle ---------------------------------------------------------------------------------
    async def _pick(self, interaction: discord.Interaction, job: Job, kind: str) -> None:
        objects = await viggle_cog.saved(self.bot, job.owner_id, kind, limit=25)
        if not objects:
            maker = "/viggle scene` or `/viggle template" if kind == "scene" else "/viggle character"
            await reply_private(interaction, f"You have no {kind}s yet; make one with `{maker}`.")
            return
        options = [discord.SelectOption(label=describe(o)[:100], value=o.remote_id[:100]) for o in objects]
        view = discord.ui.View(timeout=None)
        view.add_item(PickOne(kind, job.id, placeholder=f"Choose one of your {kind}s", options=options))
        await reply_private(interaction, f"Which {kind}?", view=view)

    async def _scene(self, interaction: discord.Interaction, job: Job) -> None:
        """Character -> Render into a scene… (the pick is answered by `on_pick`)"""
        await self._pick(interaction, job, "scene")

    async def _char(self, interaction: discord.Interaction, job: Job) -> None:
        """Scene -> Render a character… (the pick is answered by `on_pick`)"""
        await self._pick(interaction, job, "character")

    async def _again(self, interaction: discord.Interaction, job: Job) -> None:
        """Render -> Render again, with the same choices."""
        p = job.params

        async def prepare() -> JobRequest:
            if job.kind == "mix":
                return viggle_cog.prepare_mix(_source(p, "image"), _source(p, "video"), model=p.get("model") or viggle_cog.MODELS[0],
                                              background_mode=p.get("background_mode") or "original",
                                              bg_color=p.get("bg_color"), fast=bool(p.get("fast")),
                                              first=_label(p, "image", "a picture"), second=_label(p, "video", "a clip"))
            return await viggle_cog.prepare_render(
                self.bot, job.owner_id, scene=p["scene_id"], character=p.get("character_id"),
                mapping=json.dumps(p["mapping"]) if p.get("mapping") else None,
                background_mode=p.get("background_mode") or "original", bg_color=p.get("bg_color"),
                fast=bool(p.get("fast")))

        await _launch_checked(interaction, job, prepare)

    async def _mix(self, interaction: discord.Interaction, job_id: str) -> None:
        """Render -> Mix with another image: the same motion, a new picture (given as a link)."""
        link = discord.ui.TextInput(label="Link to the new picture (PNG or JPG)", placeholder="https://…",
                                    max_length=1000, custom_id="link")
        await interaction.response.send_modal(_form("Mix with another image", "mix", job_id, [link]))

    async def _submitted_mix(self, interaction: discord.Interaction, job: Job, values: dict[str, str]) -> None:
        async def prepare() -> JobRequest:
            picture = one_input(None, values.get("link", ""), "image", "picture", self.bot.net.policy)
            clip = await self._clip_of(job)
            p = job.params
            return viggle_cog.prepare_mix(picture, clip, model=p.get("model") or viggle_cog.MODELS[0],
                                          background_mode=p.get("background_mode") or "original",
                                          bg_color=p.get("bg_color"), fast=bool(p.get("fast")),
                                          first="a new picture", second=_clip_label(job))

        await _launch_checked(interaction, job, prepare)

    async def _clip_of(self, job: Job) -> dict:
        """The driving clip of a render: the mix's own, or the clip the scene was made from."""
        if job.kind == "mix":
            return _source(job.params, "video")
        scene_id = job.params.get("scene_id")
        for earlier in await self.bot.store.list_jobs(owner_id=job.owner_id, limit=200):
            if earlier.provider == "viggle" and earlier.kind == "scene" and earlier.remote_id == scene_id:
                return _source(earlier.params, "video")
        raise Refusal("I no longer have the clip this scene was made from (templates have none), so I cannot "
                      "mix a new picture with it. Use `/viggle mix` with the clip, or make a character and use "
                      "“Render a character…” on the scene.")

    # -- vid2scene ------------------------------------------------------------------------------
    async def _ply(self, interaction: discord.Interaction, job: Job) -> None:
        try:
            await self.bot.jobs.cooldown(interaction, "splat download")
            text, view = await splat_cog.scene_link(interaction, job.remote_id or "", "ply")
        except (JobError, ProviderError) as exc:
            await interaction.followup.send(_problem(exc, job.provider), ephemeral=True)
            return
        await interaction.followup.send(text, view=view, ephemeral=True,
                                        allowed_mentions=discord.AllowedMentions.none())

    async def _vis(self, interaction: discord.Interaction, job: Job) -> None:
        await _answer(interaction, job, lambda: splat_cog.set_visibility(interaction, job.remote_id or "", None),
                      "splat visibility")

    async def _rename(self, interaction: discord.Interaction, job_id: str) -> None:
        title = discord.ui.TextInput(label="New title", max_length=200, custom_id="title")
        await interaction.response.send_modal(_form("Rename the scene", "rename", job_id, [title]))

    async def _submitted_rename(self, interaction: discord.Interaction, job: Job, values: dict[str, str]) -> None:
        await _answer(interaction, job, lambda: splat_cog.rename_scene(interaction, job.remote_id or "",
                                                                       values.get("title", "")), "splat rename")

    # -- Scenario -------------------------------------------------------------------------------
    async def _instr(self, interaction: discord.Interaction, job_id: str) -> None:
        instruction = discord.ui.TextInput(label="How to split the video", style=discord.TextStyle.paragraph,
                                           max_length=layers_cog.MAX_INSTRUCTION, custom_id="instruction")
        layers = discord.ui.TextInput(label="At most this many layers (1-10)", max_length=2, custom_id="layers",
                                      default="6")
        await interaction.response.send_modal(_form("Try another instruction", "instr", job_id,
                                                    [instruction, layers]))

    async def _submitted_instr(self, interaction: discord.Interaction, job: Job, values: dict[str, str]) -> None:
        async def prepare() -> JobRequest:
            provider = await self.bot.jobs.recalled_provider(layers_cog.PROVIDER, layers_cog.DISPLAY)
            try:
                count = int(values.get("layers", "").strip())
            except ValueError:
                raise JobError("The number of layers must be a whole number from 1 to 10.") from None
            return layers_cog.prepare_layers(provider, dict(job.params["video"]), values.get("instruction", ""),
                                             count)

        await _launch_checked(interaction, job, prepare)


def _source(params: dict, what: str) -> dict:
    """A stored input in `one_input`'s form: the attachment record, or the link."""
    if params.get(what):
        return {"attachment": params[what]}
    if params.get(f"{what}_url"):
        return {"url": params[f"{what}_url"]}
    raise Refusal(f"This job's {what} is not known any more.")


def _label(params: dict, what: str, fallback: str) -> str:
    return (params.get(what) or {}).get("filename") or fallback


def _clip_label(job: Job) -> str:
    if job.kind == "mix":
        return _label(job.params, "video", "the same clip")
    return f"the clip of “{job.params.get('scene_name') or 'the scene'}”"


async def setup(bot) -> None:
    await bot.add_cog(FollowUps(bot))
