"""A provider that answers hostilely and users who type hostile text, through sandbox Discord with the
real bot: what the bot fetched (loopback services count their hits), what it posted, what it wrote."""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path

import pytest

from bot.models import JobState
from sandbox.media import image_bytes, make_video
from sandbox.viggle import ViggleSandbox
from tests.e2e.helpers import finished, job_id_of, result_messages, status_message, wait_job_state
from tests.e2e.viggle_world import viggle_harness
from tests.support.trap import SECRET, Trap

#: not shaped like any key the Viggle client already hides, so only the bot's masking can hide it
KEY = "vgl_live_Q9f8e7d6c5b4a3Z1"
KEY_FORMS = (KEY, base64.b64encode(KEY.encode()).decode())
MIB = 1024 * 1024


@pytest.fixture
async def viggle():
    svc = ViggleSandbox(api_key=KEY, credits=100, character_seconds=0.2, scene_seconds=0.2, render_seconds=0.4)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def trap():
    """A loopback service the bot was never told about (think: an admin panel, a metadata API)."""
    service = await Trap().start()
    yield service
    await service.stop()


@pytest.fixture
async def relay():
    """A storage host the operator allowlisted (as for a CDN): it may redirect anywhere."""
    service = await Trap().start()
    yield service
    await service.stop()


@pytest.fixture
async def bot(emu, tmp_path, viggle, relay):
    h = viggle_harness(emu, tmp_path, viggle, relay, max_attempts=1)  # the sandbox's key is KEY
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
def media(tmp_path):
    portrait = tmp_path / "alice.png"
    portrait.write_bytes(image_bytes(96, 96, label="A"))
    return {"alice": portrait, "clip": make_video(tmp_path / "dance.mp4", seconds=1.0, width=96, height=64, fps=8)}


async def start(emu, user: int, command: str, **options) -> str:
    ix = await emu.slash(command, user=user, options=options)
    await ix.wait_ack(timeout=3)
    reply = await ix.wait_reply(timeout=10)
    return job_id_of(reply.content)


async def mix(emu, bot, users, media, state=JobState.FAILED) -> str:
    job_id = await start(emu, users["alice"], "viggle mix",
                         image=emu.attachment(media["alice"], "alice.png", "image/png"),
                         video=emu.attachment(media["clip"], "dance.mp4", "video/mp4"))
    await wait_job_state(bot, job_id, state, timeout=20)
    return job_id


async def failure_notice(emu, job_id: str):
    """The one failure notice (posted just after the job is recorded as failed)."""
    found = await emu.wait_for(lambda: [m for m in emu.messages()
                                        if f"job `{job_id}`" in m.content and "failed" in m.content], timeout=10)
    assert len(found) == 1
    return found[0]


def everything_posted(emu) -> str:
    """Every message's text and embeds, and every attached file's bytes, as one string."""
    parts = []
    for m in emu.messages():
        for version in (*m.edits, m):
            parts.append(version.content or "")
            parts += [str(e) for e in version.embeds]
        parts += [emu.read_attachment(a).decode("latin-1") for a in m.attachments]
    return "\n".join(parts)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def holds_secret(root: Path) -> list[Path]:
    return [p for p in files_under(root) if p.stat().st_size < 50 * MIB and SECRET in p.read_bytes()]


@pytest.mark.parametrize("where", ["loopback", "link-local", "private", "redirect-chain", "too-many-hops"])
async def test_result_links_at_internal_addresses_are_never_fetched(emu, bot, users, viggle, media, trap, relay,
                                                                    tmp_path, where):
    relay.redirects = {"/hop/1": f"{relay.base}/hop/2", "/hop/2": f"{relay.base}/hop/3",
                       "/hop/3": f"{trap.base}/secret.mp4"}
    if where == "too-many-hops":
        relay.redirects = {f"/loop/{i}": f"{relay.base}/loop/{i + 1}" for i in range(10)}
    target = {"loopback": f"{trap.base}/secret.mp4", "link-local": "http://169.254.169.254/latest/meta-data/",
              "private": "http://10.20.30.40/secret.mp4", "redirect-chain": f"{relay.base}/hop/1",
              "too-many-hops": f"{relay.base}/loop/0"}[where]

    def hostile(body):
        if isinstance(body, dict) and body.get("cdn_url"):
            body["cdn_url"] = target
        return body

    viggle.faults.add("GET", r"^/api/render/[^/]+$", rewrite=hostile, times=None)
    job_id = await mix(emu, bot, users, media)

    assert trap.total == 0  # nothing reached the service the bot was never told about
    if where == "redirect-chain":
        assert relay.hits == {"/hop/1": 1, "/hop/2": 1, "/hop/3": 1}
    elif where == "too-many-hops":
        assert sum(relay.hits.values()) == 5  # the first request and four hops, then it stopped
    else:
        assert relay.total == 0
    job = await bot.bot.store.get_job(job_id)
    reason = "Too many redirects" if where == "too-many-hops" else "The bot does not fetch from"
    assert reason in job.last_error
    assert reason in (await failure_notice(emu, job_id)).content
    assert result_messages(emu, job_id) == []
    assert SECRET.decode() not in everything_posted(emu)
    await finished(bot, job_id)  # its finishing chores (the spool's removal among them) are done
    assert holds_secret(tmp_path) == [] and not (tmp_path / "spool" / job_id).exists()


async def test_provider_ids_and_user_names_never_become_paths_or_markdown(emu, bot, users, viggle, relay, media,
                                                                         tmp_path):
    evil_id = "../../../../escaped-by-viggle"
    relay.files["/thumb.png"] = image_bytes(64, 64, label="T")
    ready = {"id": evil_id, "name": "x", "status": "ready", "thumbnail_url": f"{relay.base}/thumb.png",
             "job_id": "job_1", "error": None, "error_message": None, "credits_used": 1}
    viggle.faults.add("POST", r"^/api/characters/preprocess$", times=1,
                      rewrite=lambda body: {**body, "character_id": evil_id})
    viggle.faults.add("GET", r"escaped-by-viggle", body=ready, status=200, times=None)
    name = "[Nitro](https://e.vil/n) @everyone <@&1> **now**"
    alice = users["alice"]
    job_id = await start(emu, alice, "viggle character", name=name,
                         image=emu.attachment(media["alice"], "alice.png", "image/png"))
    await wait_job_state(bot, job_id, JobState.DONE, timeout=20)

    [card] = result_messages(emu, job_id)
    assert [a["filename"] for a in card.attachments] == ["character-thumbnail.png"]
    assert emu.read_attachment(card.attachments[0]) == relay.files["/thumb.png"]
    assert relay.hits == {"/thumb.png": 1}
    # the name is shown as typed, not as a masked link, a ping or bold text
    assert "\\[Nitro](https://e.vil/n)" in card.content
    assert "@\u200beveryone" in card.content and "<@&\u200b1>" in card.content and "\\*\\*now\\*\\*" in card.content
    assert card.pinged_user_ids == [alice] and not card.pinged_everyone and not card.pinged_role_ids
    status = emu.message((await status_message(emu, job_id)).id)
    assert "\\[Nitro](" in status.embeds[0]["description"]
    # the bot named the file: nothing was written where the provider's id points
    spool = tmp_path / "spool" / job_id
    assert not (spool / f"character-{evil_id}.png").resolve().exists()
    assert not [p for p in tmp_path.parent.rglob("*escaped-by-viggle*")]


async def test_error_texts_quoting_the_key_are_masked_everywhere(emu, bot, users, viggle, media):
    quoted = {"detail": {"error_code": f"CS-{KEY}", "message": f"key {KEY} (base64 {KEY_FORMS[1]}) is not "
                                                               "allowed to render"}}
    viggle.faults.add("POST", r"^/api/render$", status=400, body=quoted)
    job_id = await mix(emu, bot, users, media)
    viggle.faults.add("GET", r"^/api/credits$", status=401, body={"detail": f"unknown key {KEY}"}, times=None)
    ix = await emu.slash("viggle credits", user=users["alice"], options={})
    await ix.wait_ack(timeout=3)
    credits = await ix.wait_reply(timeout=10)

    job = await bot.bot.store.get_job(job_id)
    notice = await failure_notice(emu, job_id)
    status = emu.message((await status_message(emu, job_id)).id)
    assert "not allowed to render" in notice.content and "***" in notice.content
    assert "***" in credits.content
    shown = everything_posted(emu) + job.last_error
    for form in KEY_FORMS:
        assert form not in shown
    assert "***" in str(status.embeds)
    assert len(viggle.requests_to(r"^/api/render$", "POST")) == 1


async def test_a_huge_status_answer_is_refused_clearly_with_bounded_memory(emu, bot, users, viggle, media):
    viggle.faults.add("GET", r"^/api/render/[^/]+$", status=200, stream_bytes=120 * MIB, times=None)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        job_id = await mix(emu, bot, users, media)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * MIB, f"peak {peak / MIB:.0f} MiB"
    assert "more than 16 MiB" in (await failure_notice(emu, job_id)).content
    # one poll, read up to the cap and dropped: not retried, not read whole
    assert len(viggle.requests_to(r"^/api/render/[^/]+$", "GET")) == 1
    assert result_messages(emu, job_id) == []


@pytest.mark.parametrize("where", ["loopback", "link-local", "private-name"])
async def test_links_users_give_are_checked_before_viggle_sees_them(emu, bot, users, viggle, trap, where):
    url = {"loopback": f"{trap.base}/face.png", "link-local": "http://169.254.169.254/latest/face.png",
           "private-name": f"http://localhost:{trap.base.rsplit(':', 1)[1]}/face.png"}[where]
    ix = await emu.slash("viggle character", user=users["alice"], options={"name": "Face", "url": url})
    await ix.wait_ack(timeout=3)
    reply = await ix.wait_reply(timeout=10)
    if where == "private-name":  # a name: resolved and refused in the job's first step, before paying
        job_id = job_id_of(reply.content)
        await wait_job_state(bot, job_id, JobState.FAILED, timeout=20)
        assert "private or reserved address" in (await failure_notice(emu, job_id)).content
    else:  # an address: refused at once, privately, and no job is made
        assert reply.ephemeral and "private or reserved address" in reply.content
        assert await bot.bot.store.list_jobs(owner_id=users["alice"]) == []
    assert trap.total == 0
    assert viggle.requests_to(r"^/api/characters/preprocess$", "POST") == []
    assert viggle.credits == 100
