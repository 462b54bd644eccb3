"""Validation of `POST /api/render`: which of the three input combos was sent, and every rule the
docs give for it, in the order the codes would surface. Produces a plan the service charges for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.viggle_errors import ViggleError
from sandbox.viggle_inputs import IMAGE_CAP, Form, Upload, check_image
from sandbox.viggle_records import BACKGROUND_MODES, MODELS, Scene

if TYPE_CHECKING:
    from sandbox.viggle import ViggleSandbox

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass
class RenderPlan:
    mode: str
    model: str
    background_mode: str
    bg_color: tuple[int, int, int] | None
    duration: float
    width: int
    height: int
    fps: float
    fast: bool
    character_ids: list[str]
    scene_id: str | None


def _flag(form: Form, name: str) -> bool:
    value = (form.text(name) or "false").lower()
    if value not in _TRUE + _FALSE:
        raise ViggleError("CS-UORC01-002", f"{name} must be true or false, got {value!r}")
    return value in _TRUE


def _background(form: Form) -> tuple[str, tuple[int, int, int] | None]:
    raw = form.text("background_mode") or "original"
    mode = BACKGROUND_MODES.get(raw.lower())
    if mode is None:
        raise ViggleError("CS-ORIV-011", f"Invalid background mode {raw!r} — original, solid, transparent")
    color = form.text("bg_color")
    if color is not None and mode != "solid":
        raise ViggleError("CS-UORC01-002", f"bg_color is only allowed with background_mode=solid (got {mode})")
    if mode != "solid":
        return mode, None
    parts = (color or "0,255,0").split(",")
    try:
        rgb = tuple(int(p.strip()) for p in parts)
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ViggleError("CS-UORC01-002", f"bg_color must be \"R,G,B\" with values 0-255, got {color!r}")
    return mode, (rgb[0], rgb[1], rgb[2])


def _mapping(form: Form, scene: Scene, svc: ViggleSandbox) -> list[str]:
    try:
        mapping = json.loads(form.fields["character_mapping"])
    except (json.JSONDecodeError, ValueError) as exc:
        raise ViggleError("CS-ORIV-012", f"Invalid character_mapping JSON: {exc}") from exc
    if not isinstance(mapping, dict) or not mapping or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ViggleError("CS-ORIV-012", "character_mapping must be a non-empty JSON object of "
                          "segment uuid -> character_id strings")
    known = {seg["uuid"] for seg in scene.segments}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ViggleError("CS-ORIV-012", f"Unknown segment(s) for scene {scene.id}: {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(known)) or 'none (scene has no segments)'}")
    return list(mapping.values())


def _ready_character(svc: ViggleSandbox, character_id: str) -> str:
    char = svc.characters.get(character_id)
    if char is None:
        raise ViggleError("CS-ORIV-008", f"Character not found: {character_id}")
    if char.status != "ready":
        raise ViggleError("CS-UORC01-002", f"Character {character_id} is not ready (status: {char.status})")
    return character_id


def _ready_scene(svc: ViggleSandbox, scene_id: str, model: str | None) -> Scene:
    scene = svc.scenes.get(scene_id)
    if scene is None:
        raise ViggleError("CS-ORIV-009", f"Scene not found: {scene_id}")
    if model is not None and model != scene.model:
        raise ViggleError("CS-UORC01-002", f"Scene {scene_id} was preprocessed with {scene.model}; "
                          f"cannot render it with {model}. Omit model or preprocess the scene with {model}.")
    if scene.status == "failed":
        raise ViggleError("CS-ORIV-010", f"Scene preprocessing failed: {scene.error_message}")
    if scene.status != "ready":
        raise ViggleError("CS-ORIV-010", f"Scene preprocessing not complete (status: {scene.status})")
    return scene


async def _input(svc: ViggleSandbox, form: Form, name: str) -> Upload | None:
    """The file part `name`, or `name_url` fetched server-side (None if absent or unreachable)."""
    if name in form.files:
        return form.files[name]
    url = form.text(f"{name}_url")
    if url is None:
        return None
    video = name == "driving_video"
    upload = await svc.fetch(url, svc.max_video_bytes if video else IMAGE_CAP)
    if upload is None and video:
        raise ViggleError("CS-ORIV-007", "Could not read video file: driving_video_url did not answer 200")
    if upload is not None:
        form.files[name] = upload  # cleaned up with the form
    return upload


async def plan_render(svc: ViggleSandbox, form: Form) -> RenderPlan:
    has_ref = "ref_image" in form.files or form.text("ref_image_url") is not None
    has_drv = "driving_video" in form.files or form.text("driving_video_url") is not None
    character_id, scene_id = form.text("character_id"), form.text("scene_id")
    has_map = form.text("character_mapping") is not None

    model = form.text("model")
    if model is not None and model not in MODELS:
        raise ViggleError("CS-UORC01-002", f"model must be one of {', '.join(MODELS)}, got {model!r}")
    background_mode, bg_color = _background(form)
    fast = _flag(form, "fast")
    if fast and not (has_drv or scene_id):
        raise ViggleError("CS-UORC01-002", "fast=true needs driving_video or scene_id")
    if fast and not svc.fast_available:
        raise ViggleError("CS-UORC01-001", "Fast mode is temporarily unavailable — retry without fast=true")

    on_demand, preprocessed = has_ref or has_drv, bool(character_id or scene_id or has_map)
    if on_demand and preprocessed:
        raise ViggleError("CS-UORC01-002", "Send either ref_image+driving_video, character_id+scene_id "
                          "or scene_id+character_mapping, not a mix")
    if not (has_ref or character_id or has_map):
        raise ViggleError("CS-ORIV-001")
    if not (has_drv or scene_id):
        raise ViggleError("CS-ORIV-002", "Driving video is required (MP4) — or provide scene_id")
    if character_id and has_map:
        raise ViggleError("CS-UORC01-002", "Send character_id or character_mapping, not both")

    mode = "fast" if fast else ("preprocessed" if scene_id else "full_pipeline")
    if scene_id:
        scene = _ready_scene(svc, scene_id, model)
        wanted = _mapping(form, scene, svc) if has_map else [character_id or ""]
        chars = [_ready_character(svc, cid) for cid in wanted]
        return RenderPlan(mode, scene.model, background_mode, bg_color, scene.duration, scene.width,
                          scene.height, scene.fps, fast, chars, scene.id)

    ref = await _input(svc, form, "ref_image")
    await check_image(ref)
    info = await svc.probe(await _input(svc, form, "driving_video"))
    return RenderPlan(mode, model or MODELS[0], background_mode, bg_color, info.duration, info.width,
                      info.height, info.fps, fast, [], None)

