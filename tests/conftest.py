"""Session-wide fixtures: a PostgreSQL server when its binaries are installed."""

from __future__ import annotations

import pytest

from tests.support.postgres import PostgresServer, missing_binaries


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL cluster for the whole run (skipped without the binaries)."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"PostgreSQL binaries not found ({', '.join(missing)}): install PostgreSQL 15 "
                    "(Debian: apt-get install postgresql) to run the PostgreSQL store tests")
    server = PostgresServer().start()
    yield server
    server.stop()
