"""The fleet registry on both backends (SQLite, and PostgreSQL when
``QPUOS_TEST_PG_URL`` names one): rows, targets, and concurrent writers losing nothing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from qpuos.errors import ClosedResourceError, RegistryError
from qpuos.firmware.fleet import Registry, SqliteRegistry, open_registry


def test_rows_follow_check_ins_reports_and_targets(registry_where: str) -> None:
    with open_registry(registry_where) as reg:
        assert reg.get("a") is None
        reg.seen("a", version="1.0")
        reg.seen("b", version="1.0")
        assert reg.set_target("1.1") == 2
        assert reg.set_target("1.2", devices=["c"]) == 1
        rec = reg.report("a", version="1.1", result="updated")
        assert (rec.current_version, rec.target_version, rec.last_result, rec.reports) == \
            ("1.1", "1.1", "updated", 1)
        assert [(r.device_id, r.current_version, r.target_version)
                for r in reg.devices()] == [("a", "1.1", "1.1"), ("b", "1.0", "1.1"),
                                            ("c", None, "1.2")]
        newcomer = reg.seen("d", version="1.0")  # gets the fleet-wide target
        assert newcomer.target_version == "1.1"
        typed: Registry = reg
        assert typed.get("b") is not None
    reg.close()
    with pytest.raises(ClosedResourceError, match=r"is closed"):
        reg.get("a")


def test_the_backend_follows_the_argument(registry_where: str) -> None:
    with open_registry(registry_where) as reg:
        want = "PostgresRegistry" if registry_where.startswith("postgresql://") \
            else "SqliteRegistry"
        assert type(reg).__name__ == want


def test_an_unreachable_postgres_is_a_registry_error() -> None:
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed")
    with pytest.raises(RegistryError, match=r"cannot open the registry .*:\*\*\*@"):
        open_registry("postgresql://nobody:secret@127.0.0.1:1/none")


def _hammer(where: str, worker: int, n: int) -> None:
    with open_registry(where) as reg:
        for i in range(n):
            reg.report("shared", version=f"{worker}.{i}", result="updated")
            reg.seen(f"dev-{worker}-{i}", version="1.0")


def test_processes_and_threads_writing_at_once_lose_no_update(registry_where: str) -> None:
    open_registry(registry_where).close()
    pids = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                _hammer(registry_where, worker, 40)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    threads = [threading.Thread(target=_hammer, args=(registry_where, w, 40)) for w in (3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert codes == [0, 0, 0]
    with open_registry(registry_where) as reg:
        shared = reg.get("shared")
        assert shared is not None and shared.reports == 5 * 40
        names = {r.device_id for r in reg.devices()}
    want = {f"dev-{w}-{i}" for w in range(5) for i in range(40)} | {"shared"}
    assert names ^ want == set()


def _open_at_once(where: str, go: float) -> None:
    while time.monotonic() < go:
        pass
    open_registry(where).close()


@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_one_new_registry_at_once_all_open_it(registry_where: str,
                                                                  round_: int) -> None:
    """``qpuos fw serve --workers N`` opens a new registry from N processes at once."""
    go = time.monotonic() + 0.3
    pids = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                _open_at_once(registry_where, go)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert codes == [0] * 6


def test_a_sqlite_path_is_not_mistaken_for_a_url(tmp_path: Path) -> None:
    with open_registry(tmp_path / "postgresql.db") as reg:
        assert isinstance(reg, SqliteRegistry)
