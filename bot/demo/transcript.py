"""Write what happened in the sandbox channel as text and as an HTML page styled like Discord.

The rendering is the sandbox console's (one renderer for both); this module only gathers the files
next to the page, so the page shows pictures and videos inline, and writes both forms. Each card
shows its timeline (every version, in order) and the text lists each version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sandbox.console.channel import lookup, used_command
from sandbox.console.render import Look, page_html, text_transcript, versions


def write_transcript(out: Path, emu, names: dict[int, str], title: str) -> Path:
    """Copy every attachment (of every version) next to the page, then write both forms."""
    out.mkdir(parents=True, exist_ok=True)
    files_dir = out / "files"
    shutil.rmtree(files_dir, ignore_errors=True)
    files_dir.mkdir()
    messages = emu.messages(include_ephemeral=True)
    local: dict[int, str] = {}
    for m in messages:
        for v in versions(m):
            for a in v.attachments or []:
                if int(a["id"]) not in local:
                    dest = files_dir / f"{a['id']}-{a['filename']}"
                    emu.copy_attachment(a, dest)
                    local[int(a["id"])] = f"files/{dest.name}"
    by_url = {a["url"]: local[int(a["id"])] for m in messages for v in versions(m) for a in v.attachments or []}
    look = Look(names=names, bot_id=emu.bot_user_id,
                attachment_src=lambda a: local.get(int(a["id"]), a.get("url", "")),
                image_src=lambda url: by_url.get(url, url),
                used=lambda m: used_command(emu, m, names),
                lookup=lambda mid: lookup(emu, mid))
    (out / "transcript.txt").write_text(text_transcript(messages, look), encoding="utf-8")
    page = out / "index.html"
    page.write_text(page_html(messages, look, title), encoding="utf-8")
    return page
