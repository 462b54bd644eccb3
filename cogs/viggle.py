"""/viggle: make characters and scenes, render them together, mix an image onto a clip, see credits.

Thin: every command defers first, checks what it can for free (files, colours, models, mappings,
whether the scene is ready) and refuses with the reason, then hands the job to the job service.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.confirm import JobRequest, launch
from bot.costs import Estimate, viggle_estimate
from bot.jobs import JobError
from bot.models import SavedObject
from bot.providers.base import NotFound, ProviderError, user_message
from cogs.viggle_checks import (
    BACKGROUND_MODES,
    MODELS,
    Refusal,
    check_model,
    check_segments,
    clean_name,
    describe,
    find_saved,
    mapping_suggestions,
    one_input,
    parse_bg_color,
    parse_mapping,
)

PROVIDER, DISPLAY = "viggle", "Viggle"
MODEL_CHOICES = [app_commands.Choice(name=m.replace("_", " "), value=m) for m in MODELS]
BACKGROUND_CHOICES = [app_commands.Choice(name=m, value=m) for m in BACKGROUND_MODES]
Name = app_commands.Range[str, 1, 60]


async def saved(bot, owner: int, kind: str, contains: str = "", limit: int = 25) -> list[SavedObject]:
    return await bot.store.list_objects(provider=PROVIDER, kind=kind, owner_id=owner, name_contains=contains,
                                        limit=limit)


async def ready(bot, provider, obj: SavedObject) -> SavedObject:
    """A saved object known ready, or re-checked with Viggle now; refuses otherwise."""
    if obj.status == "ready":
        return obj
    what = obj.kind
    try:
        fresh = await (provider.get_scene(obj.remote_id) if what == "scene"
                       else provider.get_character(obj.remote_id))
    except NotFound:
        await bot.store.delete_object(PROVIDER, what, obj.remote_id)
        raise Refusal(f"The {what} “{obj.name}” no longer exists at Viggle.") from None
    status = fresh.status
    if status == "ready":
        data = {**(obj.data or {}), "status": "ready"}
        if fresh.thumbnail_url:
            data["thumbnail_url"] = fresh.thumbnail_url
        if fresh.duration:
            data["duration"] = fresh.duration
        fresh_obj = SavedObject(provider=obj.provider, kind=obj.kind, remote_id=obj.remote_id,
                                owner_id=obj.owner_id, guild_id=obj.guild_id, name=obj.name, status="ready",
                                data=data)
        await bot.store.save_object(fresh_obj)
        return fresh_obj
    if status == "failed":
        raise Refusal(f"The {what} “{obj.name}” failed to prepare at Viggle; create it again.")
    raise Refusal(f"The {what} “{obj.name}” is not ready yet (Viggle says it is {status}). "
                  "Try again once it has been announced.")


async def find(bot, owner: int, kind: str, value: str) -> SavedObject:
    found = find_saved(await saved(bot, owner, kind, limit=200), value)
    if found is None:
        making = await _in_the_making(bot, owner, kind, value)
        if making is not None:
            job_id, name = making
            raise Refusal(f"Your {kind} `{discord.utils.escape_markdown(name)[:60]}` is not ready yet: job "
                          f"`{job_id}` is still making it. Try again once it has been announced.")
        maker = "/viggle character" if kind == "character" else "/viggle scene` or `/viggle template"
        raise Refusal(f"You have no {kind} called `{discord.utils.escape_markdown(value)[:60]}`. "
                      f"Pick one from the list, or make one with `{maker}`.")
    return found


async def _in_the_making(bot, owner: int, kind: str, value: str) -> tuple[str, str] | None:
    """The id and name of the owner's live job that will save a `kind` by this name, if one is under way:
    the saved object only exists once Viggle has accepted it."""
    kinds = ("scene", "template") if kind == "scene" else (kind,)
    folded = value.strip().casefold()
    for job in await bot.store.list_jobs(owner_id=owner, provider=PROVIDER, live_only=True, limit=50):
        name = str(job.params.get("name") or "").strip()
        if job.kind in kinds and name.casefold() == folded:
            return job.id, name
    return None


def _seconds(scene: SavedObject) -> float | None:
    value = (scene.data or {}).get("duration")
    return float(value) if isinstance(value, int | float) and value > 0 else None


async def prepare_render(bot, owner: int, *, scene: str, character: str | None = None, mapping: str | None = None,
                         background_mode: str = "original", bg_color: str | None = None, fast: bool = False,
                         model: str | None = None) -> JobRequest:
    """Every check `/viggle render` makes, for the command and the follow-up buttons alike.
    Raises Refusal, JobError or ProviderError with the reason."""
    provider = bot.jobs.provider(PROVIDER, DISPLAY)
    color = parse_bg_color(bg_color, background_mode)
    if bool(character) == bool(mapping):
        raise Refusal("Give either `character` (one person) or `mapping` (several people), not "
                      + ("both." if character else "neither."))
    chosen = await find(bot, owner, "scene", scene)
    bound = check_model(chosen, model)
    parsed = parse_mapping(mapping) if mapping else None
    if parsed is not None:
        check_segments(parsed, chosen)
    chosen = await ready(bot, provider, chosen)
    params: dict[str, Any] = {"scene_id": chosen.remote_id, "scene_name": chosen.name, "model": bound,
                              "background_mode": background_mode, "bg_color": color, "fast": fast}
    if parsed is not None:
        resolved: dict[str, str] = {}
        names: list[str] = []
        for segment, who in parsed.items():
            char = await ready(bot, provider, await find(bot, owner, "character", who))
            resolved[segment] = char.remote_id
            names.append(char.name)
        params["mapping"] = resolved
        who_text = ", ".join(names)
    else:
        char = await ready(bot, provider, await find(bot, owner, "character", character or ""))
        params["character_id"] = char.remote_id
        params["character_name"] = char.name
        who_text = char.name
    extras = f"{background_mode} background" + (f" {color}" if color else "") + (", fast" if fast else "")
    return JobRequest(PROVIDER, "render", f"{who_text} in “{chosen.name}” ({bound}, {extras})", params,
                      viggle_estimate("render", seconds=_seconds(chosen), fast=fast))


def prepare_mix(picture: dict[str, Any], clip: dict[str, Any], *, model: str = MODELS[0],
                background_mode: str = "original", bg_color: str | None = None, fast: bool = False,
                first: str = "a picture", second: str = "a clip") -> JobRequest:
    """`/viggle mix` from already checked inputs (`one_input`'s dicts)."""
    if model not in MODELS:
        raise Refusal(f"Unknown model `{model[:40]}`.")
    color = parse_bg_color(bg_color, background_mode)
    params = {"image": picture.get("attachment"), "image_url": picture.get("url"),
              "video": clip.get("attachment"), "video_url": clip.get("url"), "model": model,
              "background_mode": background_mode, "bg_color": color, "fast": fast}
    return JobRequest(PROVIDER, "mix", f"Mix {first} with {second} ({model}, {background_mode} background)", params,
                      viggle_estimate("mix", fast=fast))


@app_commands.guild_only()  # starts paid jobs: only where a server's budget and limits apply
class Viggle(commands.GroupCog, group_name="viggle", group_description="Animate characters with Viggle"):
    def __init__(self, bot) -> None:
        self.bot = bot
        super().__init__()

    # -- helpers --------------------------------------------------------------------------------
    def _provider(self):
        return self.bot.jobs.provider(PROVIDER, DISPLAY)

    async def _refuse(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.edit_original_response(content=text[:2000])

    async def _start(self, interaction: discord.Interaction, kind: str, summary: str, params: dict[str, Any],
                     estimate: Estimate | None = None) -> None:
        await launch(interaction, JobRequest(PROVIDER, kind, summary, params, estimate))

    async def _saved(self, owner: int, kind: str, contains: str = "", limit: int = 25) -> list[SavedObject]:
        return await saved(self.bot, owner, kind, contains, limit)

    # -- characters, scenes, templates ----------------------------------------------------------
    @app_commands.command(name="character", description="Make a reusable character from a picture")
    @app_commands.describe(name="What to call the character", image="A clear, front-facing PNG or JPG",
                           url="Or a link to the picture")
    async def character(self, interaction: discord.Interaction, name: Name,
                        image: discord.Attachment | None = None, url: str | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            name = clean_name(name, "character")
            self._provider()
            source = one_input(image, url, "image", "picture", self.bot.net.policy)
        except (Refusal, JobError) as exc:
            await self._refuse(interaction, str(exc))
            return
        params = {"name": name, "image": source.get("attachment"), "image_url": source.get("url")}
        await self._start(interaction, "character", f"Character “{name}”", params, viggle_estimate("character"))

    @app_commands.command(name="scene", description="Prepare a reusable scene (the motion) from a clip")
    @app_commands.describe(name="What to call the scene", video="An MP4, MOV or WebM clip under 5 minutes",
                           url="Or a link to the clip", background_mode="What stays behind the character",
                           model="The model this scene is prepared for (renders must use the same)")
    @app_commands.choices(background_mode=BACKGROUND_CHOICES, model=MODEL_CHOICES)
    async def scene(self, interaction: discord.Interaction, name: Name, video: discord.Attachment | None = None,
                    url: str | None = None, background_mode: str = "original",
                    model: str = MODELS[0]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            name = clean_name(name, "scene")
            self._provider()
            source = one_input(video, url, "video", "clip", self.bot.net.policy)
        except (Refusal, JobError) as exc:
            await self._refuse(interaction, str(exc))
            return
        params = {"name": name, "video": source.get("attachment"), "video_url": source.get("url"),
                  "background_mode": background_mode, "model": model}
        await self._start(interaction, "scene", f"Scene “{name}” ({model}, {background_mode} background)",
                          params, viggle_estimate("scene"))

    @app_commands.command(name="template", description="Import a viggle.ai template as a scene")
    @app_commands.describe(template_id="The template's id from viggle.ai", name="What to call the scene")
    async def template(self, interaction: discord.Interaction, template_id: app_commands.Range[str, 4, 80],
                       name: Name | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        template_id = template_id.strip()
        if not all(c.isalnum() or c in "-_" for c in template_id):
            await self._refuse(interaction, "A template id has only letters, digits and dashes.")
            return
        try:
            name = clean_name(name, "scene") if name is not None else None
            self._provider()
        except (Refusal, JobError) as exc:
            await self._refuse(interaction, str(exc))
            return
        params = {"template_id": template_id, "name": name}
        await self._start(interaction, "template", f"Template {template_id}" + (f" as “{name}”" if name else ""),
                          params, viggle_estimate("template"))

    # -- render -----------------------------------------------------------------------------------
    @app_commands.command(name="render", description="Put your characters into one of your scenes")
    @app_commands.describe(scene="One of your scenes", character="One of your characters (one-person scenes)",
                           mapping='Multi-person: JSON of segment → character, e.g. {"person_a1b2c3d4": "Alice"}',
                           background_mode="What is behind the characters", bg_color="R,G,B for a solid background",
                           fast="Twice as fast, twice the credits", model="Must match the scene's model")
    @app_commands.choices(background_mode=BACKGROUND_CHOICES, model=MODEL_CHOICES)
    async def render(self, interaction: discord.Interaction, scene: app_commands.Range[str, 1, 100],
                     character: app_commands.Range[str, 1, 100] | None = None,
                     mapping: app_commands.Range[str, 2, 1000] | None = None,
                     background_mode: str = "original", bg_color: str | None = None, fast: bool = False,
                     model: str | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            request = await prepare_render(self.bot, interaction.user.id, scene=scene, character=character,
                                           mapping=mapping, background_mode=background_mode, bg_color=bg_color,
                                           fast=fast, model=model)
        except (Refusal, JobError) as exc:
            await self._refuse(interaction, str(exc))
            return
        except ProviderError as exc:
            await self._refuse(interaction, user_message(exc, DISPLAY))
            return
        await launch(interaction, request)

    @render.autocomplete("scene")
    async def _scene_choices(self, interaction: discord.Interaction, current: str):
        scenes = await self._saved(interaction.user.id, "scene", current.strip())
        return [app_commands.Choice(name=describe(s), value=s.remote_id[:100]) for s in scenes][:25]

    @render.autocomplete("character")
    async def _character_choices(self, interaction: discord.Interaction, current: str):
        chars = await self._saved(interaction.user.id, "character", current.strip())
        chars.sort(key=lambda c: c.status != "ready")
        return [app_commands.Choice(name=describe(c), value=c.remote_id[:100]) for c in chars][:25]

    @render.autocomplete("mapping")
    async def _mapping_choices(self, interaction: discord.Interaction, current: str):
        owner = interaction.user.id
        picked = getattr(interaction.namespace, "scene", None)
        scene = find_saved(await self._saved(owner, "scene", limit=200), picked) if picked else None
        segments = list((scene.data or {}).get("segments") or []) if scene else []
        if not segments:
            return []
        chars = await self._saved(owner, "character", limit=25)
        return [app_commands.Choice(name=n, value=v) for n, v in mapping_suggestions(current, segments, chars)][:25]

    # -- mix, credits -----------------------------------------------------------------------------
    @app_commands.command(name="mix", description="Animate a picture with the motion of a clip, in one go")
    @app_commands.describe(image="The character picture (PNG/JPG)", video="The driving clip (MP4/MOV)",
                           image_url="Or a link to the picture", video_url="Or a link to the clip",
                           model="Viggle model", background_mode="What is behind the character",
                           bg_color="R,G,B for a solid background", fast="Twice as fast, twice the credits")
    @app_commands.choices(background_mode=BACKGROUND_CHOICES, model=MODEL_CHOICES)
    async def mix(self, interaction: discord.Interaction, image: discord.Attachment | None = None,
                  video: discord.Attachment | None = None, image_url: str | None = None,
                  video_url: str | None = None, model: str = MODELS[0], background_mode: str = "original",
                  bg_color: str | None = None, fast: bool = False) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            self._provider()
            picture = one_input(image, image_url, "image", "picture", self.bot.net.policy)
            clip = one_input(video, video_url, "video", "clip", self.bot.net.policy)
            request = prepare_mix(picture, clip, model=model, background_mode=background_mode, bg_color=bg_color,
                                  fast=fast, first=image.filename if image else "a picture",
                                  second=video.filename if video else "a clip")
        except (Refusal, JobError) as exc:
            await self._refuse(interaction, str(exc))
            return
        await launch(interaction, request)

    @app_commands.command(name="credits", description="Viggle credits left on the bot's account")
    async def credits(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            provider = self._provider()
            await self.bot.jobs.cooldown(interaction)
            balance = await provider.credits()
        except JobError as exc:
            await self._refuse(interaction, str(exc))
            return
        except ProviderError as exc:
            await self._refuse(interaction, user_message(exc, DISPLAY))
            return
        if balance is None:
            await self._refuse(interaction, "Viggle did not say how many credits are left.")
            return
        await self._refuse(interaction, f"Viggle credits left: **{float(balance):g}** "
                                        "(a render costs 1 credit per second of video, 2 with fast; "
                                        "a character costs 1).")


async def setup(bot) -> None:
    await bot.add_cog(Viggle(bot))
