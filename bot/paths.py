"""The bot names every file it writes. A job's files live in its own folder (`spool/<job id>`,
named by the bot); inside it, names are made here from fixed words and slugs, never from a
provider's ids or a user's text as they are, and `job_path` proves the result stays inside.
"""

from __future__ import annotations

import re
from pathlib import Path

_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,119}")


class UnsafePath(ValueError):
    """A file name that would leave the job's folder (or is not one of the bot's own names)."""


def slug(text: str, limit: int = 40, fallback: str = "file") -> str:
    """'Mon Chat (gauche)/../x' -> 'mon-chat-gauche-x': lowercase ascii words and dashes only."""
    words = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:limit].rstrip("-")
    return words or fallback


def safe_suffix(filename: str | None, allowed: tuple[str, ...], default: str) -> str:
    """A suffix from a user's file name only when it is one the bot expects (`.mp4`, `.png`...)."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in allowed else default


def job_path(workdir: Path, name: str) -> Path:
    """`workdir / name`, refused unless `name` is one plain safe component inside `workdir`."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise UnsafePath(f"not a file name the bot makes: {name!r}")
    path = workdir / name
    root = workdir.resolve()
    if path.resolve().parent != root:
        raise UnsafePath(f"{name!r} leaves the job's folder")
    return path
