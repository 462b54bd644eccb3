"""The emulated world: guilds (one by default), their roles, channels, users and messages, plus
time-based ids.

Test-facing values use ints for ids; the wire format (strings) is built in `wire.py`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import permissions as P

DISCORD_EPOCH_MS = 1420070400000


class Snowflakes:
    """Time-based ids (discord.py derives `created_at` and interaction expiry from them)."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._last = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (1 << 17) | (next(self._counter) & 0xFFF)
        if value <= self._last:
            value = self._last + 1
        self._last = value
        return value

    def next_on_shard(self, shard_id: int, num_shards: int) -> int:
        """An id whose guild would live on `shard_id` of `num_shards` (Discord's rule is
        `(id >> 22) % num_shards`): the next id, its timestamp moved up to `num_shards - 1` ms on."""
        value = self.next()
        ms = value >> 22
        value += ((shard_id - ms) % num_shards) << 22
        self._last = max(self._last, value)
        return value


def snowflake_time(sf: int) -> datetime:
    return datetime.fromtimestamp(((sf >> 22) + DISCORD_EPOCH_MS) / 1000, tz=UTC)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


@dataclass
class User:
    id: int
    name: str
    bot: bool = False
    role_ids: list[int] = field(default_factory=list)
    joined_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False


@dataclass
class Channel:
    id: int
    name: str
    position: int
    type: int = 0
    overwrites: list[dict] = field(default_factory=list)


@dataclass
class StoredFile:
    """Bytes on disk behind a CDN URL: an upload the emulator streamed in, or a test's own file
    served in place (never copied, so 200 MB inputs stay on disk)."""

    id: int
    filename: str
    size: int
    content_type: str
    path: Path
    channel_id: int
    ephemeral: bool = False  # a slash-command option upload (served under /ephemeral-attachments)
    description: str | None = None


@dataclass
class Message:
    """A message as users see it; `edits` keeps earlier versions (oldest first)."""

    id: int
    channel_id: int
    author_id: int
    content: str = ""
    embeds: list[dict] = field(default_factory=list)
    attachments: list[dict] = field(default_factory=list)
    components: list[dict] = field(default_factory=list)
    flags: int = 0
    ephemeral: bool = False
    visible_to: int | None = None
    message_reference: dict | None = None
    nonce: str | None = None
    allowed_mentions: dict | None = None
    pinged_user_ids: list[int] = field(default_factory=list)
    pinged_role_ids: list[int] = field(default_factory=list)
    pinged_everyone: bool = False
    mentions: list[int] = field(default_factory=list)  # users the content mentions (pinged or not)
    mention_roles: list[int] = field(default_factory=list)
    edits: list[Message] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    edited_at: datetime | None = None
    deleted: bool = False
    interaction_id: int | None = None
    type: int = 0
    webhook_id: int | None = None
    tts: bool = False
    #: embeds the sender asked for but Discord did not show (the bot lacked EMBED_LINKS)
    dropped_embeds: list[dict] = field(default_factory=list)
    #: edits counted for Discord's limit on editing messages older than 1 hour (times, epoch s)
    old_edit_times: list[float] = field(default_factory=list)

    @property
    def loading(self) -> bool:
        """A deferred response still showing "Bot is thinking..."."""
        return bool(self.flags & 128)

    def snapshot(self) -> Message:
        return dataclasses.replace(self, edits=[], embeds=list(self.embeds),
                                   attachments=list(self.attachments), components=list(self.components),
                                   old_edit_times=[])


class Guild:
    """One guild with @everyone, a managers role, an admins role and the bot's managed role.
    A user's `role_ids` span all their guilds; each guild reads only its own."""

    def __init__(self, ids: Snowflakes, bot_user: User, owner: User, name: str = "Emulated Guild", *,
                 guild_id: int | None = None) -> None:
        self.id = guild_id if guild_id is not None else ids.next()
        self.name = name
        self.owner_id = owner.id
        self.roles: dict[int, Role] = {}
        self.everyone = self._role(self.id, "@everyone", P.EVERYONE_DEFAULT, 0)
        self.managers = self._role(ids.next(), "Managers", P.EVERYONE_DEFAULT | P.MANAGE_GUILD, 1)
        self.admins = self._role(ids.next(), "Admins", P.ADMINISTRATOR, 2)
        self.bot_role = self._role(ids.next(), bot_user.name, P.BOT_DEFAULT, 3)
        self.bot_role.managed = True
        bot_user.role_ids.append(self.bot_role.id)
        self.channels: dict[int, Channel] = {}
        self.members: dict[int, User] = {owner.id: owner, bot_user.id: bot_user}

    def _role(self, rid: int, name: str, perms: int, position: int) -> Role:
        role = Role(rid, name, perms, position)
        self.roles[rid] = role
        return role

    def role_ids_of(self, user: User) -> list[int]:
        """The user's roles in this guild (not those they hold elsewhere)."""
        return [r for r in user.role_ids if r in self.roles]

    def permissions(self, user: User, channel: Channel | None) -> int:
        role_ids = set(self.role_ids_of(user))
        base = [self.everyone.permissions] + [self.roles[r].permissions for r in role_ids]
        if user.id == self.owner_id:
            return P.ALL
        return P.compute(base, channel.overwrites if channel else [], role_ids, user.id, self.id)

    def set_member_overwrite(self, channel: Channel, member_id: int, allow: int, deny: int) -> None:
        channel.overwrites = [o for o in channel.overwrites if not (o["type"] == 1 and int(o["id"]) == member_id)]
        channel.overwrites.append({"id": str(member_id), "type": 1, "allow": str(allow), "deny": str(deny)})


def jsonable(value: Any) -> Any:
    """Deep copy of JSON-ish data (what was sent stays as sent, later mutations don't leak)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
