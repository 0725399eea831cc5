"""The SQLite fleet registry: rows, targets, and concurrent writers losing nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from qpuos.errors import ClosedResourceError
from qpuos.firmware.fleet import Registry, SqliteRegistry


def test_rows_follow_check_ins_reports_and_targets(tmp_path: Path) -> None:
    with SqliteRegistry(tmp_path / "f.db") as reg:
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


def _hammer(path: Path, worker: int, n: int) -> None:
    with SqliteRegistry(path) as reg:
        for i in range(n):
            reg.report("shared", version=f"{worker}.{i}", result="updated")
            reg.seen(f"dev-{worker}-{i}", version="1.0")


def test_processes_and_threads_writing_at_once_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    SqliteRegistry(path).close()
    pids = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                _hammer(path, worker, 40)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    threads = [threading.Thread(target=_hammer, args=(path, w, 40)) for w in (3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert codes == [0, 0, 0]
    with SqliteRegistry(path) as reg:
        shared = reg.get("shared")
        assert shared is not None and shared.reports == 5 * 40
        names = {r.device_id for r in reg.devices()}
    want = {f"dev-{w}-{i}" for w in range(5) for i in range(40)} | {"shared"}
    assert names ^ want == set()


def _open_at_once(path: Path, go: float) -> None:
    import time

    while time.monotonic() < go:
        pass
    SqliteRegistry(path).close()


@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_one_new_registry_at_once_all_open_it(tmp_path: Path,
                                                                  round_: int) -> None:
    """``qpuos fw serve --workers N`` opens a new fleet.db from N processes at once."""
    import time

    path = tmp_path / f"new-{round_}.db"
    go = time.monotonic() + 0.3
    pids = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                _open_at_once(path, go)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert codes == [0] * 6
