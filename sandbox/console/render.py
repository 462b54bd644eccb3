"""The channel as Discord would show it, shared by the demo's `index.html` and the live console.

A message renders as its latest version plus its timeline: every version it had, in order, so a
status card reads queued -> progress -> result. The same messages render as a plain-text transcript.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files

from sandbox.discord.state import Message

_MENTION = re.compile(r"<@!?(\d+)>")
_TIMESTAMP = re.compile(r"<t:(-?\d+)(?::([tTdDfFR]))?>")
_IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".webp")
_VIDEO = (".mp4", ".webm", ".mov")
_PALETTE = ("#5865f2", "#3ba55c", "#faa61a", "#ed4245", "#eb459e")
_SELECTS = (3, 5, 6, 7, 8)
#: a markdown character escaped with a backslash shows as itself (discord.utils.escape_markdown)
_ESCAPED = re.compile(r"\\([\\_*~`|>#\[\]()-])")


def stylesheet() -> str:
    """The channel's CSS (a package data file, also served to the console)."""
    return (files("sandbox.console") / "static" / "channel.css").read_text(encoding="utf-8")


@dataclass
class Look:
    """Everything the renderer needs besides the messages: names, where files are, who ran what."""

    names: dict[int, str]
    bot_id: int
    #: the src of an attachment (a message's attachment dict)
    attachment_src: Callable[[dict], str] = lambda a: a.get("url", "")
    #: the src of an embed image or thumbnail URL
    image_src: Callable[[str], str] = lambda url: url
    #: for a reply to a slash command: (user name, "/command") of the interaction
    used: Callable[[Message], tuple[str, str] | None] = lambda m: None
    #: a referenced message, to quote what a reply answers
    lookup: Callable[[int], Message | None] = lambda mid: None
    #: buttons and selects a person can use (the console), or pictures of them (the demo)
    interactive: bool = False
    timeline_open: bool = True

    def name(self, uid: int) -> str:
        return self.names.get(uid, str(uid))


def versions(m: Message) -> list[Message]:
    """Every version a user saw, oldest first ("thinking..." placeholders are not versions)."""
    seen = [v for v in [*m.edits, m] if not v.loading]
    return seen or [m]


def _at(v: Message) -> datetime:
    return v.edited_at or v.created_at


def _clock(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%H:%M:%S")


def _same(a: Message, b: Message) -> bool:
    return (a.content, a.embeds, a.attachments, a.components) == (b.content, b.embeds, b.attachments, b.components)


# -- text ------------------------------------------------------------------------------------------

def _when(match: re.Match[str]) -> str:
    return datetime.fromtimestamp(int(match.group(1)), UTC).strftime("%H:%M:%S UTC")


def plain(text: str, names: dict[int, str]) -> str:
    text = _MENTION.sub(lambda m: "@" + names.get(int(m.group(1)), m.group(1)), text or "")
    return _ESCAPED.sub(r"\1", _TIMESTAMP.sub(_when, text))


def _text_body(v: Message, names: dict[int, str], indent: str) -> list[str]:
    lines = [f"{indent}{line}" for line in plain(v.content, names).splitlines()] if v.content else []
    for e in v.embeds or []:
        lines.append(f"{indent}┃ {e.get('title', '')}  {plain(e.get('description', ''), names)}".rstrip())
        for f in e.get("fields", []):
            lines.append(f"{indent}┃ {f['name']}: {plain(f['value'], names)}")
        if e.get("footer"):
            lines.append(f"{indent}┃ {e['footer'].get('text', '')}")
    for a in v.attachments or []:
        lines.append(f"{indent}📎 {a['filename']} ({a['size']:,} bytes)")
    for row in v.components or []:
        labels = [c.get("label") or c.get("placeholder") or "" for c in row.get("components", [])]
        lines.append(f"{indent}[{'] ['.join(labels)}]")
    return lines


def text_transcript(messages: list[Message], look: Look) -> str:
    """One entry per message; an edited message lists each of its versions in order."""
    lines = []
    for m in messages:
        flag = " (only visible to the user)" if m.ephemeral else ""
        used = look.used(m)
        via = f" ({used[0]} used {used[1]})" if used else ""
        lines.append(f"[{look.name(m.author_id)}]{flag}{via} {_clock(m.created_at)}")
        shown = versions(m)
        if len(shown) == 1:
            lines += _text_body(m, look.names, "    ")
            continue
        for i, v in enumerate(shown, 1):
            what = "sent" if i == 1 else "edited"
            same = " (no visible change)" if i > 1 and _same(v, shown[i - 2]) else ""
            lines.append(f"    ── version {i} of {len(shown)}, {what} {_clock(_at(v))}{same}")
            lines += _text_body(v, look.names, "    ")
    return "\n".join(lines) + "\n"


# -- HTML ------------------------------------------------------------------------------------------

_LINK = re.compile(r"&lt;(https?://\S+?)&gt;|\[([^\]]+)\]\((https?://[^\s)]+)\)|(https?://[^\s<]+)")
_STAMP_ESCAPED = re.compile(r"&lt;t:(-?\d+)(?::([tTdDfFR]))?&gt;")


def _link(match: re.Match[str]) -> str:
    url = match.group(1) or match.group(3) or match.group(4)
    text = match.group(2) or url
    return f'<a href="{url}" target="_blank" rel="noopener">{text}</a>'


def _stamp(match: re.Match[str]) -> str:
    unix, style = match.group(1), match.group(2) or "f"
    return f'<time data-unix="{unix}" data-style="{style}">{_when(match)}</time>'


def _rich(text: str, look: Look) -> str:
    """Discord's markdown subset the bot uses: mentions, timestamps, code, bold, links."""
    text = _ESCAPED.sub(lambda m: f"\x02{ord(m.group(1))}\x03", text or "")  # kept out of the markup below
    out = html.escape(_MENTION.sub(lambda m: "\x00@" + look.name(int(m.group(1))) + "\x01", text))
    out = _STAMP_ESCAPED.sub(_stamp, out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    out = _LINK.sub(_link, out)
    out = out.replace("\x00", '<span class="mention">').replace("\x01", "</span>")
    out = re.sub(r"\x02(\d+)\x03", lambda m: html.escape(chr(int(m.group(1)))), out)
    return out.replace("\n", "<br>")


def _embed(e: dict, look: Look) -> str:
    colour = f"#{e.get('color', 0x5865F2) or 0:06x}"
    parts = [f'<div class="embed" style="border-color:{colour}">']
    thumb = (e.get("thumbnail") or {}).get("url")
    if thumb:
        parts.append(f'<img class="thumb" src="{html.escape(look.image_src(thumb))}" alt="">')
    if e.get("author", {}).get("name"):
        parts.append(f'<div class="author">{html.escape(e["author"]["name"])}</div>')
    if e.get("title"):
        parts.append(f'<div class="title">{html.escape(e["title"])}</div>')
    if e.get("description"):
        parts.append(f'<div class="desc">{_rich(e["description"], look)}</div>')
    fields = "".join(
        f'<div class="field{"" if f.get("inline") else " full"}"><div class="fname">{html.escape(f["name"])}</div>'
        f'<div class="fvalue">{_rich(f["value"], look)}</div></div>' for f in e.get("fields", []))
    if fields:
        parts.append(f'<div class="fields">{fields}</div>')
    image = (e.get("image") or {}).get("url")
    if image:
        parts.append(f'<img class="att" src="{html.escape(look.image_src(image))}" alt="">')
    if e.get("footer"):
        parts.append(f'<div class="footer">{html.escape(e["footer"].get("text", ""))}</div>')
    return "".join(parts) + "</div>"


def _attachment(a: dict, look: Look) -> str:
    src = html.escape(look.attachment_src(a))
    name = html.escape(a["filename"])
    if name.lower().endswith(_IMAGE):
        return f'<a href="{src}" target="_blank"><img class="att" src="{src}" alt="{name}" title="{name}"></a>'
    if name.lower().endswith(_VIDEO):
        return f'<video class="att" src="{src}" title="{name}" controls muted loop></video>'
    return f'<div class="file">📎 <a href="{src}" target="_blank">{name}</a> · {a["size"]:,} bytes</div>'


def _component(c: dict, m: Message, live: bool) -> str:
    label = html.escape(((c.get("emoji") or {}).get("name", "") + " " + (c.get("label") or "")).strip())
    if c.get("type", 2) == 2:
        style = c.get("style", 2)
        if style == 5:
            return f'<a class="btn s5" href="{html.escape(c.get("url", ""))}" target="_blank">{label} ↗</a>'
        if not live:
            return f'<span class="btn s{style}{" off" if c.get("disabled") else ""}">{label}</span>'
        return (f'<button class="btn s{style}" data-custom-id="{html.escape(c.get("custom_id", ""))}" '
                f'data-message-id="{m.id}"{" disabled" if c.get("disabled") else ""}>{label}</button>')
    if c.get("type") in _SELECTS:
        placeholder = html.escape(c.get("placeholder") or "Make a selection")
        if not live:
            return f'<span class="select">{placeholder} ▾</span>'
        opts = "".join(f'<option value="{html.escape(str(o.get("value", "")))}">{html.escape(o.get("label", ""))}</option>'
                       for o in c.get("options") or [])
        return (f'<select class="select" data-custom-id="{html.escape(c.get("custom_id", ""))}" '
                f'data-message-id="{m.id}"><option value="">{placeholder}</option>{opts}</select>')
    return ""


def _body(v: Message, look: Look, live: bool) -> str:
    if v.loading:
        return f'<div class="thinking">{html.escape(look.name(v.author_id))} is thinking…</div>'
    body = []
    if v.content:
        body.append(f'<div class="content">{_rich(v.content, look)}</div>')
    body += [_embed(e, look) for e in v.embeds or []]
    body += [_attachment(a, look) for a in v.attachments or []]
    for row in v.components or []:
        inner = "".join(_component(c, v, live) for c in row.get("components", []))
        if inner:
            body.append(f'<div class="row">{inner}</div>')
    return "".join(body)


def _timeline(m: Message, look: Look) -> str:
    shown = versions(m)
    if len(shown) < 2:
        return ""
    items = []
    for i, v in enumerate(shown, 1):
        what = "sent" if i == 1 else "edited"
        same = ' · <span class="same">no visible change</span>' if i > 1 and _same(v, shown[i - 2]) else ""
        items.append(f'<li><div class="when">version {i} · {what} {_clock(_at(v))} UTC{same}</div>'
                     f"{_body(v, look, live=False)}</li>")
    return (f'<details class="timeline"{" open" if look.timeline_open else ""}>'
            f"<summary>Timeline · {len(shown)} versions</summary><ol>{''.join(items)}</ol></details>")


def _quote(m: Message, look: Look) -> str:
    ref = (m.message_reference or {}).get("message_id")
    if not ref:
        return ""
    target = look.lookup(int(ref))
    if target is None:
        return '<div class="reply">↪ replying to a message</div>'
    snippet = target.content or next((e.get("title", "") for e in target.embeds or []), "")
    snippet = plain(snippet, look.names).replace("\n", " ")
    snippet = snippet[:80] + ("…" if len(snippet) > 80 else "")
    return (f'<div class="reply"><a href="#m{target.id}">↪ <b>@{html.escape(look.name(target.author_id))}</b> '
            f"{html.escape(snippet)}</a></div>")


def message_html(m: Message, look: Look) -> str:
    """One message as a list item of the channel: author, latest version, timeline of versions."""
    who = look.name(m.author_id)
    colour = _PALETTE[m.author_id % len(_PALETTE)]
    head = []
    used = look.used(m)
    if used:
        head.append(f'<div class="used"><b>{html.escape(used[0])}</b> used <span class="cmd">'
                    f"{html.escape(used[1])}</span></div>")
    head.append(_quote(m, look))
    tag = '<span class="bot">APP</span>' if m.author_id == look.bot_id else ""
    shown = versions(m)
    edited = '<span class="edited">(edited)</span>' if len(shown) > 1 else ""
    head.append(f'<div class="meta"><span class="who">{html.escape(who)}</span>{tag}'
                f'<span class="time">{_clock(m.created_at)} UTC</span>{edited}</div>')
    eph = '<div class="eph">👁 Only you can see this</div>' if m.ephemeral else ""
    visible = f' data-visible-to="{m.visible_to}"' if m.ephemeral and m.visible_to else ""
    return (f'<div class="msg{" ephemeral" if m.ephemeral else ""}" id="m{m.id}" data-id="{m.id}"{visible}>'
            f'<div class="avatar" style="background:{colour}">{html.escape(who[:1].upper())}</div>'
            f'<div class="body">{"".join(head)}{_body(m, look, look.interactive)}{eph}{_timeline(m, look)}</div></div>')


def page_html(messages: list[Message], look: Look, title: str) -> str:
    """A whole page: the channel with every message, styled like Discord (no script needed)."""
    rows = "".join(message_html(m, look) for m in messages)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{stylesheet()}</style></head><body><header># general · {html.escape(title)}</header>"
            f'<main id="channel">{rows}</main></body></html>')
