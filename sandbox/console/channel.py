"""What the renderer needs to know about the emulator's world: who ran which command, which
message a reply answers, and the names of people."""

from __future__ import annotations

from typing import Any

from sandbox.discord.interactions import APPLICATION_COMMAND
from sandbox.discord.state import Message


def used_command(emu: Any, m: Message, names: dict[int, str]) -> tuple[str, str] | None:
    """(user, "/command") when `m` is the first reply to a slash command, as Discord shows above it."""
    ix = emu.interaction_by_id(m.interaction_id) if m.interaction_id else None
    if ix is None or ix.type != APPLICATION_COMMAND or ix.original_message_id != m.id:
        return None
    return names.get(ix.user_id, str(ix.user_id)), f"/{ix.command_name}"


def lookup(emu: Any, message_id: int) -> Message | None:
    try:
        return emu.message(message_id)
    except KeyError:
        return None


def user_names(emu: Any) -> dict[int, str]:
    return {uid: user.name for uid, user in emu.users.items()}
