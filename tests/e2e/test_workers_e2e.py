"""A gateway that runs no jobs and two workers (REST only), on one PostgreSQL database, through
sandbox Discord: users see each job's card and result once; a worker that dies mid-job has its
jobs finished by the other once its leases run out."""

from __future__ import annotations

import asyncio

import pytest

from bot.app import VideoBot
from bot.config import Settings
from bot.models import JobState
from tests.e2e.helpers import job_id_of, result_messages, wait_result
from tests.support.echo import EchoProvider
from tests.support.policy import sandbox_net


@pytest.fixture
async def database_url(postgres_server):
    return (await postgres_server.fresh_schema_url())[1]


@pytest.fixture
async def gateway(emu, harness, database_url):
    harness.settings_overrides.update(database_url=database_url, gateway_runs_jobs=False)
    await harness.restart()
    yield harness


@pytest.fixture
async def workers(emu, remote, tmp_path, database_url, gateway):
    started: list[VideoBot] = []

    async def start(name: str, **echo) -> VideoBot:
        settings = Settings(discord_token=emu.bot_token, database_url=database_url, worker_id=name,
                            spool_dir=tmp_path / name, runner_idle_seconds=0.2, job_lease_seconds=2,
                            status_edit_seconds=1.0, cooldowns={"*": 0})
        bot = VideoBot(settings, providers={"echo": EchoProvider(remote, sandbox_net(emu), **echo)}, extensions=(),
                       start_runner=True)
        await bot.login(emu.bot_token)  # REST only: no gateway connection
        started.append(bot)
        return bot

    yield start
    for bot in started:
        await bot.close()


async def _start_jobs(emu, user: int, texts: list[str]) -> list[str]:
    ids = []
    for text in texts:
        ix = await emu.slash("echo", user=user, options={"text": text})
        ids.append(job_id_of((await ix.wait_reply()).content))
    return ids


async def test_two_workers_run_the_gateways_jobs_and_each_result_posts_once(emu, gateway, workers, users, remote):
    assert gateway.bot.runner._loop_task is None  # the gateway only takes commands
    await workers("w1")
    await workers("w2")
    ids = await _start_jobs(emu, users["alice"], ["one", "two", "three"])
    ids += await _start_jobs(emu, users["bob"], ["four", "five"])
    for job_id in ids:
        result = await wait_result(emu, job_id, timeout=30)
        assert result.attachments[0]["filename"] == "echo.txt"
    await asyncio.sleep(0.5)
    assert all(len(result_messages(emu, job_id)) == 1 for job_id in ids)
    assert remote.submits == 5


async def test_a_worker_that_dies_mid_job_has_its_jobs_finished_by_the_other(emu, gateway, workers, users, remote):
    doomed = await workers("doomed", running_polls=400)  # its jobs would run for a long while
    ids = await _start_jobs(emu, users["alice"], ["a", "b"])
    store = gateway.bot.store

    async def running():
        return all([(await store.get_job(j)).state is JobState.RUNNING for j in ids])

    for _ in range(300):
        if await running():
            break
        await asyncio.sleep(0.05)
    assert await running()
    # it dies: no more polls, no renewals, no goodbye (its leases stay until they run out)
    doomed.runner._stopping = True
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith(("job-", "jobs-"))]
    doomed.runner._loop_task.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(doomed.runner._loop_task, *tasks, return_exceptions=True)
    doomed.runner._loop_task = None
    doomed.runner._inflight.clear()
    doomed.runner._to_release.clear()
    for job_id in ids:
        remote.jobs[(await store.get_job(job_id)).remote_id].polls_running = 0  # the provider finishes them now
    await workers("survivor")
    for job_id in ids:
        await wait_result(emu, job_id, timeout=30)
    await asyncio.sleep(0.5)
    assert all(len(result_messages(emu, job_id)) == 1 for job_id in ids)
    assert remote.submits == 2  # paid once each
