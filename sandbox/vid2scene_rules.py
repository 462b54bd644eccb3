"""What the vid2scene server accepts: submit-job checks, the job update serializer, the camera_data schema.

Functions of the request data (and the uploaded blob), in the server's own order of checks and
with its messages, so a client sees exactly which error wins when several apply.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sandbox.azure_blob import BlobStore
from sandbox.vid2scene_http import DrfError, ServerError

METHODS = ("glomap", "colmap", "vggt", "quest", "generate_lod")
MIN_GAUSSIANS, MAX_GAUSSIANS, DEFAULT_GAUSSIANS = 100_000, 2_000_000, 1_000_000
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 5_000, 40_000, 25_000
GIB = 1024 ** 3


def _django_bool(value: Any) -> bool:
    """BooleanField.to_python at save time: anything else is a Django ValidationError (a 500 here)."""
    if value is None:
        raise ServerError("null value in a NOT NULL column")
    if isinstance(value, bool | int | float) and value in (True, False):
        return bool(value)
    if value in ("t", "True", "1"):
        return True
    if value in ("f", "False", "0"):
        return False
    raise ServerError(f"{value!r} value must be either True or False.")


#: DRF BooleanField's sets (1 == True and 0 == 0.0 == False, so the numbers cover the booleans)
_DRF_TRUE = {"t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1", 1}
_DRF_FALSE = {"f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "0", 0}

# -- camera_data: the server's JSON schema, with jsonschema's messages and best_match choice ---------
_VECTOR = ("x", "y", "z")
_CAMERA_KEYS = ("lookAt", "position", "up", "cameraType")


def _jtype(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "string": str}[kind])


def _extras(keys: list[str]) -> str:
    verb = "was" if len(keys) == 1 else "were"
    return f"Additional properties are not allowed ({', '.join(repr(k) for k in sorted(keys, key=str))} {verb} unexpected)"


def _object_errors(value: Any, depth: int, props: tuple[str, ...], required: tuple[str, ...], sub) -> list:
    """Errors of an object schema in jsonschema's keyword order: type, properties, required, extras."""
    if not _jtype(value, "object"):
        return [(depth, False, f"{value!r} is not of type 'object'")]
    errors = []
    for key in props:
        if key in value:
            errors += sub(key, value[key])
    errors += [(depth, True, f"{key!r} is a required property") for key in required if key not in value]
    extra = [k for k in value if k not in props]
    if extra:
        errors.append((depth, True, _extras(extra)))
    return errors


def camera_data_error(value: Any) -> str | None:
    """jsonschema's best_match message for `value`, or None when it is valid."""
    def vector(_key: str, vec: Any) -> list:
        return _object_errors(vec, 1, _VECTOR, _VECTOR, lambda k, n: [] if _jtype(n, "number") else
                              [(2, False, f"{n!r} is not of type 'number'")])

    def field(key: str, item: Any) -> list:
        if key != "cameraType":
            return vector(key, item)
        errs = [] if _jtype(item, "string") else [(1, False, f"{item!r} is not of type 'string'")]
        if item not in ("orbital", "drone"):
            errs.append((1, True, f"{item!r} is not one of ['orbital', 'drone']"))
        return errs

    errors = _object_errors(value, 0, _CAMERA_KEYS, ("lookAt", "position", "up"), field)
    if not errors:
        return None
    return max(errors, key=lambda e: (-e[0], not e[1]))[2]


# -- submit-job ----------------------------------------------------------------------------------------
def submission(data: Any, *, credits: int | None, blobs: BlobStore, now: float, max_video_bytes: int,
               max_free_video_bytes: int) -> dict[str, Any]:
    """`dev_api.submit_job` + `job_creation.create_processing_job`, check for check: the new job's fields.

    ValueError carries a 400's message; anything else is the view's generic 500.
    """
    title, public, blob_name = data.get("title"), data.get("public", False), data.get("blob_name")
    allow_as_example = data.get("allow_as_example", False)
    method = data.get("reconstruction_method", "glomap")
    remove_background = data.get("remove_background", False)
    gaussians, steps = data.get("training_max_num_gaussians"), data.get("training_num_steps")
    gaussians = int(gaussians) if gaussians is not None else None
    steps = int(steps) if steps is not None else None
    apriltag = data.get("apriltag_size_mm")
    apriltag = float(apriltag) if apriltag else None
    camera_type = data.get("camera_type")
    if camera_type and camera_type not in ["orbital", "drone"]:
        raise ValueError('Invalid camera_type. Must be "orbital" or "drone".')
    if not blob_name:
        raise ValueError("No blob_name provided.")
    if not re.match(r"^videos/[a-f0-9\-]{36}\.[a-z0-9]+$", blob_name):
        raise ValueError("Invalid blob_name format.")
    method = method or "glomap"
    premium = credits is None or credits >= 1
    if method == "generate_lod":
        cap = 6 * GIB
    else:
        cap = max_video_bytes if premium else max_free_video_bytes
    _check_blob(blobs, blob_name, cap, now)
    if method not in METHODS:
        raise ValueError(f"Invalid reconstruction method. Must be one of: {', '.join(METHODS)}")
    if credits is not None and credits < 1:
        raise ValueError("Insufficient API credits to process scene.")
    gaussians, steps = user_settings(gaussians, steps, apriltag)
    title_text = str(title) if title else blob_name.split("/")[-1]
    if len(title_text) > 255:
        raise ServerError("value too long for type character varying(255)")
    return {
        "title": title_text, "public": _django_bool(public), "allow_as_example": _django_bool(allow_as_example),
        "reconstruction_method": method, "training_max_num_gaussians": gaussians or DEFAULT_GAUSSIANS,
        "training_num_steps": steps or DEFAULT_STEPS, "remove_background": _django_bool(remove_background),
        "apriltag_size_mm": apriltag,
        "camera_data": ({"lookAt": {"x": 0.0, "y": 0.0, "z": 0.0}, "position": {"x": 0.0, "y": 0.0, "z": -3.0},
                         "up": {"x": 0.0, "y": 1.0, "z": 0.0}, "cameraType": camera_type} if camera_type else None),
        "video_blob": blob_name,
    }


def _check_blob(blobs: BlobStore, blob_name: str, cap: int, now: float) -> None:
    blob = blobs.get(blob_name)
    if blob is None:
        raise ValueError("Blob not found. Please verify the upload.")
    if cap and blob.size > cap:
        raise ValueError(f"File size ({blob.size / GIB:.2f} GB) exceeds the maximum allowed limit "
                         f"({cap / GIB:.2f} GB).")
    if now - blob.created > 60 * 60:
        raise ValueError("Blob too old. Please upload a new video.")


def user_settings(gaussians: int | None, steps: int | None, apriltag: float | None) -> tuple[int | None, int | None]:
    """`validate_user_settings` for an enterprise user: any clamp silently wins over every error."""
    errors, adjusted = [], {}
    if gaussians is not None:
        if gaussians < MIN_GAUSSIANS:
            errors.append(f"Number of gaussians must be at least {MIN_GAUSSIANS:,}")
        elif gaussians > MAX_GAUSSIANS:
            adjusted["g"] = MAX_GAUSSIANS
            errors.append(f"Number of gaussians cannot exceed {MAX_GAUSSIANS:,}")
    if steps is not None:
        if steps < MIN_STEPS:
            errors.append(f"Number of training steps must be at least {MIN_STEPS:,}")
        elif steps > MAX_STEPS:
            adjusted["s"] = MAX_STEPS
            errors.append(f"Number of training steps cannot exceed {MAX_STEPS:,}")
    if apriltag is not None and (apriltag < 1.0 or apriltag > 1000.0):
        errors.append("AprilTag size must be between 1mm and 1000mm.")
    if errors and not adjusted:
        raise ValueError("; ".join(errors))
    return adjusted.get("g", gaussians), adjusted.get("s", steps)


# -- PUT/PATCH on a job --------------------------------------------------------------------------------
def update_values(data: Any, *, partial: bool) -> dict[str, Any]:
    """JobDetailSerializer: title, public, camera_data writable; everything else ignored."""
    if not isinstance(data, dict):
        raise DrfError(400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got "
                                                  f"{type(data).__name__}."]})
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    if "title" in data:
        title = data["title"]
        if title is None:
            errors["title"] = ["This field may not be null."]
        elif isinstance(title, bool) or not isinstance(title, str | int | float):
            errors["title"] = ["Not a valid string."]
        elif str(title).strip() == "":
            errors["title"] = ["This field may not be blank."]
        elif len(str(title).strip()) > 255:
            errors["title"] = ["Ensure this field has no more than 255 characters."]
        else:
            values["title"] = str(title).strip()
    elif not partial:
        errors["title"] = ["This field is required."]
    if "public" in data:
        public = data["public"]
        try:
            truth = True if public in _DRF_TRUE else False if public in _DRF_FALSE else None
        except TypeError:
            truth = None
        if public is None:
            errors["public"] = ["This field may not be null."]
        elif truth is None:
            errors["public"] = ["Must be a valid boolean."]
        else:
            values["public"] = truth
    if "camera_data" in data:
        camera = data["camera_data"]
        if isinstance(camera, str):
            try:  # the server reads `e.message` off a JSONDecodeError: AttributeError, a 500
                camera = json.loads(camera)
            except ValueError:
                raise ServerError("JSONDecodeError has no attribute 'message'") from None
        elif camera is not None and not isinstance(camera, dict | list):
            raise ServerError("the JSON object must be str, bytes or bytearray")
        problem = None if camera is None else camera_data_error(camera)
        if problem:
            errors["camera_data"] = [f"Invalid camera_data: {problem}"]
        else:
            values["camera_data"] = camera
    if errors:
        raise DrfError(400, errors)
    return values
