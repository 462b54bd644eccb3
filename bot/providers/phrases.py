"""Plain words for every provider status and checkpoint: what a user reads on the status card.

One table per provider, kept apart from the status parsing so the words can change without
touching how statuses are read (vid2scene's few words are phrased where they are parsed, in
vid2scene_status.py). Unknown words fall back to a neutral phrase, never to the raw
status (which may be jargon like `dri_done`).
"""

from __future__ import annotations

#: Viggle render `status` (schema enum plus an older overview's words)
VIGGLE_RENDER = {
    "queued": "Waiting for a free spot at Viggle",
    "processing": "Viggle is animating your character",
    "rendering": "Viggle is drawing the frames",
    "merging": "Viggle is putting the video together",
}

#: Viggle render `checkpoint`: the step it has just finished, said as what comes next
VIGGLE_CHECKPOINT = {
    "ref_done": "Character understood; now studying the motion",
    "dri_done": "Motion understood; now preparing the background",
    "bg_done": "Background ready; now drawing the frames",
    "render_done": "Frames drawn; now putting the video together",
}

#: Viggle character/scene `status`
VIGGLE_OBJECT = {
    "pending": "Waiting for Viggle to start on your {what}",
    "processing": "Viggle is preparing your {what}",
}

#: Scenario job `status` (the SDK's enum)
SCENARIO = {
    "pending": "Waiting to be queued at Scenario",
    "queued": "Waiting for a free spot at Scenario",
    "warming-up": "The model is warming up",
    "in-progress": "Splitting your video into layers",
    "finalizing": "Finishing the layers",
}

FALLBACK = "Working on it"


def viggle_render(status: str, checkpoint: str | None) -> str:
    """The checkpoint says more than the status once there is one."""
    if checkpoint:
        return VIGGLE_CHECKPOINT.get(str(checkpoint), VIGGLE_RENDER.get(status, FALLBACK))
    return VIGGLE_RENDER.get(status, FALLBACK)


def viggle_object(status: str, what: str) -> str:
    return VIGGLE_OBJECT.get(status, FALLBACK).format(what=what)


def scenario(status: str) -> str:
    return SCENARIO.get(status, FALLBACK)
