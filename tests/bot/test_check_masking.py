"""`python -m bot check` against a Scenario sandbox whose refusal quotes the bot's Basic auth
header and key: the operator's terminal shows the words, never the secrets."""

from __future__ import annotations

import base64

from bot.config import ScenarioSettings, Settings
from bot.preflight import REFUSED, preflight
from sandbox.scenario import ScenarioSandbox


async def test_check_masks_every_form_of_the_key_pair(tmp_path, capsys):
    sandbox = ScenarioSandbox(workdir=tmp_path / "scenario")
    await sandbox.start()
    try:
        basic = base64.b64encode(f"{sandbox.api_key}:{sandbox.api_secret}".encode()).decode()
        sandbox.faults.add("GET", r"^/v1/jobs", status=403, times=None,
                           body={"reason": f"Authorization Basic {basic} (key {sandbox.api_key}, secret "
                                           f"{sandbox.api_secret}) has no access to this team"})
        env = sandbox.env_lines()
        settings = Settings(database_path=tmp_path / "bot.db", scenario=ScenarioSettings(
            api_key=env["SCENARIO_API_KEY"], api_secret=env["SCENARIO_API_SECRET"],
            base_url=env["SCENARIO_BASE_URL"], allowed_hosts=env["SCENARIO_ALLOWED_HOSTS"]))
        problems = await preflight(settings, lambda name, detail: print(f"{name}: {detail}"))
    finally:
        await sandbox.stop()
    out = capsys.readouterr().out + "\n".join(map(str, problems))
    problem = next(p for p in problems if p.setting.startswith("SCENARIO_API_KEY"))
    assert problem.code == REFUSED
    assert "has no access to this team" in str(problem) and "***" in str(problem)
    for secret in (basic, sandbox.api_key, sandbox.api_secret):
        assert secret not in out
    assert len(sandbox.requests_to(r"^/v1/jobs", "GET")) >= 1
