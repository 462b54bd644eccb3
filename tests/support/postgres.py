"""A throwaway PostgreSQL server for the tests (started by .ci/start-postgres), and a fresh
schema per test so tests never see each other's rows."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("initdb", "pg_ctl", "postgres")


def missing_binaries() -> list[str]:
    """The server programs found neither on PATH nor where Debian keeps them (as .ci/start-postgres
    looks for them)."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: [int(x) for x in p.parent.name.split(".")
                                                                              if x.isdigit()])
    path = os.pathsep.join([os.environ.get("PATH", ""), *(str(p) for p in debian[-1:])])
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


class PostgresServer:
    """`start()` runs .ci/start-postgres; `stop()` stops that server by its pid and removes it."""

    def __init__(self) -> None:
        self.url = ""
        self.pgdata: Path | None = None

    def start(self) -> PostgresServer:
        out = subprocess.run([str(REPO / ".ci" / "start-postgres")], check=True, capture_output=True, text=True,
                             timeout=120).stdout
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.url, self.pgdata = values["DATABASE_URL"], Path(values["PGDATA"])
        return self

    def stop(self) -> None:
        if self.pgdata is None:
            return
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGINT)  # "fast" shutdown of the server this fixture started
            except ProcessLookupError:
                pass
            for _ in range(100):
                if not pid_file.exists():
                    break
                subprocess.run(["sleep", "0.1"], check=False)
        shutil.rmtree(self.pgdata.parent, ignore_errors=True)
        self.pgdata = None

    async def fresh_schema_url(self) -> tuple[str, str]:
        """A new empty schema, and a URL whose connections use it (`options=-csearch_path=...`)."""
        import asyncpg

        schema = f"t_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
        finally:
            await conn.close()
        return schema, f"{self.url}?options=-csearch_path%3D{schema}"
