"""Shared test setup: loopback traffic never goes through a proxy; paths to the repository."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# The sendgrid client uses urllib, which honours HTTP(S)_PROXY even for 127.0.0.1.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"


@pytest.fixture
def repo() -> Path:
    """The repository root: itself a working newsletter folder."""
    return REPO


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's ~/.cache/digest."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for the session (tests/_postgres.py); skipped when not installed,
    unless DIGEST_REQUIRE_POSTGRES=1 (CI) makes that a failure."""
    from _postgres import find_bindir, running_cluster

    missing = "PostgreSQL's initdb (Debian package 'postgresql')" if find_bindir() is None else ""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing = missing or "psycopg (pip install 'digest[postgres]')"
    if missing:
        if os.environ.get("DIGEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"DIGEST_REQUIRE_POSTGRES=1 but {missing} is not installed")
        pytest.skip(f"ledger on PostgreSQL not tested: {missing} is not installed")
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's ledger lives: a SQLite file, then a fresh PostgreSQL database (one per test)."""
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite3"
    cluster = request.getfixturevalue("pg_cluster")
    return str(cluster.create_database(f"t_{uuid.uuid4().hex[:16]}"))
