"""What the follow-up buttons on result cards do (bot/followups.py draws them).

Each one takes the same validated path as its slash command (`prepare_render`, `prepare_mix`,
`prepare_layers`, `rename_scene`, `set_visibility`), so a button can never start what the
command would refuse. Buttons that spend are for the job's owner only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import discord
from discord.ext import commands

from bot.confirm import JobRequest, launch
from bot.followups import FollowUpButton
from bot.jobs import JobError, reply_private
from bot.models import Job, JobState
from bot.providers.base import NotFound, ProviderError, user_message
from cogs import layers as layers_cog
from cogs import splat as splat_cog
from cogs import viggle as viggle_cog
from cogs.viggle_checks import Refusal, describe, one_input

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


class TextModal(discord.ui.Modal):
    """One or two text boxes; on submit, hands the values to a callback."""

    def __init__(self, title: str, fields: list[discord.ui.TextInput],
                 done: Callable[[discord.Interaction, list[str]], Awaitable[None]], *, custom_id: str) -> None:
        super().__init__(title=title, timeout=900, custom_id=custom_id)
        self._fields, self._done = fields, done
        for item in fields:
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._done(interaction, [str(f.value or "") for f in self._fields])


class PickOne(discord.ui.View):
    """A select of the user's saved objects; picking one runs `done` with its id."""

    def __init__(self, custom_id: str, placeholder: str, options: list[discord.SelectOption],
                 done: Callable[[discord.Interaction, str], Awaitable[None]]) -> None:
        super().__init__(timeout=900)
        select = discord.ui.Select(custom_id=custom_id, placeholder=placeholder, options=options[:25])

        async def chosen(interaction: discord.Interaction) -> None:
            await done(interaction, select.values[0])

        select.callback = chosen
        self.add_item(select)


class FollowUps(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.followups = self
        self.bot.add_dynamic_items(FollowUpButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(FollowUpButton)
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

    # -- Viggle ---------------------------------------------------------------------------------
    async def _pick(self, interaction: discord.Interaction, job: Job, kind: str,
                    done: Callable[[discord.Interaction, str], Awaitable[None]]) -> None:
        objects = await viggle_cog.saved(self.bot, job.owner_id, kind, limit=25)
        if not objects:
            maker = "/viggle scene` or `/viggle template" if kind == "scene" else "/viggle character"
            await reply_private(interaction, f"You have no {kind}s yet; make one with `{maker}`.")
            return
        options = [discord.SelectOption(label=describe(o)[:100], value=o.remote_id[:100]) for o in objects]
        view = PickOne(f"fu-pick:{kind}:{job.id}", f"Choose one of your {kind}s", options, done)
        await reply_private(interaction, f"Which {kind}?", view=view)

    async def _scene(self, interaction: discord.Interaction, job: Job) -> None:
        """Character -> Render into a scene…"""
        async def done(ix: discord.Interaction, scene_id: str) -> None:
            await _launch_checked(ix, job, lambda: viggle_cog.prepare_render(
                self.bot, job.owner_id, scene=scene_id, character=job.remote_id or ""))

        await self._pick(interaction, job, "scene", done)

    async def _char(self, interaction: discord.Interaction, job: Job) -> None:
        """Scene -> Render a character…"""
        async def done(ix: discord.Interaction, character_id: str) -> None:
            await _launch_checked(ix, job, lambda: viggle_cog.prepare_render(
                self.bot, job.owner_id, scene=job.remote_id or "", character=character_id))

        await self._pick(interaction, job, "character", done)

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

        async def submitted(ix: discord.Interaction, values: list[str]) -> None:
            job = await self._submitted(ix, "mix", job_id)
            if job is None:
                return

            async def prepare() -> JobRequest:
                picture = one_input(None, values[0], "image", "picture", self.bot.net.policy)
                clip = await self._clip_of(job)
                p = job.params
                return viggle_cog.prepare_mix(picture, clip, model=p.get("model") or viggle_cog.MODELS[0],
                                              background_mode=p.get("background_mode") or "original",
                                              bg_color=p.get("bg_color"), fast=bool(p.get("fast")),
                                              first="a new picture", second=_clip_label(job))

            await _launch_checked(ix, job, prepare)

        await interaction.response.send_modal(TextModal("Mix with another image", [link], submitted,
                                                        custom_id=f"fu-modal:mix:{job_id}"))

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

        async def submitted(ix: discord.Interaction, values: list[str]) -> None:
            job = await self._submitted(ix, "rename", job_id)
            if job is not None:
                await _answer(ix, job, lambda: splat_cog.rename_scene(ix, job.remote_id or "", values[0]),
                              "splat rename")

        await interaction.response.send_modal(TextModal("Rename the scene", [title], submitted,
                                                        custom_id=f"fu-modal:rename:{job_id}"))

    # -- Scenario -------------------------------------------------------------------------------
    async def _instr(self, interaction: discord.Interaction, job_id: str) -> None:
        instruction = discord.ui.TextInput(label="How to split the video", style=discord.TextStyle.paragraph,
                                           max_length=layers_cog.MAX_INSTRUCTION, custom_id="instruction")
        layers = discord.ui.TextInput(label="At most this many layers (1-10)", max_length=2, custom_id="layers",
                                      default="6")

        async def submitted(ix: discord.Interaction, values: list[str]) -> None:
            job = await self._submitted(ix, "instr", job_id)
            if job is None:
                return

            async def prepare() -> JobRequest:
                provider = await self.bot.jobs.recalled_provider(layers_cog.PROVIDER, layers_cog.DISPLAY)
                try:
                    count = int(values[1].strip())
                except ValueError:
                    raise JobError("The number of layers must be a whole number from 1 to 10.") from None
                return layers_cog.prepare_layers(provider, dict(job.params["video"]), values[0], count)

            await _launch_checked(ix, job, prepare)

        await interaction.response.send_modal(TextModal("Try another instruction", [instruction, layers], submitted,
                                                        custom_id=f"fu-modal:instr:{job_id}"))


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
