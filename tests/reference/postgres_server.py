"""A throw-away PostgreSQL server for the saga log's tests: initdb in a temporary folder, served
on a Unix socket only, stopped at the end. Skips when PostgreSQL is not installed, saying how to
get it; fails instead with ``REQUIRE_POSTGRES=1`` (CI installs it)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRE_POSTGRES = "REQUIRE_POSTGRES"


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    # Debian keeps the server's programs out of PATH, one folder per major version.
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _unavailable(problem: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES}=1, but {problem}", pytrace=False)
    pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its libpq connection string."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("PostgreSQL is not installed (no pg_ctl and initdb on PATH or under /usr/lib/postgresql); apt-get install postgresql")
    assert bin_dir is not None
    home = Path(tempfile.mkdtemp(prefix="sv-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        # The server refuses to run as root: as the postgres user Debian's package makes.
        try:
            shutil.chown(home, "postgres")
        except (LookupError, PermissionError) as exc:
            shutil.rmtree(home, ignore_errors=True)
            _unavailable(f"PostgreSQL cannot run as root and there is no usable 'postgres' user ({exc})")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", _free_port()
    try:
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-c listen_addresses='' -k {home} -p {port} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = (home / "log").read_text(errors="replace") if (home / "log").exists() else ""
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')}\n{log}", pytrace=False)
    try:
        yield f"host={home} port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)
