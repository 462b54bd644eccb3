"""Every operator error is a line or two naming the setting and what to do, with its exit code;
`run` refuses to start on whatever `check` fails."""

from __future__ import annotations

import pytest

from bot.preflight import CONFIG, REFUSED, STORAGE, UNREACHABLE
from tests.cli.conftest import closed_port, operator_folder, run_cli


def assert_operator_error(result, code: int, setting: str, *secrets: str) -> None:
    """One problem: the setting first, then what to do; at most a header line more."""
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert any(line.startswith(f"{setting}:") for line in lines), result.err
    assert len(lines) <= 3, result.err
    assert "Traceback" not in result.err and "Exception" not in result.err
    for secret in secrets:
        assert secret not in result.err + result.out


async def test_env_example_and_sandbox_lines_pass_check_and_sync(tmp_path, sandbox_lines):
    folder = operator_folder(tmp_path / "op", sandbox_lines)
    check = await run_cli("check", cwd=folder)
    assert check.code == 0, check
    for part in ("storage:", "discord:", "vid2scene:", "viggle:", "scenario:"):
        assert part in check.out
    assert sandbox_lines["DISCORD_TOKEN"] not in check.out + check.err
    sync = await run_cli("sync", cwd=folder)
    assert sync.code == 0, sync
    assert "jobs" in sync.out and "splat" in sync.out


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_refused_token_names_discord_token(tmp_path, sandbox_lines, command):
    lines = sandbox_lines | {"DISCORD_TOKEN": "MTIz.revoked.token-value"}
    result = await run_cli(command, cwd=operator_folder(tmp_path / "op", lines))
    assert_operator_error(result, REFUSED, "DISCORD_TOKEN", "MTIz.revoked.token-value")
    assert "LoginFailure" not in result.err


@pytest.mark.parametrize("command", ["check", "run"])
async def test_unreachable_discord_names_discord_api_url(tmp_path, command):
    port = closed_port()
    lines = {"DISCORD_TOKEN": "MTIz.some.token-value", "DISCORD_API_URL": f"http://127.0.0.1:{port}/api/v10",
             "DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{port}/gateway"}
    result = await run_cli(command, cwd=operator_folder(tmp_path / "op", lines))
    assert_operator_error(result, UNREACHABLE, "DISCORD_API_URL", "MTIz.some.token-value")
    assert "ClientConnectorError" not in result.err


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_wrong_provider_key_names_the_key(tmp_path, sandbox_lines, command):
    lines = sandbox_lines | {"VIGGLE_API_KEY": "sk-wrong-key-value"}
    result = await run_cli(command, cwd=operator_folder(tmp_path / "op", lines))
    assert_operator_error(result, REFUSED, "VIGGLE_API_KEY", "sk-wrong-key-value")


@pytest.mark.parametrize("command", ["check", "run"])
async def test_an_unreachable_provider_names_its_url(tmp_path, sandbox_lines, command):
    lines = sandbox_lines | {"VID2SCENE_BASE_URL": f"http://127.0.0.1:{closed_port()}/api/v1"}
    result = await run_cli(command, cwd=operator_folder(tmp_path / "op", lines))
    assert_operator_error(result, UNREACHABLE, "VID2SCENE_BASE_URL", sandbox_lines["VID2SCENE_API_KEY"])


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_malformed_url_is_caught_at_load(tmp_path, sandbox_lines, command):
    lines = sandbox_lines | {"SCENARIO_BASE_URL": "api.cloud.scenario.com/v1"}
    result = await run_cli(command, cwd=operator_folder(tmp_path / "op", lines))
    assert_operator_error(result, CONFIG, "SCENARIO_BASE_URL", sandbox_lines["SCENARIO_API_SECRET"])
    assert "api.cloud.scenario.com" not in result.err  # the value is never quoted


@pytest.mark.parametrize("command", ["check", "run", "sync"])
@pytest.mark.parametrize("setting", ["DATABASE_PATH", "SPOOL_DIR"])
async def test_storage_that_cannot_be_written_is_named(tmp_path, sandbox_lines, command, setting):
    folder = operator_folder(tmp_path / "op", sandbox_lines)
    (folder / "blocker").write_text("a file where a folder must go")
    where = "blocker/bot.db" if setting == "DATABASE_PATH" else "blocker/spool"
    result = await run_cli(command, cwd=folder, env={setting: where})
    assert_operator_error(result, STORAGE, setting)


async def test_a_missing_token_points_at_the_demo(tmp_path):
    result = await run_cli("run", cwd=operator_folder(tmp_path / "op", {}))
    assert_operator_error(result, CONFIG, "DISCORD_TOKEN")
    assert "python -m bot demo" in result.err


async def test_a_bad_number_names_the_variable_and_not_the_value(tmp_path):
    result = await run_cli("check", cwd=operator_folder(tmp_path / "op", {"MAX_JOBS_PER_USER": "lots"}))
    assert result.code == CONFIG and "MAX_JOBS_PER_USER" in result.err and "lots" not in result.err
    assert "Traceback" not in result.err


async def test_health_answers_only_healthy_or_not_as_docker_expects(tmp_path):
    result = await run_cli("health", cwd=operator_folder(tmp_path / "op", {"MAX_JOBS_PER_USER": "lots"}))
    assert result.code == 1 and "MAX_JOBS_PER_USER" in result.err
