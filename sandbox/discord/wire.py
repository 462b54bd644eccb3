"""JSON objects as Discord sends them. Every key discord.py reads with `data[...]` is present:
a missing one raises inside the bot's gateway parser and ends the bot (contract pitfall 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .state import Channel, Guild, Message, Role, User, iso

if TYPE_CHECKING:
    from .emulator import DiscordEmulator


def user_obj(u: User) -> dict[str, Any]:
    data: dict[str, Any] = {"id": str(u.id), "username": u.name, "discriminator": "0", "avatar": None,
                            "global_name": None if u.bot else u.name, "public_flags": 0}
    if u.bot:
        data["bot"] = True
    return data


def member_obj(u: User, *, permissions: int | None = None, guild: Guild | None = None) -> dict[str, Any]:
    """The member in `guild` (its roles only); without a guild, with every role the user holds."""
    role_ids = guild.role_ids_of(u) if guild is not None else u.role_ids
    data: dict[str, Any] = {"user": user_obj(u), "roles": [str(r) for r in role_ids], "flags": 0,
                            "joined_at": iso(u.joined_at), "deaf": False, "mute": False, "nick": None,
                            "avatar": None, "pending": False, "premium_since": None,
                            "communication_disabled_until": None}
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def role_obj(r: Role) -> dict[str, Any]:
    data: dict[str, Any] = {"id": str(r.id), "name": r.name, "permissions": str(r.permissions),
                            "position": r.position, "color": 0, "colors": {"primary_color": 0},
                            "hoist": False, "managed": r.managed, "mentionable": False, "icon": None,
                            "unicode_emoji": None, "flags": 0}
    if r.managed:
        data["tags"] = {"bot_id": None}
    return data


def channel_obj(guild: Guild, ch: Channel) -> dict[str, Any]:
    return {"id": str(ch.id), "type": ch.type, "guild_id": str(guild.id), "name": ch.name, "position": ch.position,
            "permission_overwrites": [dict(o) for o in ch.overwrites], "topic": None, "nsfw": False,
            "last_message_id": None, "rate_limit_per_user": 0, "parent_id": None, "flags": 0}


def guild_obj(emu: DiscordEmulator, *, full: bool, guild: Guild | None = None) -> dict[str, Any]:
    g = guild or emu.guild
    data: dict[str, Any] = {
        "id": str(g.id), "name": g.name, "icon": None, "splash": None, "discovery_splash": None,
        "owner_id": str(g.owner_id), "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
        "default_message_notifications": 0, "explicit_content_filter": 0,
        "roles": [role_obj(r) for r in g.roles.values()], "emojis": [], "stickers": [], "features": [],
        "mfa_level": 0, "application_id": None, "system_channel_id": None, "system_channel_flags": 0,
        "rules_channel_id": None, "vanity_url_code": None, "description": None, "banner": None,
        "premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US",
        "public_updates_channel_id": None, "nsfw_level": 0, "premium_progress_bar_enabled": False,
        "max_members": 500000, "max_video_channel_users": 25,
    }
    if full:
        bot = emu.bot_user
        data.update({
            "unavailable": False, "large": False, "lazy": True, "member_count": len(g.members),
            "joined_at": iso(bot.joined_at),
            "members": [member_obj(u, guild=g) for u in g.members.values()],
            "channels": [channel_obj(g, c) for c in g.channels.values()],
            "threads": [], "presences": [], "voice_states": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
        })
    return data


def message_obj(emu: DiscordEmulator, m: Message, *, nested: bool = False) -> dict[str, Any]:
    author = emu.users[m.author_id]
    data: dict[str, Any] = {
        "id": str(m.id), "channel_id": str(m.channel_id), "type": m.type, "content": m.content,
        "author": user_obj(author), "attachments": [emu.attachment_obj(a) for a in m.attachments],
        "embeds": [dict(e) for e in m.embeds], "components": list(m.components), "flags": m.flags,
        "mentions": [user_obj(emu.users[u]) for u in m.mentions if u in emu.users],
        "mention_roles": [str(r) for r in m.mention_roles], "mention_everyone": m.pinged_everyone,
        "pinned": False, "tts": m.tts, "timestamp": iso(m.created_at), "edited_timestamp": iso(m.edited_at),
        "reactions": [],
    }
    if m.nonce is not None:
        data["nonce"] = m.nonce
    if m.webhook_id is not None:
        data["webhook_id"] = str(m.webhook_id)
        data["application_id"] = str(emu.application_id)
    ix = emu.interaction_by_id(m.interaction_id) if m.interaction_id else None
    if ix is not None:
        data["interaction_metadata"] = {"id": str(ix.id), "type": ix.type, "user": user_obj(emu.users[ix.user_id]),
                                        "authorizing_integration_owners": {"0": str(ix.guild_id)}}
        if ix.type == 2:
            data["interaction_metadata"]["name"] = ix.command_name
    if m.message_reference:
        ref = dict(m.message_reference)
        data["message_reference"] = ref
        if not nested:
            target = emu._messages.get(int(ref.get("message_id") or 0))
            data["referenced_message"] = (message_obj(emu, target, nested=True)
                                          if target is not None and not target.deleted else None)
    return data
