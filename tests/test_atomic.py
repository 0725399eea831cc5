"""Fault injection on the atomic writers: nothing is ever half-written."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qpuos import _atomic
from qpuos._atomic import atomic_write_text, write_files_atomically


def test_group_write_replaces_every_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    write_files_atomically({str(a): b"new a", str(b): b"new b"})
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_disk_full_while_staging_the_second_file_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync_then_full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(_atomic.os, "fsync", fsync_then_full)
    with pytest.raises(OSError, match=r"No space left on device") as info:
        write_files_atomically({str(a): b"new a", str(b): b"new b"})
    assert info.value.filename == str(b)
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_missing_folder_names_the_target_not_a_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "out.qasm"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write_text(target, "x")
    assert info.value.filename == str(target)


def test_a_directory_target_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    ok, folder = tmp_path / "ok.txt", tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        write_files_atomically({str(ok): b"data", str(folder): b"data"})
    assert not ok.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_killed_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """A writer killed between staging and renaming never exposes a partial file."""
    target = tmp_path / "report.json"
    target.write_text("old complete contents")
    ready = tmp_path / "ready"
    child = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from qpuos import _atomic
        real_replace = os.replace
        def slow_replace(src, dst):
            Path({str(ready)!r}).write_text("staged")
            time.sleep(60)
            real_replace(src, dst)
        _atomic.os.replace = slow_replace
        _atomic.atomic_write_text({str(target)!r}, "new contents " * 100000)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child])
    try:
        for _ in range(600):  # wait (bounded) until the child has staged its file
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), "child never reached the rename"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert target.read_text() == "old complete contents"


def test_new_files_get_the_usual_permissions_and_old_files_keep_theirs(tmp_path: Path
                                                                         ) -> None:
    fresh, kept = tmp_path / "fresh.txt", tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o640)
    mask = os.umask(0o022)
    try:
        write_files_atomically({str(fresh): b"new", str(kept): b"new"})
    finally:
        os.umask(mask)
    assert (fresh.stat().st_mode & 0o777, kept.stat().st_mode & 0o777) == (0o644, 0o640)
