"""Settings: names from the environment, secrets never echoed, providers switched off cleanly."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, isolated_settings, load_settings
from bot.logs import RedactSecrets


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("DISCORD_TOKEN", "VIGGLE_API_KEY", "VID2SCENE_API_KEY", "SCENARIO_API_KEY", "SCENARIO_API_SECRET",
                 "UPLOAD_LIMIT_MB", "DATABASE_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_leave_every_provider_off():
    s = load_settings()
    assert s.upload_limit_bytes == 10 * 1024 * 1024
    assert str(s.database_path) == "data/bot.db"
    assert not (s.viggle.enabled or s.vid2scene.enabled or s.scenario.enabled)


def test_env_and_dotenv_are_read(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("VID2SCENE_API_KEY=v2s-key\nSCENARIO_API_KEY=k\nUPLOAD_LIMIT_MB=25\n")
    monkeypatch.setenv("VIGGLE_API_KEY", "sk-live-1")
    monkeypatch.setenv("VIGGLE_DEADLINE_MINUTES", '{"render": 5}')
    s = load_settings()
    assert s.viggle.enabled and s.vid2scene.enabled
    assert not s.scenario.enabled  # the secret half is missing
    assert s.upload_limit_bytes == 25 * 1024 * 1024
    assert s.viggle.deadline_minutes["render"] == 5
    assert s.viggle.deadline_minutes["character"] == 20  # the other kinds keep their defaults


def test_bad_values_name_the_variable_and_never_the_secret(monkeypatch):
    monkeypatch.setenv("VIGGLE_API_KEY", "sk-do-not-print-me")
    monkeypatch.setenv("VIGGLE_POLL_MIN_SECONDS", "often")
    monkeypatch.setenv("VID2SCENE_POLL_MIN_SECONDS", "90")
    monkeypatch.setenv("VID2SCENE_POLL_MAX_SECONDS", "30")
    monkeypatch.setenv("MAX_JOBS_PER_USER", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert "VIGGLE_POLL_MIN_SECONDS" in text and "MAX_JOBS_PER_USER" in text
    # a rule between two variables names both variables, not the section
    assert "VID2SCENE_POLL_MAX_SECONDS must be at least VID2SCENE_POLL_MIN_SECONDS" in text
    assert not any(line.strip().startswith("VID2SCENE:") for line in text.splitlines())
    assert "sk-do-not-print-me" not in text and "often" not in text


def test_json_settings_that_are_not_json_name_the_variable(monkeypatch):
    monkeypatch.setenv("VIGGLE_DEADLINE_MINUTES", "{render: soon")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "VIGGLE_DEADLINE_MINUTES: not valid JSON" in str(caught.value)


def test_log_records_are_masked(caplog):
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactSecrets(["sk-secret-value"]))
    with caplog.at_level(logging.INFO):
        logger.info("calling with key %s", "sk-secret-value")
    assert "sk-secret-value" not in caplog.text and "***" in caplog.text


def test_env_example_loads_as_it_is(tmp_path):
    """`cp .env.example .env` gives a working configuration: `NAME=` means "not set"."""
    shutil.copy(Path(__file__).resolve().parents[2] / ".env.example", tmp_path / ".env")
    s = load_settings()
    assert s.discord_token is None and s.discord_dev_guild_id is None
    assert s.discord_api_url is None and s.discord_gateway_url is None
    assert not (s.viggle.enabled or s.vid2scene.enabled or s.scenario.enabled)
    assert s.viggle.base_url == "https://apis.viggle.ai"
    assert s.vid2scene.deadline_minutes["splat"] == 480


@pytest.mark.parametrize(("name", "value"), [
    ("VIGGLE_BASE_URL", "apis.viggle.ai"), ("VID2SCENE_BASE_URL", "ftp://vid2scene.com/api/v1"),
    ("SCENARIO_BASE_URL", "https:///v1"), ("DISCORD_API_URL", "discord.com/api"),
    ("DISCORD_GATEWAY_URL", "https://gateway.discord.gg")])
def test_malformed_urls_are_refused_at_load_by_name(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith(f"{name}: not a valid URL")
    assert value not in str(caught.value)


def test_isolated_settings_ignore_the_environment_and_env_file(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("UPLOAD_LIMIT_MB=lots\nVIGGLE_API_KEY=sk-operator\n")
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError):
        load_settings()
    with isolated_settings():
        s = Settings(discord_token="t")
    assert s.log_level == "INFO" and s.upload_limit_mb == 10 and not s.viggle.enabled


def test_cooldowns_are_set_per_command_over_the_defaults(monkeypatch):
    from bot.config import DEFAULT_COOLDOWNS

    monkeypatch.setenv("COOLDOWNS", '{"viggle render": 90, "Splat  List": 0}')
    s = load_settings()
    assert s.cooldowns["viggle render"] == 90 and s.cooldowns["splat list"] == 0
    assert s.cooldowns["viggle mix"] == DEFAULT_COOLDOWNS["viggle mix"]
    monkeypatch.setenv("COOLDOWNS", '{"*": 0, "layers": 45}')  # every command at once, then exceptions
    s = load_settings()
    assert s.cooldowns["layers"] == 45 and s.cooldowns["viggle render"] == 0 and s.cooldowns["*"] == 0


@pytest.mark.parametrize("value", ['{"viggle render": -1}', "not json"])
def test_bad_cooldowns_name_the_variable(monkeypatch, value):
    monkeypatch.setenv("COOLDOWNS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "COOLDOWNS" in str(caught.value)


@pytest.mark.parametrize(("count", "ids", "words"), [
    ("4", "[0, 4]", "SHARD_IDS: each id must be from 0 to SHARD_COUNT - 1 (3)"),
    (None, "[0]", "SHARD_IDS: needs SHARD_COUNT"),
    ("4", "[1, 1]", "SHARD_IDS: each shard id only once"),
    ("4", "[]", "SHARD_IDS: give at least one shard id"),
    ("0", None, "SHARD_COUNT:"),
])
def test_shard_ids_must_lie_within_shard_count(monkeypatch, count, ids, words):
    for name, value in (("SHARD_COUNT", count), ("SHARD_IDS", ids)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert words in str(caught.value)


def test_shards_split_across_processes(monkeypatch):
    monkeypatch.setenv("SHARD_COUNT", "4")
    monkeypatch.setenv("SHARD_IDS", "[2, 3]")
    s = load_settings()
    assert (s.shard_count, s.shard_ids) == (4, [2, 3])
    monkeypatch.delenv("SHARD_IDS")
    assert load_settings().shard_ids is None  # every shard in this one process


def test_a_lost_gateway_connection_is_one_warning_line_and_a_bug_keeps_its_traceback(capsys):
    """discord.py logs each reconnect with a traceback at ERROR; the operator gets one line."""
    from bot.logs import secret_values, setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", secret_values(Settings(discord_token="MTIz.tok.en")))
        discord_log = logging.getLogger("discord.client")
        try:
            raise ConnectionResetError(104, "Connection reset by peer (token MTIz.tok.en)")
        except ConnectionResetError:
            discord_log.exception("Attempting a reconnect in %.2fs", 4.25)
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "WARNING" in lines[0] and "Attempting a reconnect in 4.25s" in lines[0]
        assert "connection lost: ConnectionResetError" in lines[0] and "MTIz.tok.en" not in lines[0]
        try:
            raise KeyError("guild")  # not the network: a bug, told in full
        except KeyError:
            discord_log.exception("Attempting a reconnect in %.2fs", 1.0)
        err = capsys.readouterr().err
        assert "ERROR" in err and "Traceback" in err and "KeyError" in err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
