"""The user's side: what a person does in the Discord client (run a slash command, click a
button, type into an autocompleted option, submit a modal), turned into INTERACTION_CREATE
payloads like Discord builds them, and a handle to watch how the bot answered."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from . import wire
from .state import Guild, Message, StoredFile

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11


class InteractionFailed(AssertionError):
    """The user saw "This interaction failed" (no initial response within the deadline)."""


class CommandInputError(ValueError):
    """What the Discord client would not let the user send (unknown command, missing or invalid option)."""


class Interaction:
    """One interaction from the user's side: its initial response, the messages it produced."""

    def __init__(self, emu: DiscordEmulator, *, type: int, user_id: int, channel_id: int,
                 command_name: str | None = None, message_id: int | None = None) -> None:
        self.emu = emu
        self.id = emu.ids.next()
        self.token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(96)  # URL-safe, like Discord's
        self.type = type
        self.user_id = user_id
        self.channel_id = channel_id
        self.guild_id = (emu.guild_of_channel(channel_id) or emu.guild).id
        self.sessions: list[str] = []  # gateway sessions it was dispatched to (none: not delivered)
        self.command_name = command_name
        self.component_message_id = message_id  # the message a clicked component sits on
        self.created_at = time.time()  # token age is measured from here
        self.dispatched_at = 0.0  # loop time
        self.response_type: int | None = None
        self.response_data: dict | None = None
        self.ack_latency: float | None = None
        self.failed = False
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []
        self.choices: list[dict] | None = None
        self.modal: dict | None = None
        self.payload: dict[str, Any] = {}
        self.component_updated = False  # type 7, or an @original edit after type 6

    def __repr__(self) -> str:
        return (f"<Interaction {self.id} type={self.type} {self.command_name or ''} response={self.response_type} "
                f"failed={self.failed}>")

    @property
    def acked(self) -> bool:
        return self.response_type is not None

    @property
    def token_expired(self) -> bool:
        return time.time() - self.created_at > self.emu.token_ttl

    @property
    def replies(self) -> list[Message]:
        """Messages this interaction produced (original, then followups), latest versions."""
        ids = ([self.original_message_id] if self.original_message_id else []) + self.followup_ids
        out = []
        for mid in dict.fromkeys(ids):
            m = self.emu._messages.get(mid)
            if m is not None and (m.interaction_id == self.id or mid == self.original_message_id):
                out.append(m)
        return out

    def _visible_replies(self) -> list[Message]:
        out = []
        for m in self.replies:
            if m.loading or m.deleted:
                continue
            if m.id == self.component_message_id and not self.component_updated:
                continue
            out.append(m)
        return out

    async def wait_ack(self, timeout: float = 5) -> int:
        """The initial response type; raises InteractionFailed when the deadline passed without one."""
        await self.emu.wait_for(lambda: self.acked or self.failed, timeout=timeout,
                                what=f"an initial response to {self!r}")
        if self.response_type is None:
            raise InteractionFailed(f"{self!r}: no initial response within {self.emu.ack_deadline} s")
        return self.response_type

    async def wait_reply(self, timeout: float = 10) -> Message:
        """The first user-visible message: a type 4 reply, the deferred response once edited,
        a followup, or (for components) the updated message."""
        def ready() -> Message | None:
            visible = self._visible_replies()
            if visible:
                return visible[0]
            if self.failed:
                raise InteractionFailed(f"{self!r}: no initial response within {self.emu.ack_deadline} s")
            return None

        return await self.emu.wait_for(ready, timeout=timeout, what=f"a reply to {self!r}")


# -- payload building ---------------------------------------------------------------------------

def base_payload(emu: DiscordEmulator, ix: Interaction) -> dict[str, Any]:
    user = emu.users[ix.user_id]
    guild = emu.guilds[ix.guild_id]
    channel = guild.channels[ix.channel_id]
    return {
        "id": str(ix.id), "application_id": str(emu.application_id), "type": ix.type, "token": ix.token,
        "version": 1, "guild_id": str(guild.id), "channel_id": str(channel.id),
        "channel": wire.channel_obj(guild, channel),
        "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
        "member": wire.member_obj(user, permissions=guild.permissions(user, channel), guild=guild),
        "app_permissions": str(guild.permissions(emu.bot_user, channel)),
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [], "entitlement_sku_ids": [],
        "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0,
        "attachment_size_limit": emu.upload_limit,
    }


def _infer_type(emu: DiscordEmulator, guild: Guild, value: Any) -> int:
    if isinstance(value, StoredFile):
        return ATTACHMENT
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        if value in emu.users:
            return USER
        if value in guild.channels:
            return CHANNEL
        if value in guild.roles:
            return ROLE
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    return STRING


def _convert(emu: DiscordEmulator, guild: Guild, name: str, otype: int, value: Any, resolved: dict,
             spec: dict | None) -> Any:
    """Check one option value like the Discord client does; fill `resolved`; return the wire value."""
    def bad(why: str) -> CommandInputError:
        return CommandInputError(f"option {name!r}: {why} (got {value!r})")

    if otype == ATTACHMENT:
        att = emu.cdn.files.get(value if isinstance(value, int) else getattr(value, "id", -1))
        if att is None:
            raise bad("not an attachment made with emu.attachment()")
        resolved.setdefault("attachments", {})[str(att.id)] = emu.cdn.as_attachment(att)
        return str(att.id)
    if otype in (USER, MENTIONABLE) and int(getattr(value, "id", value)) in emu.users:
        uid = int(getattr(value, "id", value))
        u = emu.users[uid]
        resolved.setdefault("users", {})[str(uid)] = wire.user_obj(u)
        if uid in guild.members:
            member = wire.member_obj(u, permissions=guild.permissions(u, None), guild=guild)
            member.pop("user")
            resolved.setdefault("members", {})[str(uid)] = member
        return str(uid)
    if otype in (ROLE, MENTIONABLE) and int(getattr(value, "id", value)) in guild.roles:
        role = guild.roles[int(getattr(value, "id", value))]
        resolved.setdefault("roles", {})[str(role.id)] = wire.role_obj(role)
        return str(role.id)
    if otype in (USER, ROLE, MENTIONABLE):
        raise bad("unknown user or role")
    if otype == CHANNEL:
        ch = guild.channels.get(int(getattr(value, "id", value)))
        if ch is None:
            raise bad("unknown channel")
        if spec and spec.get("channel_types") and ch.type not in spec["channel_types"]:
            raise bad("channel type not allowed")
        resolved.setdefault("channels", {})[str(ch.id)] = {
            "id": str(ch.id), "name": ch.name, "type": ch.type, "parent_id": None,
            "permissions": str(guild.permissions(emu.bot_user, ch))}
        return str(ch.id)
    if otype == BOOLEAN:
        if not isinstance(value, bool):
            raise bad("expected a boolean")
        return value
    if otype == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("expected an integer")
        if not -(2**53) < value < 2**53:
            raise bad("integer out of range")
    elif otype == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("expected a number")
    elif otype == STRING:
        if not isinstance(value, str):
            raise bad("expected a string")
        if spec and len(value) < spec.get("min_length", 0):
            raise bad(f"shorter than {spec['min_length']}")
        if spec and len(value) > spec.get("max_length", 6000):
            raise bad(f"longer than {spec.get('max_length', 6000)}")
    if spec and otype in (INTEGER, NUMBER):
        if spec.get("min_value") is not None and value < spec["min_value"]:
            raise bad(f"below {spec['min_value']}")
        if spec.get("max_value") is not None and value > spec["max_value"]:
            raise bad(f"above {spec['max_value']}")
    if spec and spec.get("choices") and value not in [c["value"] for c in spec["choices"]]:
        raise bad(f"not one of the choices {[c['value'] for c in spec['choices']]}")
    return value


def command_data(emu: DiscordEmulator, command: str, options: dict[str, Any], *,
                 focused: str | None = None, guild: Guild | None = None) -> dict[str, Any]:
    """`data` for a CHAT_INPUT interaction in `guild` (the default one unless given). With
    registered commands, nesting and option types come from the registration and are validated;
    otherwise they are inferred from the values."""
    guild = guild or emu.guild
    words = command.split()
    if not 1 <= len(words) <= 3:
        raise CommandInputError(f"bad command path {command!r}")
    cmd, guild_scoped = emu.command_registry.find(words[0], guild.id)
    resolved: dict[str, dict] = {}
    leaf: list[dict] = []
    kinds: list[int] = []
    if cmd is None and emu.command_registry.any_registered:
        raise CommandInputError(f"no registered command /{words[0]} (registered: "
                                f"{sorted(c['name'] for cs in emu.commands.values() for c in cs)})")
    if cmd is not None:
        specs = cmd.get("options") or []
        for word in words[1:]:
            sub = next((o for o in specs if o["name"] == word and o.get("type") in (1, 2)), None)
            if sub is None:
                raise CommandInputError(f"/{command}: no subcommand {word!r}")
            kinds.append(sub["type"])
            specs = sub.get("options") or []
        if any(o.get("type") in (1, 2) for o in specs):
            raise CommandInputError(f"/{command} needs a subcommand: {[o['name'] for o in specs]}")
        by_name = {o["name"]: o for o in specs}
        for name in options:
            if name not in by_name:
                raise CommandInputError(f"/{command} has no option {name!r} (has {sorted(by_name)})")
        if focused is None:
            missing = [o["name"] for o in specs if o.get("required") and o["name"] not in options]
            if missing:
                raise CommandInputError(f"/{command}: required options missing: {missing}")
        elif focused not in by_name or not by_name[focused].get("autocomplete"):
            raise CommandInputError(f"/{command}: option {focused!r} has no autocomplete")
        for spec in specs:  # the client sends options in the registered order
            name = spec["name"]
            if name not in options:
                continue
            if name == focused:
                leaf.append({"name": name, "type": spec["type"], "value": str(options[name]), "focused": True})
                continue
            value = options[name]
            if focused is not None:  # partial input elsewhere is sent as typed, not validated
                value = value if spec["type"] in (STRING, INTEGER, NUMBER, BOOLEAN) else _convert(
                    emu, guild, name, spec["type"], value, resolved, None)
            else:
                value = _convert(emu, guild, name, spec["type"], value, resolved, spec)
            leaf.append({"name": name, "type": spec["type"], "value": value})
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1}
        if guild_scoped:
            data["guild_id"] = str(guild.id)
    else:
        kinds = [SUB_COMMAND] if len(words) == 2 else [SUB_COMMAND_GROUP, SUB_COMMAND] if len(words) == 3 else []
        for name, value in options.items():
            otype = _infer_type(emu, guild, value)
            if name == focused:
                leaf.append({"name": name, "type": otype, "value": str(value), "focused": True})
            else:
                leaf.append({"name": name, "type": otype,
                             "value": _convert(emu, guild, name, otype, value, resolved, None)})
        data = {"id": str(emu.ids.next()), "name": words[0], "type": 1}
    nested = leaf
    for word, kind in reversed(list(zip(words[1:], kinds, strict=True))):
        nested = [{"name": word, "type": kind, "options": nested}]
    if nested:
        data["options"] = nested
    if resolved:
        data["resolved"] = resolved
    return data


def find_component(components: list[dict], custom_id: str) -> dict | None:
    for comp in components:
        if comp.get("custom_id") == custom_id:
            return comp
        for key in ("components", "accessory", "component"):
            inner = comp.get(key)
            if isinstance(inner, dict):
                inner = [inner]
            if isinstance(inner, list):
                found = find_component(inner, custom_id)
                if found is not None:
                    return found
    return None


def modal_components(modal: dict | None, values: dict[str, str]) -> list[dict]:
    """The submitted components mirror the shown modal (action rows or labels around text inputs)."""
    if modal is None:
        return [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
    out = []
    for row in modal.get("components") or []:
        if row.get("type") == 18:  # Label wrapping one component
            inner = row.get("component") or {}
            out.append({"type": 18, "id": row.get("id", 0), "component": {
                "type": inner.get("type", 4), "custom_id": inner.get("custom_id"),
                "value": values.get(inner.get("custom_id"), "")}})
        elif row.get("type") == 1:
            out.append({"type": 1, "components": [{"type": c.get("type", 4), "custom_id": c.get("custom_id"),
                                                   "value": values.get(c.get("custom_id"), "")}
                                                  for c in row.get("components") or []]})
    return out

