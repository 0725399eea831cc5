"""Fixtures of the firmware tests (helpers live in ``_fw_world``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.firmware._fw_world import World, build_world


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("fwtemplate"))


@pytest.fixture
def world(_template: World, tmp_path: Path) -> World:
    """A fresh copy of the template (copying is cheaper than signing anew and keeps
    tests independent)."""
    shutil.copytree(_template.repo, tmp_path / "repo")
    shutil.copytree(_template.device, tmp_path / "device")
    return World(tmp_path / "repo", tmp_path / "device", _template.v1, _template.v2,
                 _template.t1, _template.t2)


def _pg_url() -> str:
    """``QPUOS_TEST_PG_URL`` after checking the server answers. Unset: a skip saying how
    to get one; set but not answering: a failure (CI sets it, so it must work there)."""
    import os

    url = os.environ.get("QPUOS_TEST_PG_URL")
    if not url:
        pytest.skip("QPUOS_TEST_PG_URL is unset; `eval \"$(bash scripts/ci_postgres.sh)\"` "
                    "starts a PostgreSQL on loopback and sets it")
    import psycopg  # a dependency of qpuos
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at QPUOS_TEST_PG_URL does not answer: {exc}")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def registry_where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a fresh, empty registry lives: a SQLite path, or a PostgreSQL URL whose
    ``search_path`` is a schema of its own (dropped afterwards), so tests and xdist
    workers never see each other's rows."""
    if request.param == "sqlite":
        yield str(tmp_path / "fleet.db")
        return
    import uuid
    from urllib.parse import quote

    import psycopg

    url = _pg_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")
