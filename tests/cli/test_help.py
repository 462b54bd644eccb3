"""The CLI explains itself: what each command does and what it reads."""

from __future__ import annotations

import pytest

from tests.cli.conftest import run_cli


async def test_top_level_help_lists_commands_and_exit_codes(tmp_path):
    result = await run_cli("--help", cwd=tmp_path)
    assert result.code == 0
    for word in ("run", "check", "sync", "health", "demo", "exit codes", ".env"):
        assert word in result.out


@pytest.mark.parametrize("command", ["run", "check", "sync", "health", "demo"])
async def test_each_command_says_what_it_does_and_reads(tmp_path, command):
    result = await run_cli(command, "--help", cwd=tmp_path)
    assert result.code == 0
    assert "Reads" in result.out
    assert len(result.out.splitlines()) > 6  # more than a usage line


async def test_version(tmp_path):
    from importlib.metadata import version

    result = await run_cli("--version", cwd=tmp_path)
    assert result.code == 0 and version("videobot") in result.out
