"""Permission bits and Discord's computation order (base from roles, then channel overwrites),
so the bot's view (`channel.permissions_for(me)`) and the API's answers agree."""

from __future__ import annotations

from collections.abc import Iterable

CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL = (1 << 51) - 1

#: what a fresh guild's @everyone role may do
EVERYONE_DEFAULT = (CREATE_INSTANT_INVITE | ADD_REACTIONS | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS
                    | ATTACH_FILES | READ_MESSAGE_HISTORY | USE_EXTERNAL_EMOJIS | CONNECT | SPEAK
                    | CHANGE_NICKNAME | USE_APPLICATION_COMMANDS | SEND_MESSAGES_IN_THREADS)
#: the bot's managed role: what an invite link with the bot's needed permissions grants
BOT_DEFAULT = EVERYONE_DEFAULT | MANAGE_MESSAGES


def compute(base_roles: Iterable[int], overwrites: Iterable[dict], role_ids: set[int], member_id: int,
            everyone_id: int) -> int:
    """Discord's algorithm: OR of role permissions; ADMINISTRATOR means everything; then the
    @everyone overwrite, role overwrites (deny then allow), and the member overwrite."""
    perms = 0
    for p in base_roles:
        perms |= p
    if perms & ADMINISTRATOR:
        return ALL
    ows = list(overwrites)
    for ow in ows:
        if int(ow["id"]) == everyone_id:
            perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
    allow = deny = 0
    for ow in ows:
        if ow["type"] == 0 and int(ow["id"]) in role_ids and int(ow["id"]) != everyone_id:
            allow |= int(ow["allow"])
            deny |= int(ow["deny"])
    perms = (perms & ~deny) | allow
    for ow in ows:
        if ow["type"] == 1 and int(ow["id"]) == member_id:
            perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
    return perms
