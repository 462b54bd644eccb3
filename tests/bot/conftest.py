"""Fixtures of the store's tests: each runs on both backends."""

from __future__ import annotations

import pytest

from bot.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
async def reopen(request, tmp_path):
    """Opens the store of this test (another connection, as another process would): a SQLite file,
    or a fresh schema on the session's PostgreSQL server."""
    if request.param == "sqlite":
        location = tmp_path / "bot.db"
    else:
        _schema, location = await request.getfixturevalue("postgres_server").fresh_schema_url()
    opened = []

    async def open_it():
        opened.append(await open_store(location))
        return opened[-1]

    yield open_it
    for s in opened:
        await s.close()
