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


#: the longest tests start first, so the run does not wait on one of them started last
LONG_FIRST = ("tests/e2e/test_crash_kill.py", "tests/e2e/test_workers_kill_e2e.py", "tests/e2e/test_workers_e2e.py",
              "tests/e2e/test_console_e2e.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))
