"""Creating and editing messages, shared by the channel routes and the interaction/webhook routes:
limits, attachments (new uploads and kept ones), mentions and the gateway echo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import limits, mentions
from . import permissions as P
from .errors import ApiError, FormErrors
from .state import Message, StoredFile, jsonable
from .uploads import Upload

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

EPHEMERAL = 64
LOADING = 128
SUPPRESS_EMBEDS = 4
SUPPRESS_NOTIFICATIONS = 4096
#: flags a sender may set on create; others are Discord's to set
SETTABLE_FLAGS = SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | (1 << 15)


def _attachment_meta(payload: dict[str, Any]) -> dict[int, dict]:
    meta: dict[int, dict] = {}
    for item in payload.get("attachments") or []:
        try:
            meta[int(item["id"])] = item
        except (KeyError, TypeError, ValueError):
            continue
    return meta


def store_uploads(emu: DiscordEmulator, channel_id: int, payload: dict[str, Any], uploads: list[Upload],
                  existing: dict[int, dict] | None = None) -> list[dict]:
    """Turn streamed uploads into CDN attachments. An `attachments` entry whose id is a small
    index names files[index] (filename/description overrides); ids of attachments the message
    already has are kept (edits)."""
    meta = _attachment_meta(payload)
    out: list[dict] = []
    kept_ids = set()
    if existing is not None and "attachments" in payload:
        for aid, _item in meta.items():
            if aid in existing:
                out.append(existing[aid])
                kept_ids.add(aid)
    elif existing is not None:
        out.extend(existing.values())
    for up in sorted(uploads, key=lambda u: u.index):
        item = meta.get(up.index, {})
        stored = emu.cdn.add(StoredFile(emu.ids.next(), item.get("filename") or up.filename, up.size,
                                        up.content_type, up.path, channel_id,
                                        description=item.get("description")))
        out.append(emu.attachment_record(stored))
    return out


def _pings(emu: DiscordEmulator, content: str, allowed: dict | None, author_id: int,
           reference: dict | None, channel_id: int) -> mentions.Pings:
    replied = None
    if reference and reference.get("message_id"):
        target = emu._messages.get(int(reference["message_id"]))
        replied = target.author_id if target is not None else None
    author = emu.users[author_id]
    guild = emu.guild_of_channel(channel_id) or emu.guild
    channel = guild.channels.get(channel_id)
    may_everyone = bool(guild.permissions(author, channel) & P.MENTION_EVERYONE)
    return mentions.compute(content, allowed, author_id=author_id, replied_author=replied,
                            is_user=lambda u: u in emu.users, is_role=lambda r: r in guild.roles,
                            may_mention_everyone=may_everyone)


def check_reference(emu: DiscordEmulator, channel_id: int, reference: dict | None) -> dict | None:
    if not reference:
        return None
    ref = dict(reference)
    target = emu._messages.get(int(ref.get("message_id") or 0))
    if target is None or target.deleted or target.ephemeral or target.channel_id != int(ref.get("channel_id") or channel_id):
        if ref.get("fail_if_not_exists", True):
            errors = FormErrors()
            errors.add(("message_reference",), "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
            errors.raise_if_any()
        return None
    ref.setdefault("channel_id", str(channel_id))
    ref.setdefault("guild_id", str((emu.guild_of_channel(channel_id) or emu.guild).id))
    ref["message_id"] = str(ref["message_id"])
    ref.setdefault("type", 0)
    return ref


async def create(emu: DiscordEmulator, channel_id: int, payload: dict[str, Any], uploads: list[Upload], *,
                 author_id: int, visible_to: int | None = None, interaction_id: int | None = None,
                 webhook: bool = False, msg_type: int = 0, extra_flags: int = 0, embed_links: bool = True) -> Message:
    limits.check_message(payload, n_files=len(uploads), creating=not (extra_flags & LOADING))
    reference = check_reference(emu, channel_id, payload.get("message_reference"))
    embeds = jsonable(payload.get("embeds") or [])
    dropped: list[dict] = []
    if embeds and not embed_links:
        dropped, embeds = embeds, []
    content = payload.get("content") or ""
    allowed = jsonable(payload.get("allowed_mentions")) if "allowed_mentions" in payload else None
    pings = _pings(emu, content, allowed, author_id, reference, channel_id)
    flags = (int(payload.get("flags") or 0) & SETTABLE_FLAGS) | extra_flags
    if visible_to is not None:
        flags |= EPHEMERAL
    msg = Message(id=emu.ids.next(), channel_id=channel_id, author_id=author_id, content=content, embeds=embeds,
                  attachments=store_uploads(emu, channel_id, payload, uploads),
                  components=jsonable(payload.get("components") or []), flags=flags,
                  ephemeral=bool(flags & EPHEMERAL), visible_to=visible_to if flags & EPHEMERAL else None,
                  message_reference=reference, nonce=None if payload.get("nonce") is None else str(payload["nonce"]),
                  allowed_mentions=allowed, pinged_user_ids=pings.users, pinged_role_ids=pings.roles,
                  pinged_everyone=pings.everyone, mentions=pings.mentioned_users, mention_roles=pings.mentioned_roles,
                  interaction_id=interaction_id, type=19 if reference and msg_type == 0 else msg_type,
                  webhook_id=emu.application_id if webhook else None, tts=bool(payload.get("tts")),
                  dropped_embeds=dropped, created_at=datetime.now(UTC))
    if msg.flags & SUPPRESS_NOTIFICATIONS:
        pass  # still "mentions" people, just silently; pings are recorded as computed
    emu._messages[msg.id] = msg
    emu._changed()
    await emu.echo("MESSAGE_CREATE", msg)
    return msg


def check_old_edit(emu: DiscordEmulator, msg: Message) -> None:
    """Discord caps edits of messages older than 1 hour (30046). The cap is not published; the
    emulator allows `emu.old_message_edits_per_hour` such edits in any rolling hour."""
    now = datetime.now(UTC)
    if now - msg.created_at <= timedelta(hours=1):
        return
    t = now.timestamp()
    msg.old_edit_times = [x for x in msg.old_edit_times if t - x < 3600]
    if len(msg.old_edit_times) >= emu.old_message_edits_per_hour:
        raise ApiError(400, 30046, "Maximum number of edits to messages older than 1 hour reached. Try again later.")
    msg.old_edit_times.append(t)


async def edit(emu: DiscordEmulator, msg: Message, payload: dict[str, Any], uploads: list[Upload], *,
               embed_links: bool = True) -> Message:
    existing = {int(a["id"]): a for a in msg.attachments}
    kept = len(existing) if "attachments" not in payload else sum(
        1 for aid in _attachment_meta(payload) if aid in existing)
    limits.check_message(payload, n_files=len(uploads), kept_attachments=kept, creating=False)
    check_old_edit(emu, msg)
    before = msg.snapshot()
    if "content" in payload:
        msg.content = payload["content"] or ""
    if "embeds" in payload:
        embeds = jsonable(payload["embeds"] or [])
        msg.dropped_embeds = [] if embed_links else embeds
        msg.embeds = embeds if embed_links else []
    if "components" in payload:
        msg.components = jsonable(payload["components"] or [])
    if "flags" in payload and payload["flags"] is not None:
        msg.flags = (msg.flags & ~SUPPRESS_EMBEDS) | (int(payload["flags"]) & SUPPRESS_EMBEDS)
    if "allowed_mentions" in payload:
        msg.allowed_mentions = jsonable(payload["allowed_mentions"])
    if uploads or "attachments" in payload:
        msg.attachments = store_uploads(emu, msg.channel_id, payload, uploads, existing)
    if "content" in payload:  # the object's mentions follow the content; notifications do not repeat
        pings = _pings(emu, msg.content, msg.allowed_mentions, msg.author_id, msg.message_reference, msg.channel_id)
        msg.mentions, msg.mention_roles = pings.mentioned_users, pings.mentioned_roles
    was_loading = msg.loading
    msg.flags &= ~LOADING
    if was_loading and not msg.content and not msg.embeds and not msg.attachments and not msg.components:
        msg.flags |= LOADING  # an empty edit leaves it "thinking"
    if was_loading:
        # the deferred response becomes the real one: not shown as an edit, and its pings happen now
        pings = _pings(emu, msg.content, msg.allowed_mentions, msg.author_id, msg.message_reference, msg.channel_id)
        msg.pinged_user_ids, msg.pinged_role_ids, msg.pinged_everyone = pings.users, pings.roles, pings.everyone
        msg.mentions, msg.mention_roles = pings.mentioned_users, pings.mentioned_roles
    else:
        msg.edited_at = datetime.now(UTC)
    msg.edits.append(before)
    emu._changed()
    await emu.echo("MESSAGE_UPDATE", msg)
    return msg


async def delete(emu: DiscordEmulator, msg: Message) -> None:
    msg.deleted = True
    emu._changed()
    if not msg.ephemeral:
        gid = (emu.guild_of_channel(msg.channel_id) or emu.guild).id
        await emu.gateway.dispatch("MESSAGE_DELETE", {"id": str(msg.id), "channel_id": str(msg.channel_id),
                                                      "guild_id": str(gid)}, guild_id=gid)
