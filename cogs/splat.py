"""/splat: make 3D Gaussian splat scenes from a video with vid2scene, and manage them.

Thin: parse and check what is cheap (attachment type and size, option ranges), start a job, or
answer a quick management command privately. The real video probe happens in the provider's
upload step, before anything is spent.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import discord
from discord import app_commands
from discord.ext import commands

from bot.confirm import JobRequest, launch
from bot.costs import vid2scene_estimate
from bot.jobs import JobError, is_manager, reply_private
from bot.models import SavedObject
from bot.operators import is_operator
from bot.paths import job_path
from bot.plain import plain
from bot.providers.base import NotFound, ProviderError, strip_markers, user_message
from bot.providers.vid2scene import (
    APRILTAG_RANGE,
    CAMERA_TYPES,
    GAUSSIANS_RANGE,
    RECONSTRUCTION_METHODS,
    STEPS_RANGE,
    VIDEO_METHODS,
    Vid2SceneProvider,
    method_refusal,
    precheck_attachment,
)
from bot.providers.vid2scene_api import valid_job_id
from bot.providers.vid2scene_status import SceneDetails, strip_marker

PROVIDER, DISPLAY, KIND = "vid2scene", "vid2scene", "scene"
_METHOD_LABELS = {"glomap": "GLOMAP (default, fast)", "colmap": "COLMAP (premium)", "vggt": "VGGT (premium)",
                  "quest": "Quest capture (premium)", "generate_lod": "Levels of detail (premium)"}
NONE = discord.AllowedMentions.none()


class SceneRef:
    """A scene as a command sees it: its remote id, what we know of it, who may change it."""

    def __init__(self, remote_id: str, saved: SavedObject | None, title: str = "") -> None:
        self.remote_id, self.saved = remote_id, saved
        # a scene with no saved row (or no name) is called by its id, never "****"
        self.title = (saved.name if saved else strip_marker(title)) or remote_id

    @property
    def external(self) -> bool:
        return self.saved is None


def _provider(interaction: discord.Interaction) -> Vid2SceneProvider:
    return interaction.client.jobs.provider(PROVIDER, DISPLAY)  # type: ignore[attr-defined, return-value]


#: the refusal for a scene with no saved owner (made outside the bot with the same key)
EXTERNAL = "This scene was made outside the bot; only the bot's operators can {verb} it."


async def _may_change(interaction: discord.Interaction, ref: SceneRef) -> bool:
    if ref.saved is None:  # made outside the bot: it belongs to no server, so to no server's manager
        return await is_operator(interaction)
    return ref.saved.owner_id == interaction.user.id or (
        is_manager(interaction) and ref.saved.guild_id == interaction.guild_id)


def _esc(text: str) -> str:
    """A user's or vid2scene's words as literal text, secrets masked."""
    return plain(text)


async def _resolve(interaction: discord.Interaction, value: str) -> SceneRef:
    """A scene by id (from autocomplete) or by its exact name among the user's own scenes."""
    store = interaction.client.store  # type: ignore[attr-defined]
    value = (value or "").strip().strip("`")
    saved = await store.get_object(PROVIDER, KIND, value.lower())
    if saved is None and not valid_job_id(value):
        mine = await store.list_objects(provider=PROVIDER, kind=KIND, owner_id=interaction.user.id,
                                        name_contains=value, limit=25)
        exact = [o for o in mine if o.name.lower() == value.lower()] or (mine if len(mine) == 1 else [])
        if len(exact) == 1:
            saved = exact[0]
        else:
            raise JobError(f"There is no scene called `{_esc(value)[:60]}` that you can see. "
                           "Pick one from the list while typing, or see `/splat list`.")
    if saved is not None:
        return SceneRef(saved.remote_id, saved)
    return SceneRef(value.lower(), None)


def _embed(scene: SceneDetails, ref: SceneRef) -> discord.Embed:
    embed = discord.Embed(title=_esc(scene.title or ref.title or "Scene")[:250], colour=0x5865F2)
    percent = f" · {scene.percent * 100:.1f}%" if scene.percent is not None and not scene.finished else ""
    embed.add_field(name="Status", value=(_esc(scene.status) + percent)[:200], inline=False)
    embed.add_field(name="Visibility", value="public" if scene.public else "private", inline=True)
    files = [name for name, present in (("SPZ", scene.has_spz), ("PLY", scene.has_ply)) if present]
    embed.add_field(name="Files", value=", ".join(files) or "not yet", inline=True)
    settings = [scene.reconstruction_method]
    if scene.gaussians:
        settings.append(f"{scene.gaussians:,} gaussians")
    if scene.steps:
        settings.append(f"{scene.steps:,} steps")
    if scene.remove_background:
        settings.append("background removed")
    if scene.camera_type:
        settings.append(f"{scene.camera_type} camera")
    embed.add_field(name="Settings", value=_esc(" · ".join(settings))[:1000], inline=False)
    if ref.saved is not None:
        embed.add_field(name="Owner", value=f"<@{ref.saved.owner_id}>", inline=True)
    else:
        embed.add_field(name="Owner", value="made outside this bot", inline=True)
    embed.set_footer(text=f"Scene {ref.remote_id}")
    return embed


class ConfirmDelete(discord.ui.DynamicItem[discord.ui.Button],
                    template=r"splat:del:(?P<answer>yes|no):(?P<scene>[0-9a-f-]{32,36}):(?P<user>\d{1,20})"):
    """The two buttons under `/splat delete`'s question; they carry the scene and the asker."""

    def __init__(self, answer: str, scene: str, user: int) -> None:
        label, style = (("Delete it", discord.ButtonStyle.danger) if answer == "yes"
                        else ("Keep it", discord.ButtonStyle.secondary))
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"splat:del:{answer}:{scene}:{user}"))
        self.answer, self.scene, self.user = answer, scene, user

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]) -> ConfirmDelete:
        return cls(match["answer"], match["scene"], int(match["user"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.user:
            await reply_private(interaction, "This question was for someone else.")
            return
        if self.answer == "no":
            await interaction.response.edit_message(content="Kept the scene; nothing was deleted.", view=None)
            return
        await interaction.response.defer()
        try:
            text = await _delete_scene(interaction, self.scene)
        except (JobError, ProviderError) as exc:
            text = str(exc) if isinstance(exc, JobError) else user_message(exc, DISPLAY)
        await interaction.edit_original_response(content=text, view=None)


class FreshLink(discord.ui.DynamicItem[discord.ui.Button],
                template=r"splat:link:(?P<scene>[0-9a-f-]{32,36}):(?P<kind>ply|spz)"):
    """'Get a new link' under a download link: signs a new URL at click time (they expire)."""

    def __init__(self, scene: str, kind: str) -> None:
        super().__init__(discord.ui.Button(label=f"New {kind.upper()} link", style=discord.ButtonStyle.primary,
                                           custom_id=f"splat:link:{scene}:{kind}"))
        self.scene, self.kind = scene, kind

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]) -> FreshLink:
        return cls(match["scene"], match["kind"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            await interaction.client.jobs.cooldown(interaction, "splat download")  # type: ignore[attr-defined]
            ref = await _resolve(interaction, self.scene)
            await _check_visible(interaction, ref)
            url = await _provider(interaction).link(ref.remote_id, self.kind)
        except (JobError, ProviderError) as exc:
            text = str(exc) if isinstance(exc, JobError) else user_message(exc, DISPLAY)
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NONE)
            return
        await interaction.followup.send(_link_text(self.kind, url), ephemeral=True, allowed_mentions=NONE)


def _link_text(kind: str, url: str) -> str:
    return (f"Here is a fresh {kind.upper()} link, made just now; it expires in about 15 minutes, "
            f"so download it soon (or click the button again):\n<{url}>")


async def _check_visible(interaction: discord.Interaction, ref: SceneRef) -> None:
    """Seeing a scene (info, download, links) takes what changing it takes: a scene without a
    recorded owner (made outside the bot with the same key) is the bot's operators' alone."""
    if await _may_change(interaction, ref):
        return
    if ref.external:
        raise JobError(EXTERNAL.format(verb="use"))
    raise JobError("Only the person who made this scene, or a server manager, can use it.")


async def _delete_scene(interaction: discord.Interaction, remote_id: str) -> str:
    ref = await _resolve(interaction, remote_id)
    if not await _may_change(interaction, ref):
        raise JobError(EXTERNAL.format(verb="delete") if ref.external
                       else "Only the person who made this scene, or a server manager, can delete it.")
    bot = interaction.client
    job_id = (ref.saved.data or {}).get("job_id") if ref.saved else None
    job = await bot.store.get_job(job_id) if job_id else None  # type: ignore[attr-defined]
    if job is not None and job.state.is_live:
        raise JobError(f"This scene is still being made by job `{job.id}`; cancel that with `/jobs cancel`.")
    gone = await _provider(interaction).delete_scene(ref.remote_id)
    await bot.store.delete_object(PROVIDER, KIND, ref.remote_id)  # type: ignore[attr-defined]
    name = _esc(ref.title)
    return f"Deleted the scene **{name}**." if gone else f"The scene **{name}** was already gone at vid2scene."


async def changeable(interaction: discord.Interaction, scene: str, verb: str) -> SceneRef:
    _provider(interaction)
    ref = await _resolve(interaction, scene)
    if not await _may_change(interaction, ref):
        if ref.external:
            raise JobError(EXTERNAL.format(verb=verb))
        raise JobError(f"Only the person who made this scene, or a server manager, can {verb} it.")
    return ref


async def rename_scene(interaction: discord.Interaction, scene: str, title: str) -> str:
    """`/splat rename` and the Rename button: checks, renames at vid2scene, returns the answer."""
    ref = await changeable(interaction, scene, "rename")
    title = " ".join(strip_markers(title or "").split())
    if not title:
        raise JobError("The title cannot be blank.")
    if len(title) > 200:
        raise JobError("Please keep the title under 200 characters.")
    tag = ""
    if ref.saved and (ref.saved.data or {}).get("job_id"):
        tag = f" [vb:{ref.saved.data['job_id']}]"  # keep the crash-recovery marker
    await _provider(interaction).rename(ref.remote_id, title + tag)
    if ref.saved:
        await interaction.client.store.save_object(  # type: ignore[attr-defined]
            SavedObject(**{**_fields(ref.saved), "name": title}))
    return f"Renamed **{_esc(ref.title)}** to **{_esc(title)}**."


async def set_visibility(interaction: discord.Interaction, scene: str, public: bool | None) -> str:
    """`/splat visibility` and the Make public/private button (`public=None` flips it)."""
    ref = await changeable(interaction, scene, "change")
    provider = _provider(interaction)
    if public is None:
        public = not (await provider.scene(ref.remote_id)).public
    now = (await provider.set_public(ref.remote_id, public)).public
    return f"**{_esc(ref.title)}** is now {'public' if now else 'private'}."


async def scene_link(interaction: discord.Interaction, scene: str, kind: str) -> tuple[str, discord.ui.View]:
    """A fresh signed link (and a button for another) for someone who may see the scene."""
    ref = await _resolve(interaction, scene)
    await _check_visible(interaction, ref)
    url = await _provider(interaction).link(ref.remote_id, kind)
    view = discord.ui.View(timeout=None)
    view.add_item(FreshLink(ref.remote_id, kind))
    return _link_text(kind, url), view


@app_commands.guild_only()  # starts paid jobs: only where a server's budget and limits apply
class Splat(commands.GroupCog, group_name="splat", group_description="3D Gaussian splat scenes from a video"):
    def __init__(self, bot) -> None:
        self.bot = bot
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ConfirmDelete, FreshLink)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ConfirmDelete, FreshLink)

    # -- create ----------------------------------------------------------------------------------
    @app_commands.command(name="create", description="Turn a video walking around something into a 3D splat")
    @app_commands.describe(
        video="A video circling the subject (MP4/MOV/WebM, up to 1 GB and 10 minutes)",
        title="A name for the scene",
        public="Show the scene publicly on vid2scene (default: private)",
        reconstruction_method="How camera poses are found (non-default methods need a premium plan)",
        training_max_num_gaussians="Most splats to train (100,000 to 2,000,000; default 1,000,000)",
        training_num_steps="Training steps (5,000 to 40,000; default 25,000)",
        apriltag_size_mm="Size of an AprilTag in the video, in mm, to get real-world scale (Enterprise)",
        remove_background="Cut away the background around the subject",
        camera_type="How the video was filmed: orbiting the subject, or a drone flight")
    @app_commands.choices(
        reconstruction_method=[app_commands.Choice(name=_METHOD_LABELS[m], value=m) for m in VIDEO_METHODS],
        camera_type=[app_commands.Choice(name=c, value=c) for c in CAMERA_TYPES])
    async def create(self, interaction: discord.Interaction, video: discord.Attachment,
                     title: app_commands.Range[str, 1, 200] | None = None, public: bool | None = None,
                     reconstruction_method: str | None = None,
                     training_max_num_gaussians: app_commands.Range[int, GAUSSIANS_RANGE[0], GAUSSIANS_RANGE[1]] | None = None,
                     training_num_steps: app_commands.Range[int, STEPS_RANGE[0], STEPS_RANGE[1]] | None = None,
                     apriltag_size_mm: app_commands.Range[float, APRILTAG_RANGE[0], APRILTAG_RANGE[1]] | None = None,
                     remove_background: bool | None = None, camera_type: str | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        problem = precheck_attachment(video.filename, video.size, video.content_type)
        if reconstruction_method is not None and reconstruction_method not in VIDEO_METHODS:
            problem = (method_refusal(reconstruction_method) if reconstruction_method in RECONSTRUCTION_METHODS
                       else f"Unknown reconstruction method; choose one of {', '.join(VIDEO_METHODS)}.")
        title = strip_markers(title) if title is not None else None
        if camera_type is not None and camera_type not in CAMERA_TYPES:
            problem = "The camera type must be `orbital` or `drone`."
        if title is not None and not title.strip():
            problem = "The title cannot be blank."
        if problem:
            await interaction.edit_original_response(content=problem, allowed_mentions=NONE)
            return
        params = {"video": {"url": video.url, "filename": video.filename, "size": video.size,
                            "content_type": video.content_type},
                  "title": title.strip() if title else None, "public": public,
                  "reconstruction_method": reconstruction_method,
                  "training_max_num_gaussians": training_max_num_gaussians,
                  "training_num_steps": training_num_steps, "apriltag_size_mm": apriltag_size_mm,
                  "remove_background": remove_background, "camera_type": camera_type}
        params = {k: v for k, v in params.items() if v is not None}
        name = title.strip() if title else video.filename
        await launch(interaction, JobRequest(PROVIDER, "splat", f"3D scene from {name}"[:200], params,
                                             vid2scene_estimate()))

    # -- management ------------------------------------------------------------------------------
    @app_commands.command(name="list", description="Your splat scenes (and ones made outside the bot)")
    async def list_scenes(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            provider = _provider(interaction)
            await self.bot.jobs.cooldown(interaction)
        except JobError as exc:
            await interaction.followup.send(str(exc), ephemeral=True)
            return
        manager, operator = is_manager(interaction), await is_operator(interaction)
        known = await self.bot.store.list_objects(provider=PROVIDER, kind=KIND, limit=500)
        by_id = {o.remote_id: o for o in known}
        lines: list[str] = []
        for obj in known:
            if obj.owner_id == interaction.user.id or (manager and obj.guild_id == interaction.guild_id):
                owner = "" if obj.owner_id == interaction.user.id else f" · <@{obj.owner_id}>"
                lines.append(f"• **{_esc(obj.name)[:60]}** · {obj.status}{owner} · `{obj.remote_id}`")
        note = ""
        try:
            remote = await provider.scenes() if operator else []
        except ProviderError as exc:
            remote = []
            note = f"\n(Could not ask vid2scene for other scenes: {user_message(exc, DISPLAY)})"
        for scene in remote:  # no recorded owner, so no server's: the bot's operators only
            if scene.job_id not in by_id:
                lines.append(f"• **{_esc(strip_marker(scene.title))[:60] or 'untitled'}** · made outside this bot"
                             f" · `{scene.job_id}`")
        if not lines:
            text = "You have no splat scenes yet. Make one with `/splat create`." + note
        else:
            text = f"**Splat scenes** ({len(lines)})\n" + "\n".join(lines[:40]) + note
            if len(lines) > 40:
                text += f"\n…and {len(lines) - 40} more."
        await interaction.followup.send(text[:2000], ephemeral=True, allowed_mentions=NONE)

    @app_commands.command(name="info", description="Details of one scene")
    @app_commands.describe(scene="The scene (start typing its name)")
    async def info(self, interaction: discord.Interaction, scene: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

        async def run() -> dict:
            ref = await _resolve(interaction, scene)
            await _check_visible(interaction, ref)
            details = await _provider(interaction).scene(ref.remote_id)
            return {"embed": _embed(details, ref)}

        await self._answer(interaction, run)

    @app_commands.command(name="rename", description="Give a scene a new title")
    @app_commands.describe(scene="The scene (start typing its name)", title="The new title")
    async def rename(self, interaction: discord.Interaction, scene: str,
                     title: app_commands.Range[str, 1, 200]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

        async def run() -> dict:
            return {"content": await rename_scene(interaction, scene, title)}

        await self._answer(interaction, run)

    @app_commands.command(name="visibility", description="Make a scene public or private on vid2scene")
    @app_commands.describe(scene="The scene (start typing its name)", public="True: anyone with the link can see it")
    async def visibility(self, interaction: discord.Interaction, scene: str, public: bool) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

        async def run() -> dict:
            return {"content": await set_visibility(interaction, scene, public)}

        await self._answer(interaction, run)

    @app_commands.command(name="delete", description="Delete a scene at vid2scene (asks first)")
    @app_commands.describe(scene="The scene (start typing its name)")
    async def delete(self, interaction: discord.Interaction, scene: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

        async def run() -> dict:
            ref = await changeable(interaction, scene, "delete")
            view = discord.ui.View(timeout=None)
            view.add_item(ConfirmDelete("yes", ref.remote_id, interaction.user.id))
            view.add_item(ConfirmDelete("no", ref.remote_id, interaction.user.id))
            return {"content": f"Delete **{_esc(ref.title)}** at vid2scene for good? "
                               "Its files will be gone.", "view": view}

        await self._answer(interaction, run)

    @app_commands.command(name="download", description="Get a scene's PLY or SPZ file")
    @app_commands.describe(scene="The scene (start typing its name)",
                           format="spz: compact, for viewers; ply: full quality, large")
    @app_commands.choices(format=[app_commands.Choice(name="SPZ (compact)", value="spz"),
                                  app_commands.Choice(name="PLY (full quality)", value="ply")])
    async def download(self, interaction: discord.Interaction, scene: str, format: str = "spz") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        kind = format if format in ("ply", "spz") else "spz"
        provider = None
        try:
            provider = _provider(interaction)
            await self.bot.jobs.cooldown(interaction)
            ref = await _resolve(interaction, scene)
            await _check_visible(interaction, ref)
            link = await provider.link(ref.remote_id, kind)
            size = await provider.link_size(link)
        except (JobError, ProviderError) as exc:
            text = str(exc) if isinstance(exc, JobError) else user_message(exc, DISPLAY)
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NONE)
            return
        limit = self.bot.settings.upload_limit_bytes
        name = f"{re.sub(r'[^a-z0-9]+', '-', ref.title.lower()).strip('-')[:40] or 'scene'}.{kind}"
        if size is not None and size <= limit:
            with tempfile.TemporaryDirectory(dir=_spool(self.bot)) as tmp:
                path = job_path(Path(tmp), name)
                try:
                    await provider.fetch(ref.remote_id, kind, path, max_bytes=limit)
                    await interaction.followup.send(f"**{_esc(ref.title)}** as {kind.upper()}:",
                                                    file=discord.File(path, filename=name), ephemeral=True,
                                                    allowed_mentions=NONE)
                    return
                except (ProviderError, discord.HTTPException):
                    pass  # too large after all, or refused: fall back to a link
        view = discord.ui.View(timeout=None)
        view.add_item(FreshLink(ref.remote_id, kind))
        await interaction.followup.send(_link_text(kind, link), view=view, ephemeral=True, allowed_mentions=NONE)

    # -- shared ----------------------------------------------------------------------------------
    async def _answer(self, interaction: discord.Interaction, run) -> None:
        try:
            await self.bot.jobs.cooldown(interaction)
            kwargs = await run()
        except JobError as exc:
            kwargs = {"content": str(exc)}
        except NotFound:
            kwargs = {"content": "vid2scene has no such scene (it may have been deleted)."}
        except ProviderError as exc:
            kwargs = {"content": user_message(exc, DISPLAY)}
        await interaction.followup.send(ephemeral=True, allowed_mentions=NONE, **kwargs)

    @info.autocomplete("scene")
    @rename.autocomplete("scene")
    @visibility.autocomplete("scene")
    @delete.autocomplete("scene")
    @download.autocomplete("scene")
    async def scene_autocomplete(self, interaction: discord.Interaction, current: str):
        owner = None if is_manager(interaction) else interaction.user.id
        objects = await self.bot.store.list_objects(provider=PROVIDER, kind=KIND, owner_id=owner,
                                                    name_contains=current.strip(), limit=25)
        return [app_commands.Choice(name=f"{o.name[:80]} · {o.status}"[:100], value=o.remote_id)
                for o in objects if owner is not None or o.guild_id == interaction.guild_id
                or o.owner_id == interaction.user.id][:25]


def _fields(obj: SavedObject) -> dict:
    return {f: getattr(obj, f) for f in SavedObject.__dataclass_fields__}


def _spool(bot) -> Path:
    path = Path(bot.settings.spool_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def setup(bot) -> None:
    await bot.add_cog(Splat(bot))
