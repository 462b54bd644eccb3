"""Slash commands as the console's composer offers them, and the browser's option values typed
the way the Discord client would send them (numbers as numbers, files as attachments)."""

from __future__ import annotations

from typing import Any

from sandbox.discord.interactions import (
    ATTACHMENT,
    BOOLEAN,
    CHANNEL,
    INTEGER,
    MENTIONABLE,
    NUMBER,
    ROLE,
    STRING,
    SUB_COMMAND,
    SUB_COMMAND_GROUP,
    USER,
    CommandInputError,
)

_SPEC_KEYS = ("name", "type", "description", "required", "choices", "autocomplete", "min_value", "max_value",
              "min_length", "max_length")


def command_paths(emu: Any) -> list[dict]:
    """Every runnable command path ("splat create") with its leaf options, guild commands first."""
    out: dict[str, dict] = {}
    for scope in (emu.guild_id, "global"):
        for cmd in emu.commands.get(scope, []):
            if cmd.get("type", 1) != 1:
                continue
            for path, desc, options in _walk(cmd["name"], cmd.get("description", ""), cmd.get("options") or []):
                out.setdefault(path, {"path": path, "description": desc,
                                      "options": [{k: o[k] for k in _SPEC_KEYS if k in o} for o in options]})
    return sorted(out.values(), key=lambda c: c["path"])


def _walk(path: str, desc: str, options: list[dict]):
    subs = [o for o in options if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
    if not subs:
        yield path, desc, options
        return
    for sub in subs:
        yield from _walk(f"{path} {sub['name']}", sub.get("description", ""), sub.get("options") or [])


def leaf_options(emu: Any, command: str) -> list[dict] | None:
    """The registered options of a command path, or None when nothing is registered under that name."""
    for entry in command_paths(emu):
        if entry["path"] == command:
            return entry["options"]
    return None


def _typed(emu: Any, otype: int, name: str, value: Any) -> Any:
    try:
        if otype == INTEGER:
            return int(value)
        if otype == NUMBER:
            return float(value)
        if otype == BOOLEAN:
            return value is True or str(value).lower() in ("true", "1", "yes")
        if otype in (USER, CHANNEL, ROLE, MENTIONABLE):
            return int(value)
        if otype == ATTACHMENT:
            return emu.cdn.files[int(value)]
    except (TypeError, ValueError, KeyError):
        raise CommandInputError(f"option {name!r}: {value!r} is not a valid value") from None
    return str(value)


def typed_options(emu: Any, command: str, raw: dict[str, Any], *, focused: str | None = None) -> dict[str, Any]:
    """The browser's values (strings, or attachment ids) typed per the registered options. Empty
    fields are left out, as the client leaves out options nobody filled. While autocompleting,
    other options are sent as typed and a value that does not convert yet is left out."""
    specs = {o["name"]: o for o in leaf_options(emu, command) or []}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name == focused:
            out[name] = "" if value is None else str(value)
            continue
        if value is None or value == "":
            continue
        otype = specs.get(name, {}).get("type", STRING)
        try:
            out[name] = _typed(emu, otype, name, value)
        except CommandInputError:
            if focused is None:
                raise
    return out
