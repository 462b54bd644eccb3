"""The runner with the real Viggle client against the Viggle sandbox: characters started together
are followed by reading the character list, not by asking for each character in turn (each is read
alone once, when the list says it is ready)."""

from __future__ import annotations

import asyncio

from bot.config import ViggleSettings
from bot.models import Job, JobState
from bot.providers.viggle import ViggleProvider
from bot.runner import Runner
from bot.store import Store, new_job_id
from sandbox.media import image_bytes
from sandbox.viggle import ViggleSandbox
from tests.bot.test_runner import FakeDelivery
from tests.support.policy import sandbox_net


async def test_characters_started_together_are_followed_through_their_list(discord_cdn, tmp_path):
    viggle = ViggleSandbox(credits=100, character_seconds=1.5)
    await viggle.start()
    store = await Store.open(tmp_path / "bot.db")
    settings = ViggleSettings(api_key=viggle.api_key, base_url=viggle.base_url, poll_min_seconds=0.2,
                              poll_max_seconds=0.5)
    provider = ViggleProvider(settings, sandbox_net(viggle, discord_cdn))
    delivery = FakeDelivery()
    runner = Runner(store, {"viggle": provider}, delivery, spool_dir=tmp_path / "spool", idle_wait=0.2)
    try:
        jobs = [await store.create_job(Job(
            id=new_job_id(), provider="viggle", kind="character", state=JobState.ACCEPTED, owner_id=1,
            channel_id=2, guild_id=3, summary=f"c{n}", params={"name": f"c{n}", "image": discord_cdn.attachment(
                f"c{n}.png", image_bytes(96, 96, hue=n))})) for n in range(4)]
        runner.start()
        for _ in range(300):
            states = [(await store.get_job(j.id)).state for j in jobs]
            if all(s.is_terminal for s in states):
                break
            await asyncio.sleep(0.1)
        assert states == [JobState.DONE] * 4
        assert sorted(delivery.delivered) == sorted(j.id for j in jobs)  # each once
        listed = viggle.requests_to(r"^/api/characters$", "GET")
        one_by_one = viggle.requests_to(r"^/api/characters/[^/]+$", "GET")
        # while they wait, only the list is read; each is read alone once, when the list says it is ready
        remote_ids = [(await store.get_job(j.id)).remote_id for j in jobs]
        assert listed and sorted(r.path for r in one_by_one) == sorted(f"/api/characters/{r}" for r in remote_ids)
    finally:
        await runner.stop()
        await store.close()
        await provider.net.close()
        await viggle.stop()
