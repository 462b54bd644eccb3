"""vid2scene's status words and error bodies, every documented form and the odd corners."""

from __future__ import annotations

import pytest

from bot.models import RemotePhase
from bot.providers.vid2scene import precheck_attachment, scene_filename
from bot.providers.vid2scene_status import error_message, parse_job, parse_percent, strip_marker


@pytest.mark.parametrize("raw, position", [
    ("Queued - position: 3", 3), ("Queued - position: 1", 1), ("queued", None), ("Queued", None),
    ("QUEUED", None), ("deferred", None), ("scheduled", None), ("Queued - position:12", 12),
])
def test_queued_forms_give_queue_position(raw, position):
    status = parse_job({"status": raw, "percent_complete": None})
    assert status.phase is RemotePhase.QUEUED
    assert status.queue_position == position
    assert status.raw_status == raw


@pytest.mark.parametrize("value, expected", [
    (None, None), (37.5, 0.375), (75, 0.75), ("12.5", 0.125), (100.0, 1.0), (140, 1.0), (-3, 0.0),
    ("n/a", None), (float("nan"), None), (True, None),
])
def test_percent_complete_is_a_float_or_null(value, expected):
    assert parse_percent(value) == expected


def test_generating_reports_progress_and_processing_is_running():
    gen = parse_job({"status": "Generating 3D scene", "percent_complete": 62.5})
    assert gen.phase is RemotePhase.RUNNING and gen.progress == 0.625 and "Training" in gen.detail
    proc = parse_job({"status": "Processing video", "percent_complete": None})
    assert proc.phase is RemotePhase.RUNNING and proc.progress is None and "Processing" in proc.detail
    assert parse_job({"status": "processing"}).phase is RemotePhase.RUNNING


def test_finished_needs_files_and_failed_and_not_found_are_final():
    done = parse_job({"status": "Finished", "percent_complete": 100, "has_ply": True, "has_spz": True,
                      "title": "Mug [vb:abc123]"})
    assert done.phase is RemotePhase.SUCCEEDED and done.data["has_spz"] and done.data["title"] == "Mug [vb:abc123]"
    assert parse_job({"status": "Failed"}).phase is RemotePhase.FAILED
    assert "could not reconstruct" in parse_job({"status": "Failed"}).error
    assert parse_job({"status": "Not found"}).phase is RemotePhase.FAILED
    # files present win over the words (the server's own rule 1)
    assert parse_job({"status": "Not found", "has_spz": True}).phase is RemotePhase.SUCCEEDED
    # lowercase RQ "finished" without files: it produced nothing
    assert parse_job({"status": "finished", "has_ply": False, "has_spz": False}).phase is RemotePhase.FAILED
    assert parse_job({"status": "canceled"}).phase is RemotePhase.CANCELLED
    assert parse_job({"status": "stopped"}).phase is RemotePhase.CANCELLED


def test_unknown_status_keeps_polling_without_leaking_urls():
    status = parse_job({"status": "Warming up https://x.blob.core.windows.net/a?sig=SECRET"})
    assert status.phase is RemotePhase.RUNNING
    assert "SECRET" not in (status.detail or "")


@pytest.mark.parametrize("body, expected", [
    ({"error": "Invalid API key"}, "Invalid API key"),
    ({"detail": "API key revoked"}, "API key revoked"),
    ({"success": False, "error_message": "Blob not found. Please verify the upload."},
     "Blob not found. Please verify the upload."),
    ({"camera_data": ["Invalid camera_data: bad"]}, "camera_data: Invalid camera_data: bad"),
    ('<?xml version="1.0"?><Error><Code>AuthenticationFailed</Code><Message>x</Message></Error>',
     "storage error AuthenticationFailed"),
    ("<html><body>Not Found</body></html>", "vid2scene answered HTTP 404"),
    (None, "vid2scene answered HTTP 404"),
])
def test_error_bodies_of_every_family_become_safe_text(body, expected):
    assert error_message(body, 404) == expected


def test_error_text_never_carries_a_signed_url():
    text = error_message({"error": "see https://acct.blob.core.windows.net/v/x.mp4?sv=1&sig=abc"}, 400)
    assert "sig=abc" not in text and "blob.core" not in text


def test_marker_is_stripped_from_titles_and_filenames():
    assert strip_marker("My mug [vb:k3j2h1]") == "My mug"
    assert scene_filename("My mug! [vb:k3j2h1]") == "my-mug"
    assert scene_filename("[vb:k3j2h1]") == "scene"


@pytest.mark.parametrize("name, size, ctype, fragment", [
    ("clip.mp4", 5_000, "video/mp4", None),
    ("clip.MOV", 5_000, "video/quicktime", None),
    ("clip.bin", 5_000, "video/webm", None),
    ("photo.png", 5_000, "image/png", "not a video"),
    ("notes.txt", 5_000, None, "does not look like a video"),
    ("huge.mp4", (1 << 30) + 1, "video/mp4", "at most 1,024 MB"),
    ("empty.mp4", 0, "video/mp4", "empty"),
])
def test_attachment_precheck(name, size, ctype, fragment):
    problem = precheck_attachment(name, size, ctype)
    if fragment is None:
        assert problem is None
    else:
        assert problem and fragment in problem
