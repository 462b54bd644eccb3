"""One gateway process (`python -m bot`, no jobs of its own) and two worker processes
(`python -m bot worker`) on one PostgreSQL database run Viggle, vid2scene and Scenario jobs
issued as slash commands through sandbox Discord. One worker is SIGKILLed while it holds live
leases: the other takes its jobs over once the leases run out, and every job still ends with
one result message in its channel and one paid submission at its provider."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from sandbox.media import image_bytes, make_video
from tests.e2e.bot_process import Proc
from tests.e2e.crash_world import Sandboxes
from tests.e2e.helpers import job_id_of, result_messages

LEASE_SECONDS = 3
#: runners look for new jobs often, and a dead worker's leases run out in seconds
WORKERS = {"RUNNER_IDLE_SECONDS": "0.3", "JOB_LEASE_SECONDS": str(LEASE_SECONDS)}


async def _sandboxes() -> Sandboxes:
    world = await Sandboxes.start()
    # slow enough that the kill lands while jobs are live, quick enough for a run of seconds
    world.viggle.character_seconds = 3.0
    world.v2s.training_seconds = 2.5
    world.scenario.run_seconds = 2.5
    return world


async def _rows(database_url: str, sql: str, *args):
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def _paid(viggle, v2s, scenario, kind: str, tag: str) -> int:
    """Submissions the provider accepted for the user's input `tag` (what would be billed)."""
    if kind == "character":
        return sum(1 for r in viggle.characters.values() if r.name.startswith(tag))
    if kind == "splat":
        return sum(1 for r in v2s.jobs.values() if r.title.startswith(tag))
    return sum(1 for r in scenario.jobs.values() if r.input.get("separationInstruction") == tag)


@pytest.mark.timeout(90)
async def test_a_worker_process_killed_mid_job_leaves_every_job_delivered_and_paid_once(tmp_path, postgres_server):
    started = time.monotonic()
    database_url = (await postgres_server.fresh_schema_url())[1]
    portrait = tmp_path / "me.png"
    portrait.write_bytes(image_bytes(128, 128, label="W"))
    clip = await asyncio.to_thread(make_video, tmp_path / "clip.mp4", seconds=1.0, width=160, height=120, fps=8)
    world = await _sandboxes()
    emu, viggle, v2s, scenario = world.emu, world.viggle, world.v2s, world.scenario
    users = [emu.add_user("alice"), emu.add_user("bob")]  # three live jobs each (MAX_JOBS_PER_USER)
    procs: list[Proc] = []
    try:
        def proc(name: str, args: list[str], **extra: str) -> Proc:
            (tmp_path / name).mkdir()
            env = world.bot_env(tmp_path / name) | WORKERS | {"DATABASE_URL": database_url} | extra
            p = Proc(name, args, env, tmp_path)
            procs.append(p)
            return p

        sync = await proc("sync", ["sync"]).start()
        assert await asyncio.wait_for(sync.proc.wait(), 60) == 0, sync.tail()
        gateway = await proc("gateway", ["run"], GATEWAY_RUNS_JOBS="false").start()
        await emu.wait_for(lambda: emu.connected or not gateway.alive, timeout=60, what="the gateway to connect")
        assert gateway.alive, gateway.tail()
        doomed = await proc("doomed", ["worker"], WORKER_ID="doomed").start()
        survivor = await proc("survivor", ["worker"], WORKER_ID="survivor").start()

        commands = []
        for n in range(2):  # user n: one job per provider
            commands += [("character", f"hero{n}", "viggle character",
                          {"name": f"hero{n}", "image": emu.attachment(portrait, "me.png", "image/png")}),
                         ("splat", f"room{n}", "splat create",
                          {"video": emu.attachment(clip, "clip.mp4", "video/mp4"), "title": f"room{n}"}),
                         ("layers", f"split{n}", "layers",
                          {"video": emu.attachment(clip, "clip.mp4", "video/mp4"), "instruction": f"split{n}",
                           "max_layers": 2})]
        jobs = []  # (kind, tag, job id)
        for i, (kind, tag, command, options) in enumerate(commands):
            ix = await emu.slash(command, user=users[i // 3], options=options)
            jobs.append((kind, tag, job_id_of((await ix.wait_reply(timeout=15)).content)))

        # SIGKILL the doomed worker while it holds a live lease on an unfinished job, after the
        # provider was paid if it can be caught there (collecting or delivering the results)
        live = "SELECT id, state FROM jobs WHERE lease_owner = $1 AND lease_until > $2 AND state NOT IN " \
               "('done', 'failed', 'cancelled')"
        held: list[dict] = []
        loop = asyncio.get_running_loop()
        prefer_until = loop.time() + 10
        for _ in range(400):
            held = await _rows(database_url, live, "doomed", time.time())
            paid = any(r["state"] not in ("accepted", "uploading") for r in held)
            if (held and (paid or loop.time() > prefer_until)) or not doomed.alive:
                break
            await asyncio.sleep(0.05)
        assert held and doomed.alive, doomed.tail()
        await doomed.stop(signal.SIGKILL)
        assert doomed.proc.returncode == -signal.SIGKILL

        ids = [job_id for _, _, job_id in jobs]
        final = "SELECT id, state FROM jobs WHERE id = ANY($1::text[])"
        end = loop.time() + 45
        rows: list[dict] = []
        while loop.time() < end:
            rows = await _rows(database_url, final, ids)
            if len(rows) == len(ids) and all(r["state"] in ("done", "failed", "cancelled") for r in rows) \
                    and all(result_messages(emu, j) for j in ids):
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)  # a second result message, if any, would show up now
        states = {r["id"]: r["state"] for r in await _rows(database_url, final, ids)}
        logs = "\n".join(p.tail() for p in procs)
        taken_over = [r["id"] for r in held]
        assert all(states.get(j) == "done" for j in ids), f"{states}\nheld by the killed worker: {taken_over}\n{logs}"
        for kind, tag, job_id in jobs:
            assert len(result_messages(emu, job_id)) == 1, f"{kind} {job_id}: results {result_messages(emu, job_id)}"
            assert _paid(viggle, v2s, scenario, kind, tag) == 1, f"{kind} {tag}: paid submissions"
        assert survivor.alive and gateway.alive, logs

        # `python -m bot health` asks each process for its own heartbeats only
        async def health(p: Proc, *args: str, **env: str) -> int:
            child = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "health", *args,
                                                         env={**p.env, **env}, cwd=tmp_path,
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.DEVNULL)
            return await asyncio.wait_for(child.wait(), 30)

        assert await health(survivor, "worker", "--max-age", "2.5") == 0
        assert await health(doomed, "worker", "--max-age", "2.5") == 1  # killed seconds ago
        assert await health(gateway) == 0  # GATEWAY_RUNS_JOBS=false: the gateway's heartbeat only
        assert await health(gateway, GATEWAY_RUNS_JOBS="true") == 1  # it has no runner to beat
        print(f"\nworkers kill test: {len(ids)} jobs, taken over in states {sorted(r['state'] for r in held)}, "
              f"{time.monotonic() - started:.1f} s")
    finally:
        for p in procs:
            await p.stop()
        await world.stop()
