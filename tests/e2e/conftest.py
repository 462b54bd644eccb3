from __future__ import annotations

import pytest

from sandbox.discord import DiscordEmulator
from sandbox.scenario import ScenarioSandbox
from sandbox.vid2scene import Vid2SceneSandbox
from tests.e2e.harness import BotHarness
from tests.support.echo import EchoProvider, EchoRemote
from tests.support.policy import sandbox_net


@pytest.fixture
async def emu():
    emulator = DiscordEmulator(ack_deadline=3.0)
    await emulator.start()
    emulator.point_discord_py()
    yield emulator
    emulator.unpatch()
    await emulator.stop()


@pytest.fixture
def remote() -> EchoRemote:
    return EchoRemote()


@pytest.fixture
def echo_options() -> dict:
    """Tests may change how the next EchoProvider instances behave."""
    return {}


@pytest.fixture
async def harness(emu, tmp_path, remote, echo_options):
    h = BotHarness(emu, tmp_path, lambda: {"echo": EchoProvider(remote, sandbox_net(emu), **echo_options)})
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
def users(emu) -> dict[str, int]:
    return {"alice": emu.add_user("alice"), "bob": emu.add_user("bob"),
            "mod": emu.add_user("mod", manage_guild=True)}


# quick vid2scene and Scenario sandboxes (a test module may define its own with other timings)
@pytest.fixture
async def v2s():
    service = Vid2SceneSandbox(queue_seconds=0.2, pickup_seconds=0.05, processing_seconds=0.2, training_seconds=0.6)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def scenario(tmp_path):
    sb = ScenarioSandbox(upload_validate_seconds=0.05, queue_seconds=0.1, warmup_seconds=0.05, run_seconds=0.3,
                         layer_seconds=0.5, layers_found=2, workdir=tmp_path / "scenario")
    await sb.start()
    yield sb
    await sb.stop()
