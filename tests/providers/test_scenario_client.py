"""The Scenario provider against the Scenario sandbox: what Scenario receives (parts, one paid job)
and what the bot gets back (typed statuses, ordered layer files, clear refusals)."""

from __future__ import annotations

import asyncio
import re
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import ScenarioSettings
from bot.models import Job, JobState, RemotePhase
from bot.providers.base import AuthFailed, InputRejected, RateLimited, ReconcileUnknown, Transient
from bot.providers.scenario import ScenarioProvider
from bot.providers.scenario_api import safe_message
from bot.providers.scenario_layers import download_key, layer_filename
from bot.providers.scenario_upload import MIB, S3_MAX_PARTS, S3_MIN_PART, plan_parts
from sandbox.media import image_bytes, make_video
from sandbox.scenario import ScenarioSandbox
from tests.support.policy import sandbox_net

# -- pure parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 5 * MIB, 8 * MIB, 8 * MIB + 1, 100 * MIB + 7, 200 * 1024 * MIB])
def test_part_plan_follows_s3_rules(size):
    plan = plan_parts(size)
    assert plan.count <= S3_MAX_PARTS
    slices = [plan.slice(n, size) for n in range(1, plan.count + 1)]
    assert sum(length for _, length in slices) == size
    assert all(length >= S3_MIN_PART for _, length in slices[:-1])
    assert slices[-1][1] > 0
    if size <= 10_000 * 8 * MIB:
        assert plan.part_size == 8 * MIB


def test_error_text_never_carries_a_signed_url():
    body = {"reason": "Cannot fetch https://cdn.cloud.scenario.com/a?Signature=SECRET now", "trace_id": "tr_1"}
    assert "SECRET" not in safe_message(body, 400) and "<link>" in safe_message(body, 400)
    assert safe_message({"message": "API Keys cannot access protected resources"}, 403).startswith("API Keys")
    assert safe_message("<html>bad gateway</html>", 502) == "HTTP 502"


def test_layer_names_say_index_and_content():
    assert layer_filename(0, {"description": "Person 1 (left)", "mimeType": "video/webm"}) == \
        "layer-00-person-1-left.webm"
    assert layer_filename(3, {"mimeType": "video/quicktime"}) == "layer-03.mov"
    key = download_key("asset_ocZCnG1Df35XRL1QyCZSRxAG8")
    assert re.fullmatch(r"[a-z0-9_]{1,20}", key) and key != download_key("asset_ocZCnG1Df35XRL1QyCZSRxAG9")


# -- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture
async def sandbox(tmp_path):
    sb = ScenarioSandbox(upload_validate_seconds=0.05, queue_seconds=0.3, warmup_seconds=0.05, run_seconds=0.2,
                         layer_seconds=0.5, workdir=tmp_path / "scenario")
    await sb.start()
    yield sb
    await sb.stop()


@pytest.fixture
def cdn(discord_cdn):
    return discord_cdn


@pytest.fixture
async def provider(sandbox, cdn):
    env = sandbox.env_lines()
    settings = ScenarioSettings(api_key=env["SCENARIO_API_KEY"], api_secret=env["SCENARIO_API_SECRET"],
                                base_url=env["SCENARIO_BASE_URL"], poll_min_seconds=0.05, poll_max_seconds=0.2)
    prov = ScenarioProvider(settings, sandbox_net(sandbox, cdn))
    prov.upload_poll_seconds = 0.05
    prov.reconcile_settle_seconds = 0.0
    yield prov
    await prov.net.close()


def paid_posts(sandbox) -> list:
    """Generate calls that were not dry runs (a dry run only prices the job)."""
    return [r for r in sandbox.requests_to(r"/generate/custom/", "POST") if "dryRun" not in r.query]


def make_job(video: dict, **params) -> Job:
    return Job(id="jobt1", provider="scenario", kind="layers", state=JobState.UPLOADING, owner_id=1, channel_id=2,
               guild_id=3, summary="test", params={"video": video, "instruction": "each person separately",
                                                   "max_layers": 6, **params})


def padded_video(path: Path, size: int) -> Path:
    """A real MP4 grown to `size` bytes with a trailing `free` box (valid MP4, any size)."""
    make_video(path, seconds=0.5)
    pad = size - path.stat().st_size
    with path.open("ab") as fh:
        fh.write(struct.pack(">I", pad) + b"free")
        left = pad - 8
        while left > 0:
            fh.write(bytes(min(left, MIB)))
            left -= MIB
    return path


async def uploaded(provider, cdn, tmp_path, video: Path | None = None, **params) -> Job:
    video = video or make_video(cdn.folder / "clip.mp4", seconds=1.0)
    job = make_job(cdn.attachment(video), **params)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    data = await provider.upload(job, work)
    return job.evolve(provider_data=data, submit_intent_at=datetime.now(UTC))


async def until_terminal(provider, job: Job, timeout: float = 15):
    end = asyncio.get_running_loop().time() + timeout
    seen = []
    while asyncio.get_running_loop().time() < end:
        status = await provider.poll(job)
        seen.append(status)
        if status.phase.is_terminal:
            return status, seen
        await asyncio.sleep(0.05)
    raise AssertionError("job did not finish")


async def test_multipart_upload_streams_parts_without_credentials(provider, sandbox, cdn, tmp_path):
    video = padded_video(cdn.folder / "big.mp4", 12 * MIB + 12345)
    job = await uploaded(provider, cdn, tmp_path, video)
    assert job.provider_data["asset_id"].startswith("asset_")
    created = sandbox.requests_to(r"^/v1/uploads$", "POST")
    assert len(created) == 1
    puts = [r for r in sandbox.requests if r.app == "s3" and r.method == "PUT"]
    assert sorted(int(r.headers["Content-Length"]) for r in puts) == [12 * MIB + 12345 - 8 * MIB, 8 * MIB]
    assert all("Authorization" not in r.headers for r in puts)
    assert all(r.headers["Content-Type"] == "video/mp4" for r in puts)
    upload = sandbox.uploads[job.provider_data["upload_id"]]
    assert upload.status == "imported" and upload.parts_count == 2


async def test_a_non_video_is_refused_before_anything_is_sent(provider, sandbox, cdn, tmp_path):
    fake = cdn.folder / "holiday.mp4"
    fake.write_bytes(image_bytes(64, 64))
    with pytest.raises(InputRejected, match="PNG image"):
        await uploaded(provider, cdn, tmp_path, fake)
    assert sandbox.requests == []


async def test_an_upload_scenario_refuses_is_reported_with_its_reason(provider, sandbox, cdn, tmp_path):
    sandbox.fail_next_upload("Unsupported codec profile")
    with pytest.raises(InputRejected, match="Scenario could not import the video: Unsupported codec profile"):
        await uploaded(provider, cdn, tmp_path)
    assert sandbox.paid_jobs == 0


async def test_submit_poll_collect_delivers_ordered_layers_and_preview(provider, sandbox, cdn, tmp_path):
    sandbox.layers_found = 4
    job = await uploaded(provider, cdn, tmp_path, max_layers=5)
    remote_id, data = await provider.submit(job)
    assert data["cost"] > 0 and sandbox.paid_jobs == 1
    job = job.evolve(remote_id=remote_id, state=JobState.SUBMITTED)
    sent = sandbox.jobs[remote_id].input
    assert sent["separationInstruction"] == "each person separately" and sent["maxLayers"] == 5
    status, seen = await until_terminal(provider, job)
    assert status.phase is RemotePhase.SUCCEEDED
    phases = [s.phase for s in seen]
    assert RemotePhase.QUEUED in phases and RemotePhase.RUNNING in phases
    assert all(0 <= (s.progress or 0) <= 1 for s in seen)
    job = job.evolve(provider_data={**job.provider_data, "_status": status.data})
    sandbox.cdn_url_ttl = 1  # signed URLs barely live: only a fresh lookup right before each GET works
    await asyncio.sleep(1.1)
    out = tmp_path / "out"
    out.mkdir()
    artifacts = await provider.collect(job, status, out)
    assert [a.filename for a in artifacts] == ["layers-preview.png", "layer-00-background.webm",
                                                "layer-01-person-1.webm", "layer-02-person-2.webm",
                                                "layer-03-person-3.webm"]
    assert artifacts[0].path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(a.path.stat().st_size > 0 and a.download_key for a in artifacts[1:])
    assert artifacts[1].description == "layer 0: background"
    link = await provider.fresh_link(job, artifacts[2].download_key)
    assert link.startswith(sandbox.urls["cdn"]) and "Signature=" in link


async def test_failed_job_carries_error_and_hint(provider, sandbox, cdn, tmp_path):
    sandbox.fail_next_job("No separable objects found", "Name the objects to separate.")
    job = await uploaded(provider, cdn, tmp_path)
    remote_id, _ = await provider.submit(job)
    status, _ = await until_terminal(provider, job.evolve(remote_id=remote_id))
    assert status.phase is RemotePhase.FAILED
    assert "No separable objects found" in status.error and status.hint == "Name the objects to separate."


async def test_5xx_on_generate_is_transient_and_reconcile_says_not_created(provider, sandbox, cdn, tmp_path):
    job = await uploaded(provider, cdn, tmp_path)
    sandbox.faults.add("POST", r"/generate/custom/", 502, "<html>Bad gateway</html>")
    with pytest.raises(Transient):
        await provider.submit(job)
    assert sandbox.paid_jobs == 0
    provider.reconcile_settle_seconds = 30.0
    with pytest.raises(ReconcileUnknown):  # too soon to be sure: look again later, do not resubmit yet
        await provider.reconcile(job)
    provider.reconcile_settle_seconds = 0.0
    assert await provider.reconcile(job) is None
    assert len(paid_posts(sandbox)) == 1  # looked up, not resent


async def test_timeout_on_generate_finds_the_job_instead_of_paying_twice(provider, sandbox, cdn, tmp_path):
    job = await uploaded(provider, cdn, tmp_path)
    provider.api.submit_timeout = 0.3
    provider.reconcile_settle_seconds = 30.0
    # the job is created at once; the answer comes after the bot stopped waiting
    sandbox.faults.add("POST", r"/generate/custom/", delay=0.8, passthrough=True)
    with pytest.raises(Transient, match="did not answer"):
        await provider.submit(job)
    found = await provider.reconcile(job)  # created already, only the answer is late
    assert found in sandbox.jobs and sandbox.jobs[found].input["video"] == job.provider_data["asset_id"]
    assert sandbox.paid_jobs == 1
    assert len(paid_posts(sandbox)) == 1


async def test_reconcile_ignores_other_jobs(provider, sandbox, cdn, tmp_path):
    other = await uploaded(provider, cdn, tmp_path)
    await provider.submit(other)
    mine = (await uploaded(provider, cdn, tmp_path)).evolve(submit_intent_at=datetime.now(UTC) - timedelta(hours=1))
    assert await provider.reconcile(mine) is None


async def test_concurrency_limit_is_rate_limited(provider, sandbox, cdn, tmp_path):
    sandbox.max_parallel_jobs = 0
    job = await uploaded(provider, cdn, tmp_path)
    with pytest.raises(RateLimited) as info:
        await provider.submit(job)
    assert "parallel" in info.value.public and sandbox.paid_jobs == 0


async def test_wrong_credentials_fail_the_check(sandbox):
    settings = ScenarioSettings(api_key="k", api_secret="wrong", base_url=sandbox.base_url + "/v1")
    prov = ScenarioProvider(settings, sandbox_net(sandbox))
    try:
        with pytest.raises(AuthFailed) as info:
            await prov.check()
        assert "wrong" not in info.value.public
    finally:
        await prov.net.close()


async def test_one_list_request_tells_the_status_of_many_jobs(provider, sandbox, cdn, tmp_path):
    job = await uploaded(provider, cdn, tmp_path)
    jobs = []
    for n in range(4):  # one after the other: Scenario runs only so many at once
        if n == 3:
            sandbox.fail_next_job("No separable objects found", "Name the objects to separate.")
        remote_id, _ = await provider.submit(job)
        jobs.append(job.evolve(id="jobfail" if n == 3 else f"jobt{n + 2}", remote_id=remote_id,
                               state=JobState.SUBMITTED))
        await until_terminal(provider, jobs[-1])
    unknown = job.evolve(id="jobgone", remote_id="job_not_there", state=JobState.SUBMITTED)
    before = len(sandbox.requests_to(r"/v1/jobs"))
    statuses = await provider.poll_many([*jobs, unknown])
    assert len(sandbox.requests_to(r"/v1/jobs")) - before == 1  # four jobs, one request
    assert set(statuses) == {j.id for j in jobs}  # the unknown one is left to a single poll
    assert all(statuses[j.id].phase is RemotePhase.SUCCEEDED for j in jobs[:3])
    assert statuses[jobs[0].id].data == (await provider.poll(jobs[0])).data
    failed = statuses["jobfail"]
    assert failed.phase is RemotePhase.FAILED and failed.hint == "Name the objects to separate."

    # a list entry that says "success" without its layers is not taken as "no layers" (a paid job
    # would fail): that job is read whole
    def without_layers(body):
        for entry in body["jobs"]:
            (entry.get("metadata") or {}).pop("assetIds", None)
        return body

    sandbox.faults.add("GET", r"/v1/jobs$", 200, passthrough=True, rewrite=without_layers)
    before = len(sandbox.requests_to(r"/v1/jobs/job"))
    again = await provider.poll_many(jobs[:3])
    assert [again[j.id].data["asset_ids"] for j in jobs[:3]] == [statuses[j.id].data["asset_ids"] for j in jobs[:3]]
    assert len(sandbox.requests_to(r"/v1/jobs/job")) - before == 3


async def test_the_upload_asks_scenario_for_a_quote_by_dry_run_and_pays_nothing(provider, sandbox, cdn, tmp_path):
    job = await uploaded(provider, cdn, tmp_path, max_layers=4)
    [dry] = sandbox.requests_to(r"/generate/custom/", "POST")
    assert dry.query.get("dryRun") == "true"
    assert job.provider_data["quote"] > 0 and sandbox.paid_jobs == 0
    assert [j.job_type for j in sandbox.jobs.values()] == ["upload"]  # no generation job
    assert provider.quotes == {4: job.provider_data["quote"]}  # the next /layers can state it up front
    remote_id, data = await provider.submit(job)
    assert data["cost"] == job.provider_data["quote"] and sandbox.paid_jobs == 1
    status, _ = await until_terminal(provider, job.evolve(remote_id=remote_id, state=JobState.SUBMITTED))
    assert status.data["cu_cost"] == job.provider_data["quote"]  # billing.cuCost, the final charge


async def test_a_gateway_states_the_newest_price_its_workers_found(provider, tmp_path):
    """A gateway does no dry runs of its own: it learns prices from the jobs its workers priced.
    When Scenario's price changes, the next command states the new one, not the first it read."""
    from bot.store import Store, new_job_id

    store = await Store.open(tmp_path / "bot.db")
    try:
        async def priced_by_a_worker(quote: float) -> None:
            await store.create_job(Job(id=new_job_id(), provider="scenario", kind="layers", state=JobState.SUBMITTED,
                                       owner_id=1, channel_id=2, guild_id=3, summary="w",
                                       params={"max_layers": 6}, provider_data={"quote": quote}))
            await asyncio.sleep(0.01)  # created later: newer

        await priced_by_a_worker(30.0)
        provider.recall(await store.list_jobs(provider="scenario", limit=50))
        assert provider.quotes == {6: 30.0}
        await priced_by_a_worker(45.0)  # Scenario raised its price
        provider.recall(await store.list_jobs(provider="scenario", limit=50))
        assert provider.quotes == {6: 45.0}
    finally:
        await store.close()


async def test_a_list_entry_without_a_known_status_is_left_to_its_own_poll(provider, sandbox, cdn, tmp_path):
    """A list entry with no status (or one the bot does not know) must not be answered as
    "running": the runner would never poll that job alone, and it would run into its deadline."""
    job = await uploaded(provider, cdn, tmp_path)
    remote_id, _ = await provider.submit(job)
    done = job.evolve(id="jobdone", remote_id=remote_id, state=JobState.SUBMITTED)
    await until_terminal(provider, done)
    remote_id, _ = await provider.submit(job)
    running = job.evolve(id="jobrun", remote_id=remote_id, state=JobState.SUBMITTED)

    for status in (None, "archived-somehow"):
        def rewrite(body, status=status):
            for entry in body["jobs"]:
                if entry.get("jobId") == done.remote_id:
                    entry.pop("status", None)
                    if status is not None:
                        entry["status"] = status
            return body

        sandbox.faults.add("GET", r"/v1/jobs$", 200, passthrough=True, rewrite=rewrite, times=1)
        answers = await provider.poll_many([done, running])
        assert set(answers) == {running.id}  # the other is polled alone by the runner...
        assert not answers[running.id].phase.is_terminal
    assert (await provider.poll(done)).phase is RemotePhase.SUCCEEDED  # ...and is seen to have finished


async def test_the_job_list_is_read_only_until_every_wanted_job_is_found(provider, sandbox, cdn, tmp_path):
    job = await uploaded(provider, cdn, tmp_path)
    sandbox.add_other_jobs(250)  # a busy project: three pages of other jobs behind ours
    jobs = []
    for n in range(2):
        remote_id, _ = await provider.submit(job)
        jobs.append(job.evolve(id=f"jobp{n}", remote_id=remote_id, state=JobState.SUBMITTED))
    before = len(sandbox.requests_to(r"^/v1/jobs$", "GET"))
    assert set(await provider.poll_many(jobs)) == {j.id for j in jobs}
    assert len(sandbox.requests_to(r"^/v1/jobs$", "GET")) - before == 1  # both on the first page
    # a job not listed still has the scan read on, up to its limit
    gone = jobs[0].evolve(id="jobgone", remote_id="job_not_there")
    before = len(sandbox.requests_to(r"^/v1/jobs$", "GET"))
    assert set(await provider.poll_many([*jobs, gone])) == {j.id for j in jobs}
    assert len(sandbox.requests_to(r"^/v1/jobs$", "GET")) - before == provider.batch_max_pages


async def test_a_repeating_numeric_page_token_ends_the_scan(provider, sandbox, cdn, tmp_path):
    job = await uploaded(provider, cdn, tmp_path)
    sandbox.add_other_jobs(250)
    remote_id, _ = await provider.submit(job)
    gone = job.evolve(id="jobgone", remote_id="job_not_there", state=JobState.SUBMITTED)
    mine = job.evolve(id="jobmine", remote_id=remote_id, state=JobState.SUBMITTED)
    # Scenario answering the same page token, as a number, every time
    sandbox.faults.add("GET", r"/v1/jobs$", 200, passthrough=True, times=None,
                       rewrite=lambda body: {**body, "nextPaginationToken": 100} if "nextPaginationToken" in body
                       else body)
    provider.batch_max_pages = 20
    before = len(sandbox.requests_to(r"^/v1/jobs$", "GET"))
    assert set(await provider.poll_many([mine, gone])) == {mine.id}
    assert len(sandbox.requests_to(r"^/v1/jobs$", "GET")) - before == 2  # the token came back: stop there
