"""Write what happened in the sandbox channel as text and as an HTML page styled like Discord."""

from __future__ import annotations

import html
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

_MENTION = re.compile(r"<@!?(\d+)>")
_TIMESTAMP = re.compile(r"<t:(\d+):([a-zA-Z])>")
_IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".webp")
_VIDEO = (".mp4", ".webm", ".mov")


def _when(match: re.Match[str]) -> str:
    return datetime.fromtimestamp(int(match.group(1)), UTC).strftime("%H:%M:%S UTC")


def _plain(text: str, names: dict[int, str]) -> str:
    text = _MENTION.sub(lambda m: "@" + names.get(int(m.group(1)), m.group(1)), text or "")
    return _TIMESTAMP.sub(_when, text)


def _rich(text: str, names: dict[int, str]) -> str:
    out = html.escape(_plain(text, names))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"&lt;(https?://[^\s&]+)&gt;", r'<a href="\1">\1</a>', out)
    out = re.sub(r"(@\w+)", r'<span class="mention">\1</span>', out)
    return out.replace("\n", "<br>")


def text_transcript(messages, names: dict[int, str]) -> str:
    lines = []
    for m in messages:
        who = names.get(m.author_id, str(m.author_id))
        flag = " (only visible to the user)" if m.ephemeral else ""
        lines.append(f"[{who}]{flag} {_plain(m.content, names)}".rstrip())
        for e in m.embeds or []:
            lines.append(f"    ┃ {e.get('title', '')}  {_plain(e.get('description', ''), names)}")
            for f in e.get("fields", []):
                lines.append(f"    ┃ {f['name']}: {_plain(f['value'], names)}")
            if e.get("footer"):
                lines.append(f"    ┃ {e['footer'].get('text', '')}")
        for a in m.attachments or []:
            lines.append(f"    📎 {a['filename']} ({a['size']:,} bytes)")
        for row in m.components or []:
            labels = [c.get("label", "") for c in row.get("components", [])]
            lines.append(f"    [{'] ['.join(labels)}]")
        if m.edits:
            lines.append(f"    (edited {len(m.edits)} times)")
    return "\n".join(lines) + "\n"


_CSS = """
body{background:#313338;color:#dbdee1;font:15px/1.4 'gg sans','Noto Sans',Helvetica,Arial,sans-serif;margin:0}
header{background:#2b2d31;padding:12px 20px;border-bottom:1px solid #1f2023;font-weight:600;color:#f2f3f5}
main{padding:12px 20px;max-width:900px}.msg{display:flex;gap:14px;padding:8px 0}
.avatar{width:40px;height:40px;border-radius:50%;flex:none;display:flex;align-items:center;justify-content:center;
font-weight:700;color:#fff}.who{font-weight:600;color:#f2f3f5}.bot{background:#5865f2;color:#fff;font-size:10px;
padding:1px 4px;border-radius:3px;margin-left:4px}.eph{color:#949ba4;font-size:12px;margin-top:4px}
.embed{border-left:4px solid #5865f2;background:#2b2d31;border-radius:4px;padding:8px 12px;margin-top:6px;
max-width:520px;position:relative}.embed .title{font-weight:600;color:#f2f3f5}.fields{display:flex;flex-wrap:wrap;gap:6px 16px}
.field{min-width:140px}.field.full{flex-basis:100%}.fname{font-weight:600;font-size:13px;color:#f2f3f5}
.footer{font-size:12px;color:#949ba4;margin-top:6px}.thumb{position:absolute;right:12px;top:8px;max-width:80px;border-radius:4px}
code{background:#1e1f22;padding:1px 4px;border-radius:3px}.mention{background:#3c4270;color:#c9cdfb;border-radius:3px;padding:0 2px}
img.att,video.att{max-width:420px;max-height:300px;border-radius:6px;margin-top:6px;display:block}
.file{background:#2b2d31;border:1px solid #1e1f22;border-radius:6px;padding:8px 12px;margin-top:6px;display:inline-block}
.btn{display:inline-block;padding:3px 14px;margin:6px 6px 0 0;border-radius:3px;background:#4e5058;color:#fff;font-size:14px}
.btn.s4{background:#da373c}.btn.s1{background:#5865f2}.edited{font-size:11px;color:#949ba4}a{color:#00a8fc}
.reply{font-size:13px;color:#949ba4;margin-bottom:2px}
"""


def _embed_html(e: dict, names: dict[int, str], files: dict[str, str]) -> str:
    colour = f"#{e.get('color', 0x5865F2):06x}"
    parts = [f'<div class="embed" style="border-color:{colour}">']
    thumb = (e.get("thumbnail") or {}).get("url")
    if thumb:
        parts.append(f'<img class="thumb" src="{html.escape(files.get(thumb, thumb))}">')
    if e.get("title"):
        parts.append(f'<div class="title">{html.escape(e["title"])}</div>')
    if e.get("description"):
        parts.append(f"<div>{_rich(e['description'], names)}</div>")
    fields = "".join(
        f'<div class="field{"" if f.get("inline") else " full"}"><div class="fname">{html.escape(f["name"])}</div>'
        f"<div>{_rich(f['value'], names)}</div></div>" for f in e.get("fields", []))
    if fields:
        parts.append(f'<div class="fields">{fields}</div>')
    image = (e.get("image") or {}).get("url")
    if image:
        parts.append(f'<img class="att" src="{html.escape(files.get(image, image))}">')
    if e.get("footer"):
        parts.append(f'<div class="footer">{html.escape(e["footer"].get("text", ""))}</div>')
    return "".join(parts) + "</div>"


def html_transcript(messages, names: dict[int, str], bot_id: int, title: str, files: dict[str, str]) -> str:
    palette = ["#5865f2", "#3ba55c", "#faa61a", "#ed4245", "#eb459e"]
    rows = []
    for m in messages:
        who = names.get(m.author_id, str(m.author_id))
        colour = palette[m.author_id % len(palette)]
        body = []
        ref = (m.message_reference or {}).get("message_id")
        if ref:
            body.append('<div class="reply">↪ replying to the status message</div>')
        tag = '<span class="bot">BOT</span>' if m.author_id == bot_id else ""
        edited = f' <span class="edited">(edited ×{len(m.edits)})</span>' if m.edits else ""
        body.append(f'<div><span class="who">{html.escape(who)}</span>{tag}{edited}</div>')
        if m.content:
            body.append(f"<div>{_rich(m.content, names)}</div>")
        body += [_embed_html(e, names, files) for e in m.embeds or []]
        for a in m.attachments or []:
            local = files.get(a.get("url", ""), "")
            name = html.escape(a["filename"])
            if local and name.lower().endswith(_IMAGE):
                body.append(f'<img class="att" src="{html.escape(local)}" alt="{name}">')
            elif local and name.lower().endswith(_VIDEO):
                body.append(f'<video class="att" src="{html.escape(local)}" controls muted loop></video>')
            else:
                href = html.escape(local or a.get("url", ""))
                body.append(f'<div class="file">📎 <a href="{href}">{name}</a> · {a["size"]:,} bytes</div>')
        for row in m.components or []:
            body.append("".join(f'<span class="btn s{c.get("style", 2)}">{html.escape(c.get("label") or "")}</span>'
                                for c in row.get("components", [])))
        if m.ephemeral:
            body.append('<div class="eph">👁 Only you can see this</div>')
        rows.append(f'<div class="msg"><div class="avatar" style="background:{colour}">{html.escape(who[:1].upper())}'
                    f'</div><div>{"".join(body)}</div></div>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><header># general · {html.escape(title)}</header>"
            f"<main>{''.join(rows)}</main></body></html>")


def write_transcript(out: Path, emu, names: dict[int, str], title: str) -> Path:
    """Copy every attachment next to the page so it shows inline, then write both forms."""
    out.mkdir(parents=True, exist_ok=True)
    files_dir = out / "files"
    shutil.rmtree(files_dir, ignore_errors=True)
    files_dir.mkdir()
    messages = emu.messages(include_ephemeral=True) if _takes_ephemeral(emu) else emu.messages()
    files: dict[str, str] = {}
    for m in messages:
        for a in m.attachments or []:
            local = files_dir / f"{a['id']}-{a['filename']}"
            emu.copy_attachment(a, local) if hasattr(emu, "copy_attachment") else local.write_bytes(
                emu.read_attachment(a))
            files[a["url"]] = f"files/{local.name}"
    (out / "transcript.txt").write_text(text_transcript(messages, names), encoding="utf-8")
    page = out / "index.html"
    page.write_text(html_transcript(messages, names, emu.bot_user_id, title, files), encoding="utf-8")
    return page


def _takes_ephemeral(emu) -> bool:
    import inspect

    return "include_ephemeral" in inspect.signature(emu.messages).parameters
