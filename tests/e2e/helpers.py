"""Reading what a user sees in the sandbox channel."""

from __future__ import annotations

import asyncio
import re

from bot.models import Job, JobState

_JOB_ID = re.compile(r"job `([a-z0-9]+)`", re.IGNORECASE)


def job_id_of(text: str) -> str:
    match = _JOB_ID.search(text)
    assert match, f"no job id in {text!r}"
    return match.group(1)


def field(message, name: str) -> str | None:
    for embed in message.embeds or []:
        for f in embed.get("fields", []):
            if f["name"] == name:
                return f["value"]
    return None


def _footer(message) -> str:
    return " ".join((e.get("footer") or {}).get("text", "") for e in message.embeds or [])


async def status_message(emu, job_id: str, timeout: float = 10):
    found = await emu.wait_for(lambda: [m for m in emu.messages() if _footer(m) == f"Job {job_id}"
                                        and not m.ephemeral], timeout=timeout)
    return found[0]


def result_messages(emu, job_id: str) -> list:
    return [m for m in emu.messages() if f"job `{job_id}`" in m.content and ("is ready" in m.content or "are ready" in m.content)]


async def wait_result(emu, job_id: str, timeout: float = 15):
    found = await emu.wait_for(lambda: result_messages(emu, job_id), timeout=timeout)
    return found[0]


async def run_echo(emu, user: int, text: str) -> str:
    ix = await emu.slash("echo", user=user, options={"text": text})
    reply = await ix.wait_reply()
    return job_id_of(reply.content)


async def wait_job_state(harness, job_id: str, state: JobState, timeout: float = 15) -> Job:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    job = None
    while loop.time() < end:
        bot = harness.bot
        if bot is not None and getattr(bot, "store", None) is not None:
            try:
                job = await bot.store.get_job(job_id)
            except ValueError:  # the store closed under us during a restart
                job = None
            if job is not None and job.state is state:
                return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {state}; it is {job.state if job else None}")


async def finished(harness, job_id: str, timeout: float = 10):
    """The job once it has ended and owes nothing more."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        job = await harness.bot.store.get_job(job_id)
        if job is not None and job.state.is_terminal and not job.finish_pending:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")
