"""Who a message notifies, computed like Discord: mentions parsed from the content, filtered by
`allowed_mentions` (all allowed when the field is absent), replies ping the replied author."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)")


@dataclass
class Pings:
    users: list[int] = field(default_factory=list)
    roles: list[int] = field(default_factory=list)
    everyone: bool = False
    mentioned_users: list[int] = field(default_factory=list)  # the message object's `mentions`
    mentioned_roles: list[int] = field(default_factory=list)


def compute(content: str, allowed: dict | None, *, author_id: int, replied_author: int | None,
            is_user: Callable[[int], bool], is_role: Callable[[int], bool], may_mention_everyone: bool) -> Pings:
    users = [int(u) for u in _USER.findall(content or "")]
    roles = [int(r) for r in _ROLE.findall(content or "")]
    users = list(dict.fromkeys(u for u in users if is_user(u)))
    roles = list(dict.fromkeys(r for r in roles if is_role(r)))
    if allowed is None:
        parse = {"users", "roles", "everyone"}
        allow_users: set[int] = set()
        allow_roles: set[int] = set()
        replied_user = True
    else:
        parse = set(allowed.get("parse") or [])
        allow_users = {int(u) for u in allowed.get("users") or []}
        allow_roles = {int(r) for r in allowed.get("roles") or []}
        replied_user = bool(allowed.get("replied_user", False))
    out = Pings(mentioned_users=list(users), mentioned_roles=list(roles))
    out.users = [u for u in users if ("users" in parse or u in allow_users) and u != author_id]
    out.roles = [r for r in roles if "roles" in parse or r in allow_roles]
    out.everyone = bool(_EVERYONE.search(content or "")) and "everyone" in parse and may_mention_everyone
    if replied_author is not None:
        if replied_author not in out.mentioned_users:
            out.mentioned_users.append(replied_author)
        if replied_user and replied_author != author_id and replied_author not in out.users:
            out.users.append(replied_author)
    return out
