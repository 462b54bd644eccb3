"""Steps of a long collect that survive a restart: each file is made once per job.

The spool folder of a job outlives a crash (the runner sweeps only folders of ended jobs), so a
collect that is killed after downloading a 200 MB scene and rendering its turntable should not do
either again. A file counts as made only once it sits under its final name: it is written under a
temporary name (with the same suffix, so format-by-extension writers still work) and renamed when
complete, so a kill half-way leaves nothing that looks finished.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MAKING = ".making-"


async def made_once(dest: Path, make: Callable[[Path], Awaitable[Any]]) -> bool:
    """Run `make(tmp)` unless `dest` is already there from an earlier run of this step, then move
    the result into place. Returns True when it was made now."""
    if dest.exists():
        return False
    tmp = dest.with_name(MAKING + dest.name)
    tmp.unlink(missing_ok=True)
    try:
        await make(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return True


def remember(dest: Path, facts: dict[str, Any]) -> None:
    """Keep what making `dest` found out (its description, say) beside it, for a later run that
    finds the file made and must describe it the same way."""
    notes = dest.with_name(dest.name + ".json")
    tmp = notes.with_name(MAKING + notes.name)
    tmp.write_text(json.dumps(facts))
    tmp.replace(notes)


def recall(dest: Path) -> dict[str, Any] | None:
    """What `remember` kept for `dest`; None when nothing (or nothing readable) was kept."""
    try:
        facts = json.loads(dest.with_name(dest.name + ".json").read_text())
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None
