"""The bot with the real vid2scene and Scenario clients against their sandboxes (the `v2s` and
`scenario` fixtures of tests/e2e/conftest.py), as the splat and layers e2e tests run it."""

from __future__ import annotations

import dataclasses
from typing import Any

from bot.config import ScenarioSettings, Vid2SceneSettings
from bot.providers.scenario import ScenarioProvider
from bot.providers.vid2scene import Vid2SceneProvider
from sandbox.scenario import ScenarioSandbox
from sandbox.vid2scene import Vid2SceneSandbox
from tests.e2e.harness import BotHarness
from tests.support.policy import sandbox_net


def splat_layers_harness(emu, tmp_path, v2s: Vid2SceneSandbox, scenario: ScenarioSandbox, *,
                         extensions: tuple[str, ...], **options: Any) -> BotHarness:
    """A bot polling both quickly (every 0.05–0.2 s); `options` are the bot's settings."""
    v_env, s_env = v2s.env_lines(), scenario.env_lines()
    v_section = Vid2SceneSettings(api_key=v_env["VID2SCENE_API_KEY"], base_url=v_env["VID2SCENE_BASE_URL"],
                                  poll_min_seconds=0.05, poll_max_seconds=0.2)
    s_section = ScenarioSettings(api_key=s_env["SCENARIO_API_KEY"], api_secret=s_env["SCENARIO_API_SECRET"],
                                 base_url=s_env["SCENARIO_BASE_URL"], poll_min_seconds=0.05, poll_max_seconds=0.2)

    def providers():
        layers = ScenarioProvider(s_section, sandbox_net(scenario, emu))
        layers.upload_poll_seconds = 0.05
        layers.limits = dataclasses.replace(layers.limits, reconcile_settle=0.5)
        return {"vid2scene": Vid2SceneProvider(v_section, sandbox_net(v2s, emu)), "scenario": layers}

    return BotHarness(emu, tmp_path, providers, extensions=extensions, **options)
