"""Fitting results into Discord messages: per-file limit, 10 files, request cap, fallbacks."""

from __future__ import annotations

from bot.delivery import plan_messages, progress_bar, result_nonce, status_embed
from bot.models import Artifact, Job, JobState

MIB = 1024 * 1024


def art(tmp_path, name, size, **kw) -> Artifact:
    path = tmp_path / name
    with path.open("wb") as fh:
        fh.truncate(size)
    return Artifact(path=path, filename=name, **kw)


def test_small_files_share_a_message_up_to_ten(tmp_path):
    arts = [art(tmp_path, f"layer{i}.webm", 1000) for i in range(13)]
    plans = plan_messages(arts, 10 * MIB)
    assert [len(p.files) for p in plans] == [10, 3]
    assert [a.filename for p in plans for a in p.files] == [a.filename for a in arts]  # order kept


def test_request_cap_splits_messages(tmp_path):
    arts = [art(tmp_path, f"v{i}.mp4", 9 * MIB) for i in range(3)]
    plans = plan_messages(arts, 10 * MIB)
    assert [len(p.files) for p in plans] == [2, 1]


def test_too_big_files_become_buttons_links_notes_or_vanish_when_optional(tmp_path):
    arts = [art(tmp_path, "scene.spz", 2 * MIB),
            art(tmp_path, "scene.ply", 30 * MIB, optional=True, download_key="ply"),
            art(tmp_path, "render.mp4", 12 * MIB, link="https://cdn.example/render.mp4"),
            art(tmp_path, "extra.ply", 30 * MIB, optional=True),
            art(tmp_path, "huge.bin", 40 * MIB)]
    (plan,) = plan_messages(arts, 10 * MIB)
    assert [a.filename for a in plan.files] == ["scene.spz"]
    assert plan.downloads == [("Download scene.ply", "ply")]
    text = "\n".join(plan.notes)
    assert "<https://cdn.example/render.mp4>" in text
    assert "huge.bin" in text and "extra.ply" not in text


def test_nonce_is_stable_short_and_distinct():
    job = Job(id="abcd2345", provider="p", kind="k", state=JobState.DELIVERING, owner_id=1, channel_id=2,
              guild_id=3, summary="s")
    assert result_nonce(job, 0) == result_nonce(job, 0)
    assert result_nonce(job, 0) != result_nonce(job, 1)
    assert len(result_nonce(job, 0)) <= 25


def test_status_card_shows_progress_queue_eta_owner():
    from datetime import UTC, datetime
    job = Job(id="abcd2345", provider="p", kind="splat", state=JobState.RUNNING, owner_id=77, channel_id=2,
              guild_id=3, summary="my scan", progress=0.5, queue_position=3,
              eta=datetime(2030, 1, 1, tzinfo=UTC), detail="Generating 3D scene")
    card = status_embed(job, "vid2scene").to_dict()
    values = {f["name"]: f["value"] for f in card["fields"]}
    assert values["Progress"] == progress_bar(0.5) and "50%" in values["Progress"]
    assert "Queue" not in values and values["State"].count("position 3") == 1  # the position, once
    assert values["ETA"] == "<t:1893456000:R>"
    assert values["Owner"] == "<@77>"
    assert "Generating 3D scene" in values["State"]
    assert card["footer"]["text"] == "Job abcd2345"


def test_a_result_left_at_the_provider_is_offered_by_button_never_attached(tmp_path):
    remote = Artifact(path=tmp_path / "never-downloaded.ply", filename="scene.ply", optional=True,
                      download_key="ply", remote_size=5)  # small, but there is no local file to attach
    (plan,) = plan_messages([remote], 10 * MIB)
    assert plan.files == [] and plan.downloads == [("Download scene.ply", "ply")]
    assert Artifact.from_json(remote.to_json()) == remote


def test_many_links_go_to_further_messages_rather_than_being_cut(tmp_path):
    link = "https://cdn.example/" + "x" * 180 + "?Signature=abc"
    arts = [art(tmp_path, f"big{i}.mp4", 11 * MIB, link=f"{link}&n={i}") for i in range(12)]
    plans = plan_messages(arts, 10 * MIB)
    assert len(plans) > 1
    notes = [n for p in plans for n in p.notes]
    assert len(notes) == 12 and all(n.endswith(">") for n in notes)  # every link whole
    assert all(sum(len(n) + 1 for n in p.notes) <= 1500 for p in plans)


def test_a_stored_plan_names_the_same_files_after_they_are_fetched_again(tmp_path):
    import json

    from bot.delivery import MessagePlan

    arts = [art(tmp_path, f"layer{i}.webm", 1000) for i in range(11)] + [
        art(tmp_path, "big.ply", 30 * MIB, download_key="ply")]
    stored = json.loads(json.dumps([p.to_json(tuple(arts)) for p in plan_messages(arts, 10 * MIB)]))
    again = tmp_path / "again"
    again.mkdir()
    refetched = tuple(art(again, a.filename, 10, download_key=a.download_key) for a in arts)  # new paths
    plans = [MessagePlan.from_json(d, refetched) for d in stored]
    assert [[a.path for a in p.files] for p in plans] == [[a.path for a in refetched[:10]], [refetched[10].path]]
    assert plans[0].downloads == [("Download big.ply", "ply")]
    lost = [MessagePlan.from_json(d, refetched[:3]) for d in stored]
    assert lost[1].files == [] and lost[1].notes == ["layer10.webm is no longer available."]


def test_a_planned_file_now_left_at_the_provider_is_offered_by_button(tmp_path):
    """The plan attached a file; the worker that took the job over fetched it again as a link
    only (no local copy): it is offered by its Download button instead of failing the delivery."""
    import json

    from bot.delivery import MessagePlan

    arts = (art(tmp_path, "scene.spz", 1000, download_key="spz"),)
    stored = json.loads(json.dumps([p.to_json(arts) for p in plan_messages(arts, 10 * MIB)]))
    remote = (Artifact(path=tmp_path / "elsewhere" / "scene.spz", filename="scene.spz", download_key="spz",
                       remote_size=1000),)
    (plan,) = [MessagePlan.from_json(d, remote) for d in stored]
    assert plan.files == [] and plan.downloads == [("Download scene.spz", "spz")]
