"""Plain words on cards and lists: the queue position once, an ellipsis wherever text is cut."""

from __future__ import annotations

from bot.models import JobState
from bot.providers.base import ProviderLimits
from tests.e2e.helpers import field, run_echo, status_message, wait_job_state


async def test_cut_text_ends_with_an_ellipsis_and_the_queue_position_is_shown_once(emu, harness, users,
                                                                                  echo_options):
    # paced so the card can show the queue within Discord's edit rate limit
    echo_options.update(limits=ProviderLimits(poll_min=0.4, poll_max=0.5, deadlines={"echo": 60}), running_polls=3)
    harness.settings_overrides["status_edit_seconds"] = 0.9
    await harness.restart()
    alice = users["alice"]
    long_text = "a very long request " * 20 + "THE END"
    job_id = await run_echo(emu, alice, long_text)
    card = await status_message(emu, job_id)
    await wait_job_state(harness, job_id, JobState.DONE, timeout=20)
    ix = await emu.slash("jobs list", user=alice)
    listing = (await ix.wait_reply()).content
    [line] = [ln for ln in listing.splitlines() if job_id in ln]
    assert line.endswith("…") and "THE END" not in line
    versions = [*emu.message(card.id).edits, emu.message(card.id)]
    for version in versions:
        shown = " ".join(f"{f['name']} {f['value']}" for e in version.embeds for f in e.get("fields", []))
        assert shown.count("position") <= 1 and "Queue #" not in shown
    assert any("Queued (position" in (field(v, "State") or "") for v in versions)
