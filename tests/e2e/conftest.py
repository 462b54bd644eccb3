from __future__ import annotations

import pytest

from sandbox.discord import DiscordEmulator
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
