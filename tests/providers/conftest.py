"""Fixtures shared by the provider client tests."""

from __future__ import annotations

import pytest

from tests.support.file_host import FileHost


@pytest.fixture
async def discord_cdn(tmp_path):
    """A stand-in for Discord's attachment CDN, serving files put in its `folder`."""
    folder = tmp_path / "discord"
    folder.mkdir()
    server = await FileHost(folder).start()
    yield server
    await server.stop()
