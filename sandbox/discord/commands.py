"""Application command registration (what `tree.sync()` sends), per scope, with Discord's
validation and the 200-creates-per-day-per-guild limit. Slash interactions are built from what
was registered here, so option types and nesting are the bot's own."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from .errors import ApiError, FormErrors

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

GLOBAL = "global"
DAILY_CREATES = 200
_NAME = re.compile(r"^[-_'\w\u0900-\u097f\u0e00-\u0e7f]{1,32}$")


class CommandRegistry:
    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu
        self.by_scope: dict[Any, list[dict]] = {}
        self.creates: dict[Any, list[float]] = {}  # scope -> creation times (rolling day)

    # -- lookup for the user-acting API ----------------------------------------------------------
    def find(self, name: str, guild_id: int) -> tuple[dict | None, bool]:
        """(command, is_guild_scoped) for a CHAT_INPUT command name, guild scope first."""
        for scope in (guild_id, GLOBAL):
            for cmd in self.by_scope.get(scope, []):
                if cmd["name"] == name and cmd.get("type", 1) == 1:
                    return cmd, scope != GLOBAL
        return None, False

    @property
    def any_registered(self) -> bool:
        return any(self.by_scope.values())

    # -- validation ------------------------------------------------------------------------------
    def _validate(self, cmds: list[dict]) -> None:
        errors = FormErrors()
        names: set[tuple[str, int]] = set()
        if sum(1 for c in cmds if c.get("type", 1) == 1) > 100:
            errors.max_length((), 100)
        for i, cmd in enumerate(cmds):
            ctype = cmd.get("type", 1)
            name = cmd.get("name") or ""
            if ctype == 1 and (not _NAME.match(name) or name != name.lower()):
                errors.add((i, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if (name, ctype) in names:
                errors.add((i, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
            names.add((name, ctype))
            if ctype == 1 and not 1 <= len(cmd.get("description") or "") <= 100:
                errors.add((i, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            self._validate_options(cmd.get("options") or [], (i, "options"), errors)
        if errors.tree:
            raise ApiError(400, 50035, "Invalid Form Body", errors.tree)

    def _validate_options(self, options: list[dict], path: tuple, errors: FormErrors) -> None:
        if len(options) > 25:
            errors.max_length(path, 25)
        seen_optional = False
        for j, opt in enumerate(options):
            if not _NAME.match(opt.get("name") or "") or opt["name"] != opt["name"].lower():
                errors.add((*path, j, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if not 1 <= len(opt.get("description") or "") <= 100:
                errors.add((*path, j, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            if opt.get("type") in (1, 2):
                self._validate_options(opt.get("options") or [], (*path, j, "options"), errors)
                continue
            if opt.get("required"):
                if seen_optional:
                    errors.add((*path, j, "required"), "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                               "Required options must be placed before non-required options")
            else:
                seen_optional = True
            if len(opt.get("choices") or []) > 25:
                errors.max_length((*path, j, "choices"), 25)
            if opt.get("autocomplete") and opt.get("choices"):
                errors.add((*path, j, "autocomplete"), "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                           "Autocomplete cannot be set on options with choices")

    # -- storage ---------------------------------------------------------------------------------
    def _count_creates(self, scope: Any, new: int) -> None:
        now = time.time()
        times = [t for t in self.creates.get(scope, []) if now - t < 86400]
        if new and len(times) + new > DAILY_CREATES:
            raise ApiError(429, 30034, f"Max number of daily application command creates has been reached ({DAILY_CREATES})",
                           headers={"Retry-After": str(int(86400 - (now - times[0])) if times else 86400)})
        times.extend([now] * new)
        self.creates[scope] = times

    def _complete(self, cmd: dict, scope: Any, existing: dict | None) -> dict:
        out = dict(cmd)
        out.setdefault("type", 1)
        out["id"] = existing["id"] if existing else str(self.emu.ids.next())
        out["application_id"] = str(self.emu.application_id)
        out["version"] = str(self.emu.ids.next())
        out.setdefault("description", "")
        out.setdefault("default_member_permissions", None)
        out.setdefault("dm_permission", True)
        out.setdefault("nsfw", False)
        out.setdefault("integration_types", [0])
        out.setdefault("contexts", None)
        if scope != GLOBAL:
            out["guild_id"] = str(scope)
        return out

    def overwrite(self, scope: Any, cmds: list[dict]) -> list[dict]:
        self._validate(cmds)
        old = {(c["name"], c.get("type", 1)): c for c in self.by_scope.get(scope, [])}
        new = sum(1 for c in cmds if (c.get("name"), c.get("type", 1)) not in old)
        self._count_creates(scope, new)
        result = [self._complete(c, scope, old.get((c.get("name"), c.get("type", 1)))) for c in cmds]
        self.by_scope[scope] = result
        self.emu._changed()
        return result

    def upsert(self, scope: Any, cmd: dict) -> tuple[dict, bool]:
        current = list(self.by_scope.get(scope, []))
        key = (cmd.get("name"), cmd.get("type", 1))
        existing = next((c for c in current if (c["name"], c.get("type", 1)) == key), None)
        self._validate([cmd])
        if existing is None:
            self._count_creates(scope, 1)
        done = self._complete(cmd, scope, existing)
        current = [c for c in current if c is not existing] + [done]
        self.by_scope[scope] = current
        self.emu._changed()
        return done, existing is None

    def get(self, scope: Any, cid: str) -> dict:
        for c in self.by_scope.get(scope, []):
            if c["id"] == cid:
                return c
        raise ApiError(404, 10063, "Unknown application command")

    def delete(self, scope: Any, cid: str) -> None:
        cmd = self.get(scope, cid)
        self.by_scope[scope] = [c for c in self.by_scope[scope] if c is not cmd]
        self.emu._changed()


def check_app(emu: DiscordEmulator, app_id: str) -> None:
    if app_id != str(emu.application_id):
        raise ApiError(403, 50001, "Missing Access")
