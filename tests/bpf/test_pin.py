"""Pinning: a map pinned on a bpffs mount is opened again by path and shares its data."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from qpuos.bpf.maps import HashMap
from qpuos.bpf.pin import get_pinned, pin
from qpuos.kernel.syscall import mount, umount2

pytestmark = pytest.mark.needs_bpf


@pytest.fixture
def bpffs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "bpffs"
    where.mkdir()
    try:
        mount("bpf", str(where), "bpf")
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENODEV):
            pytest.skip(f"cannot mount bpffs here: {exc.strerror}")
        raise
    try:
        yield where
    finally:
        umount2(str(where))


def test_a_pinned_map_opens_again_by_path(bpffs: Path) -> None:
    path = bpffs / "counts"
    with HashMap.create(key="I", value="Q", max_entries=4, name="pinned") as m:
        m[1] = 10
        pin(m, path)
        with pytest.raises(FileExistsError):
            pin(m, path)
    assert path.exists()                       # the pin keeps it after close
    fd = get_pinned(path)
    with HashMap(fd, map_type=1, key="I", value="Q", max_entries=4, name="pinned") as again:
        assert dict(again) == {1: 10}
    path.unlink()
    with pytest.raises(FileNotFoundError):
        get_pinned(path)


def test_pinning_outside_bpffs_is_refused(tmp_path: Path) -> None:
    with HashMap.create(key="I", value="I", max_entries=1) as m, \
            pytest.raises(PermissionError) as info:
        pin(m, tmp_path / "not_bpffs")
    assert "must be on a bpffs mount" in info.value.__notes__[-1]
