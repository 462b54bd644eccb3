"""What the image does with an operator's `--env-file`, read from the Dockerfile as Docker would
apply it (no daemon is needed to check where the data lands and who owns it)."""

from __future__ import annotations

import re
import shlex

from tests.cli.conftest import REPO


def dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)]


def image_env() -> dict[str, str]:
    env = {}
    for op, arg in dockerfile():
        if op == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(arg))
    return env


def env_file(text: str) -> dict[str, str]:
    """`docker run --env-file`: NAME=VALUE lines, comments and blank lines skipped, no quoting."""
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_data_stays_in_the_volume_with_env_example_as_the_env_file():
    env = image_env() | env_file((REPO / ".env.example").read_text())
    workdir = [arg for op, arg in dockerfile() if op == "WORKDIR"][-1]
    assert workdir == "/data" and ("VOLUME", '["/data"]') in dockerfile()
    for name in ("DATABASE_PATH", "SPOOL_DIR"):
        value = env[name]
        assert value.startswith("/data/") or not value.startswith("/"), (name, value)


def test_the_image_runs_as_its_own_user_who_owns_data_and_checks_health():
    ops = dockerfile()
    user = [arg for op, arg in ops if op == "USER"]
    assert user and user[-1] not in ("root", "0")
    run = " ".join(arg for op, arg in ops if op == "RUN")
    assert f"chown {user[-1]}" in run and "/data" in run
    health = [arg for op, arg in ops if op == "HEALTHCHECK"]
    assert health and '"bot", "health"' in health[0]


def test_compose_publishes_the_console_and_points_the_bot_at_the_sandbox():
    text = (REPO / "compose.yaml").read_text()
    assert '"-m", "sandbox"' in text and "--env-file" in text and "--console-port" in text
    assert re.search(r'^\s+- "127\.0\.0\.1:(\d+):\1"', text, re.M)
    assert 'network_mode: "service:sandbox"' in text and "python -m bot sync" in text
