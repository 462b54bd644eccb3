"""The result card and the plain words users read: built from a job as the store holds it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.cards import preview_file, ready_words, shorten
from bot.costs import ESTIMATE_KEY, amount_words, settled_amount, viggle_estimate
from bot.delivery import status_embed
from bot.models import Artifact, Job, JobState, utcnow
from bot.providers import phrases
from bot.providers.viggle_wire import render_status


def done_job(**over) -> Job:
    start = utcnow() - timedelta(minutes=2, seconds=5)
    base = dict(id="abcd2345", provider="scenario", kind="layers", state=JobState.DONE, owner_id=7, channel_id=2,
                guild_id=3, summary="Layers (up to 3) of dance.mp4: " + "the dancer, " * 60, created_at=start,
                finished_at=start + timedelta(minutes=2, seconds=5), remote_id="job_1",
                artifacts=(Artifact(Path("layers-preview.png"), "layers-preview.png"),
                           Artifact(Path("layer-00.webm"), "layer-00.webm")),
                result_message_ids=(555,), preview_url="https://cdn.discordapp.com/a/layers-preview.png",
                params={ESTIMATE_KEY: {"amount": 35.0, "basis": "quote"}},
                provider_data={"cost": 35, "_status": {"cu_cost": 30}})
    base.update(over)
    return Job(**base)


def test_the_final_card_is_the_result_card():
    card = status_embed(done_job(), "Scenario").to_dict()
    values = {f["name"]: f["value"] for f in card["fields"]}
    assert values["State"] == "Done in 2 min 5 s"
    assert values["Cost"] == "30 creative units (estimated 35 creative units)"  # the actual charge, recorded
    assert "https://discord.com/channels/3/2/555" in values["Files"] and "layer-00.webm" in values["Files"]
    assert card["image"]["url"] == "https://cdn.discordapp.com/a/layers-preview.png"
    assert card["description"].endswith("…") and len(card["description"]) <= 300


def test_grammar_and_ellipsis():
    assert ready_words("Scenario", "layers") == "your Scenario layers are ready"
    assert ready_words("Viggle", "render") == "your Viggle render is ready"
    assert ready_words("vid2scene", "splat") == "your vid2scene 3D scene is ready"
    assert shorten("a" * 10, 5) == "aaaa…" and shorten("short", 5) == "short"


def test_the_turntable_is_preferred_as_preview():
    arts = [Artifact(Path("s.spz"), "s.spz"), Artifact(Path("preview.jpg"), "preview.jpg"),
            Artifact(Path("turntable.gif"), "turntable.gif")]
    assert preview_file(arts).filename == "turntable.gif"
    assert preview_file(arts[:2]).filename == "preview.jpg"
    assert preview_file(arts[:1]) is None


def test_every_viggle_checkpoint_and_status_has_plain_words():
    for checkpoint in ("ref_done", "dri_done", "bg_done", "render_done"):
        words = render_status({"status": "processing", "checkpoint": checkpoint, "progress_pct": 40}).detail
        assert words == phrases.VIGGLE_CHECKPOINT[checkpoint] and "_" not in words
    for status in ("queued", "processing", "rendering", "merging", "something-new"):
        words = render_status({"status": status}).detail
        assert words and "_" not in words and status not in words.lower().split()


def test_costs_in_the_providers_units():
    assert viggle_estimate("render", seconds=6.5, fast=True).amount == 13
    assert viggle_estimate("character").amount == 1
    assert viggle_estimate("mix").amount is None
    assert viggle_estimate("scene").words() == "nothing (Viggle lists preparing a scene as free)"
    assert viggle_estimate("character").words() == "about 1 credit (1 credit per character)"
    assert amount_words("viggle", 1) == "1 credit" and amount_words("scenario", 50) == "50 creative units"
    never_sent = done_job(state=JobState.FAILED, remote_id=None)
    assert settled_amount(never_sent) == 0.0
    assert settled_amount(done_job()) == 30
    assert settled_amount(done_job(state=JobState.CANCELLED)) == 0.0


def test_a_failed_card_says_nothing_was_charged_when_nothing_was_sent():
    card = status_embed(done_job(state=JobState.FAILED, remote_id=None, last_error="Bad video"), "Scenario")
    values = {f["name"]: f["value"] for f in card.to_dict()["fields"]}
    assert values["Cost"] == "nothing was charged" and values["Reason"] == "Bad video"


def test_every_provider_status_reads_as_plain_words():
    from bot.providers.scenario import ScenarioProvider  # noqa: F401  (the table it uses)
    from bot.providers.vid2scene_status import parse_job
    from bot.providers.viggle_wire import object_status

    for status in ("pending", "queued", "warming-up", "in-progress", "finalizing"):
        assert phrases.scenario(status)[0].isupper() and "-" not in phrases.scenario(status)
    for status in ("pending", "processing"):
        words = object_status({"status": status}, "character").detail
        assert "character" in words and status not in words
    for raw in ("Queued", "Queued - position 3", "Processing video", "Generating 3D scene"):
        words = parse_job({"status": raw}).detail
        assert words and words[0].isupper() and words != raw


def test_elapsed_time_reads_naturally():
    from datetime import timedelta

    from bot.cards import elapsed_words
    assert elapsed_words(timedelta(seconds=0.4)) == "under a second"
    assert elapsed_words(timedelta(seconds=1.6)) == "2 s"
    assert elapsed_words(timedelta(seconds=125)) == "2 min 5 s"
    assert elapsed_words(timedelta(minutes=60)) == "1 h 0 min"
