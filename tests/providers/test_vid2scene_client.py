"""The vid2scene client against the sandbox: the whole flow, every option, the odd corners."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from bot.config import Vid2SceneSettings
from bot.models import Job, JobState, RemotePhase
from bot.providers import vid2scene as v2s
from bot.providers.base import AuthFailed, InputRejected, NotFound, OutOfCredits, Transient, job_marker
from bot.providers.vid2scene import Vid2SceneProvider
from sandbox.discord import DiscordEmulator
from sandbox.media import image_bytes, make_video
from sandbox.vid2scene import Vid2SceneSandbox
from tests.support.policy import sandbox_net

AZURE_AUTH_FAILED = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>'
                     '<Message>Signature not valid in the specified time frame.</Message></Error>')


@pytest.fixture
async def cdn():
    """Discord's attachment CDN, where the bot finds the user's video."""
    emu = DiscordEmulator()
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
def knobs() -> dict:
    return {"speed": 4.0}


@pytest.fixture
async def sandbox(knobs):
    service = Vid2SceneSandbox(**knobs)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def provider(sandbox, cdn):
    env = sandbox.env_lines()
    settings = Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"],
                                 poll_min_seconds=0.05, poll_max_seconds=0.2)
    p = Vid2SceneProvider(settings, sandbox_net(sandbox, cdn))
    yield p
    await p.close()


def make_job(cdn, path: Path, name: str = "clip.mp4", ctype: str = "video/mp4", **params) -> Job:
    stored = cdn.attachment(path, name, ctype)
    video = {"url": cdn.cdn.url(stored), "filename": name, "size": stored.size, "content_type": ctype}
    return Job(id="abc123def4", provider="vid2scene", kind="splat", state=JobState.UPLOADING, owner_id=1,
               channel_id=2, guild_id=3, summary="3D scene from clip.mp4", params={"video": video, **params})


async def run_to_end(provider, job: Job, timeout: float = 10.0):
    seen = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        status = await provider.poll(job)
        seen.append(status)
        job = job.evolve(progress=status.progress, preview_url=status.preview_url or job.preview_url)
        if status.phase.is_terminal:
            return status, seen
        await asyncio.sleep(0.05)
    return None, seen


async def test_whole_flow_with_every_option(provider, sandbox, cdn, tmp_path):
    video = make_video(tmp_path / "in.mp4", seconds=2)
    job = make_job(cdn, video, title="Desk orbit", public=True, reconstruction_method="glomap",
                   training_max_num_gaussians=150_000, training_num_steps=6_000, apriltag_size_mm=50.0,
                   remove_background=True, camera_type="drone")
    data = await provider.upload(job, tmp_path / "work")
    assert data["blob_name"].startswith("videos/") and data["blob_name"].endswith(".mp4")
    blob_puts = sandbox.requests_to(r"/videos/", "PUT")
    assert len(blob_puts) == 1
    assert blob_puts[0].headers["x-ms-blob-type"] == "BlockBlob"
    assert int(blob_puts[0].headers["Content-Length"]) == video.stat().st_size
    assert "Authorization" not in blob_puts[0].headers

    job = job.evolve(provider_data=data)
    remote_id, extra = await provider.submit(job)
    remote = sandbox.jobs[remote_id]
    assert remote.title == f"Desk orbit {job_marker(job)}"
    assert (remote.public, remote.reconstruction_method, remote.training_max_num_gaussians,
            remote.training_num_steps, remote.apriltag_size_mm, remote.remove_background) == \
           (True, "glomap", 150_000, 6_000, 50.0, True)
    assert remote.camera_data["cameraType"] == "drone"
    assert extra["title"] == "Desk orbit"

    job = job.evolve(remote_id=remote_id, provider_data={**data, **extra})
    final, seen = await run_to_end(provider, job)
    assert final is not None and final.phase is RemotePhase.SUCCEEDED
    assert any(s.phase is RemotePhase.RUNNING and s.progress for s in seen)
    previews = [s.preview_url for s in seen if s.preview_url]
    assert previews and all(p.startswith(sandbox.urls["blob"]) for p in previews)

    files = await provider.collect(job, final, tmp_path / "out")
    names = [a.filename for a in files]
    # the preview is our own turntable of the finished scene, not vid2scene's training snapshot
    assert names == ["desk-orbit.spz", "desk-orbit-turntable.webp", "desk-orbit.ply"]
    spz, preview, ply = files
    assert spz.path.read_bytes()[:2] in (b"\x1f\x8b", b"NG") and spz.download_key == "spz"
    with Image.open(preview.path) as anim:
        assert anim.format == "WEBP" and anim.n_frames >= 24
        anim.seek(anim.n_frames // 3)
        assert len(set(anim.convert("RGB").getdata())) > 50  # a scene, not a blank frame
    assert ply.path.read_bytes().startswith(b"ply\n") and ply.optional and ply.download_key == "ply"
    # our key never reached the storage host
    assert all("Authorization" not in r.headers for r in sandbox.requests if r.app == "blob")
    # every API path carried Django's trailing slash
    assert all(r.path.endswith("/") for r in sandbox.requests if r.app == "api")


async def test_queue_position_then_processing_are_reported(provider, sandbox, cdn, tmp_path):
    video = make_video(tmp_path / "in.mp4", seconds=1.5)
    jobs = []
    quick = sandbox.worker.queue_seconds
    sandbox.worker.queue_seconds = 60  # nobody is taken while the three are submitted, however slow that is
    for i in range(3):
        job = make_job(cdn, video, title=f"q{i}").evolve(id=f"queue{i}xx")
        job = job.evolve(provider_data=await provider.upload(job, tmp_path / f"w{i}"))
        remote_id, _ = await provider.submit(job)
        jobs.append(job.evolve(remote_id=remote_id))
    status = await provider.poll(jobs[2])
    assert status.phase is RemotePhase.QUEUED and status.queue_position == 3
    sandbox.worker.queue_seconds = quick
    _, seen = await run_to_end(provider, jobs[0])
    assert {s.raw_status for s in seen} >= {"Processing video", "Generating 3D scene", "Finished"}


async def test_not_a_video_is_refused_before_any_upload_url(provider, sandbox, cdn, tmp_path):
    fake = tmp_path / "photo.mp4"
    fake.write_bytes(image_bytes(64, 64))
    job = make_job(cdn, fake, name="photo.mp4")
    with pytest.raises(InputRejected, match="not a video"):
        await provider.upload(job, tmp_path / "work")
    assert not sandbox.requests_to("generate-upload-url")


async def test_too_long_and_too_large_are_refused_before_spending(provider, sandbox, cdn, tmp_path, monkeypatch):
    video = make_video(tmp_path / "in.mp4", seconds=3)
    monkeypatch.setattr(v2s, "MAX_VIDEO_SECONDS", 2)
    with pytest.raises(InputRejected, match="at most 2 s"):
        await provider.upload(make_job(cdn, video), tmp_path / "a")
    monkeypatch.setattr(v2s, "MAX_VIDEO_BYTES", 1000)
    with pytest.raises(InputRejected, match="vid2scene accepts at most"):
        await provider.upload(make_job(cdn, video), tmp_path / "b")
    assert not sandbox.requests_to("generate-upload-url")


async def test_expired_upload_signature_gets_a_fresh_url(provider, sandbox, cdn, tmp_path):
    sandbox.faults.add("PUT", r"/videos/", 403, AZURE_AUTH_FAILED, headers={"Content-Type": "application/xml"})
    data = await provider.upload(make_job(cdn, make_video(tmp_path / "in.mp4")), tmp_path / "w")
    assert len(sandbox.requests_to("generate-upload-url", "POST")) == 2
    assert sandbox.blobs.get(data["blob_name"]) is not None


async def test_blob_too_old_at_submit_is_uploaded_again(provider, sandbox, cdn, tmp_path):
    job = make_job(cdn, make_video(tmp_path / "in.mp4"))
    job = job.evolve(provider_data=await provider.upload(job, tmp_path / "w"))
    sandbox.age_blob(job.provider_data["blob_name"], 2 * 3600)
    remote_id, extra = await provider.submit(job)
    assert remote_id in sandbox.jobs
    assert len(sandbox.requests_to("submit-job", "POST")) == 2  # the first was refused: nothing created
    assert len(sandbox.jobs) == 1


async def test_auth_and_credit_errors_are_typed(provider, sandbox, cdn, tmp_path):
    job = make_job(cdn, make_video(tmp_path / "in.mp4"))
    job = job.evolve(provider_data=await provider.upload(job, tmp_path / "w"))
    sandbox.set_credits(0)
    with pytest.raises(OutOfCredits, match="Insufficient API credits"):
        await provider.submit(job)
    sandbox.set_credits(None)
    sandbox.revoke_key()
    with pytest.raises(AuthFailed, match="API key revoked"):
        await provider.submit(job)
    assert not sandbox.jobs


async def test_submit_error_500_is_transient_and_reconcile_finds_or_clears(provider, sandbox, cdn, tmp_path):
    job = make_job(cdn, make_video(tmp_path / "in.mp4"))
    job = job.evolve(provider_data=await provider.upload(job, tmp_path / "w"))
    sandbox.faults.add("POST", r"submit-job", 500, {"success": False, "error_message": "boom"})
    with pytest.raises(Transient):
        await provider.submit(job)
    assert await provider.reconcile(job) is None  # certainly not created
    remote_id, _ = await provider.submit(job)
    assert await provider.reconcile(job) == remote_id


async def test_failed_and_stuck_jobs(provider, sandbox, cdn, tmp_path):
    video = make_video(tmp_path / "in.mp4")
    sandbox.fail_next_job()
    job = make_job(cdn, video)
    job = job.evolve(provider_data=await provider.upload(job, tmp_path / "w"))
    remote_id, _ = await provider.submit(job)
    final, _ = await run_to_end(provider, job.evolve(remote_id=remote_id))
    assert final.phase is RemotePhase.FAILED and "could not reconstruct" in final.error

    sandbox.stick_next_job()
    job2 = job.evolve(id="stuck0001")
    remote2, _ = await provider.submit(job2)
    final, seen = await run_to_end(provider, job2.evolve(remote_id=remote2), timeout=3.0)
    assert final is None  # still "Generating 3D scene": only the engine's deadline ends it
    assert seen[-1].raw_status == "Generating 3D scene" and seen[-1].phase is RemotePhase.RUNNING
    await provider.cancel(job2.evolve(remote_id=remote2))
    assert remote2 not in sandbox.jobs
    with pytest.raises(NotFound):
        await provider.poll(job2.evolve(remote_id=remote2))


@pytest.mark.parametrize("knobs", [{"speed": 4.0, "download_url_ttl": 1.0}])
async def test_download_links_are_fresh_and_sent_without_our_key(provider, sandbox, cdn, tmp_path):
    job = make_job(cdn, make_video(tmp_path / "in.mp4"))
    job = job.evolve(provider_data=await provider.upload(job, tmp_path / "w"))
    remote_id, _ = await provider.submit(job)
    job = job.evolve(remote_id=remote_id)
    assert (await run_to_end(provider, job))[0].phase is RemotePhase.SUCCEEDED
    first = await provider.fresh_link(job, "ply")
    assert first.startswith(sandbox.urls["blob"])
    async with provider.net.session.get(first) as resp:
        assert resp.status == 200
    await asyncio.sleep(2.1)
    async with provider.net.session.get(first) as resp:
        assert resp.status == 403  # expired
    second = await provider.fresh_link(job, "ply")
    assert second != first
    async with provider.net.session.get(second) as resp:
        assert resp.status == 200
    with pytest.raises(NotFound):
        await provider.fresh_link(job, "mp4")


async def test_scenes_made_elsewhere_with_the_same_key_are_listed(provider, sandbox, cdn, tmp_path):
    job = make_job(cdn, make_video(tmp_path / "in.mp4"))
    data = await provider.upload(job, tmp_path / "w")
    # someone else uses the same key straight from a script
    status, _, body = await provider.net.json_request(
        "POST", provider.api.url("submit-job"), json={"blob_name": data["blob_name"], "title": "from a script"},
        headers={"Authorization": f"Api-Key {sandbox.api_key}"})
    assert status == 201
    scenes = await provider.scenes()
    assert [(s.job_id, s.title) for s in scenes] == [(body["job_id"], "from a script")]
    renamed = await provider.rename(body["job_id"], "renamed")
    assert renamed.title == "renamed"
    assert (await provider.set_public(body["job_id"], True)).public is True
    details = await provider.scene(body["job_id"])
    assert (details.title, details.public, details.reconstruction_method) == ("renamed", True, "glomap")
    assert await provider.delete_scene(body["job_id"]) is True
    assert await provider.delete_scene(body["job_id"]) is False
    with pytest.raises(NotFound):
        await provider.scene("not-a-uuid")


async def test_check_and_bad_key(provider, sandbox):
    assert "accepted" in await provider.check()
    sandbox.revoke_key()
    with pytest.raises(AuthFailed):
        await provider.check()


async def test_an_spz_over_the_upload_limit_gets_a_reduced_copy_and_keeps_its_button(provider, sandbox, cdn,
                                                                                    tmp_path):
    job = make_job(cdn, make_video(tmp_path / "in.mp4"), title="Big one")
    job = job.evolve(provider_data=await provider.upload(job, tmp_path / "w"))
    remote_id, _ = await provider.submit(job)
    job = job.evolve(remote_id=remote_id)
    final, _ = await run_to_end(provider, job)
    provider.upload_limit = 150_000
    files = await provider.collect(job, final, tmp_path / "out")
    reduced, full = files[0], files[1]
    assert reduced.filename == "big-one-reduced-for-discord.spz" and reduced.size <= 150_000
    assert full.filename == "big-one.spz" and full.size > 150_000 and full.download_key == "spz"
    from bot.media.splat import read_spz

    kept, source = read_spz(reduced.path), read_spz(full.path)
    assert 0 < kept.count <= source.count
    # the note tells the user what was given up: splats kept and the SH degree
    assert f"{kept.count:,} of {source.count:,} splats" in reduced.description or \
        (kept.count == source.count and f"all {kept.count:,} splats" in reduced.description)
    assert f"SH degree {kept.sh_degree}" in reduced.description

    # killed during a later step of the collect: what was made is kept, nothing is fetched or
    # rendered twice, and a half-written file is not taken as done
    turntable = next(f for f in files if f.filename.endswith(".webp"))
    made = {f.filename: f.path.stat().st_mtime_ns for f in files}
    (turntable.path.parent / f".making-{turntable.filename}").write_bytes(b"half a picture")
    asked = len(sandbox.requests)
    again = await provider.collect(job, final, tmp_path / "out")
    assert [(f.filename, f.description) for f in again] == [(f.filename, f.description) for f in files]
    assert {f.filename: f.path.stat().st_mtime_ns for f in again} == made
    assert not [r.path for r in sandbox.requests[asked:] if "spz" in r.path]  # the scene was not fetched again
    turntable.path.unlink()  # killed before the turntable was complete: it is made (whole) again
    third = await provider.collect(job, final, tmp_path / "out")
    assert next(f for f in third if f.filename == turntable.filename).path.read_bytes()[:4] == b"RIFF"


async def test_an_expired_redirect_target_is_asked_for_again_and_errors_read_every_shape(provider, sandbox, cdn,
                                                                                       tmp_path):
    job = make_job(cdn, make_video(tmp_path / "in.mp4"))
    job = job.evolve(provider_data=await provider.upload(job, tmp_path / "w"))
    remote_id, _ = await provider.submit(job)
    job = job.evolve(remote_id=remote_id)
    with pytest.raises(NotFound, match="SPZ file not available"):  # {"error": ...} before it is done
        await provider.fresh_link(job, "spz")
    final, _ = await run_to_end(provider, job)
    # the first signed link has expired by the time storage sees it (403 AuthenticationFailed)
    sandbox.faults.add("GET", r"spz_files/", 403, AZURE_AUTH_FAILED, headers={"Content-Type": "application/xml"})
    got = await provider.api.fetch(remote_id, "spz", tmp_path / "x.spz")
    assert got == (tmp_path / "x.spz").stat().st_size > 0
    assert len(sandbox.requests_to(r"/download/spz/$")) == 3  # fresh_link above, then two fetches
    sandbox.faults.add("GET", r"spz_files/", 403, AZURE_AUTH_FAILED, times=2)
    with pytest.raises(Transient, match="kept expiring"):
        await provider.api.fetch(remote_id, "spz", tmp_path / "y.spz")
