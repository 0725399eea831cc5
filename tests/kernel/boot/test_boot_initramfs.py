"""The newc writer and reader: round trip, reproducibility, refused input."""

from __future__ import annotations

import random
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qpuos.errors import ImageError
from qpuos.kernel.boot.initramfs import FIXED_MTIME, Entry, read_cpio, write_cpio

_names = st.text(alphabet="abcdefghij._-/0123", min_size=1, max_size=40).filter(
    lambda s: not s.startswith("/") and s != "TRAILER!!!")
_entries = st.one_of(
    st.builds(Entry.file, _names, st.binary(max_size=300),
              mode=st.integers(0, 0o7777)),
    st.builds(Entry.directory, _names, mode=st.integers(0, 0o7777)),
    st.builds(Entry.device, _names, st.integers(0, 4095), st.integers(0, 2**20 - 1)),
    st.builds(Entry.symlink, _names, st.text(alphabet="abc/", min_size=1, max_size=20)),
)


@given(st.lists(_entries, max_size=20, unique_by=lambda e: e.name))
def test_read_returns_what_was_written_sorted_by_name(entries: list[Entry]) -> None:
    assert read_cpio(write_cpio(entries)) == sorted(entries, key=lambda e: e.name)


@given(st.lists(_entries, max_size=12, unique_by=lambda e: e.name), st.randoms())
def test_same_entries_in_any_order_give_the_same_bytes(entries: list[Entry],
                                                       rnd: random.Random) -> None:
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    assert write_cpio(shuffled) == write_cpio(entries)


def test_header_fields_are_fixed_and_aligned() -> None:
    data = write_cpio([Entry.file("a", b"xyz", mode=0o755), Entry.device("dev/null", 1, 3)])
    assert len(data) % 4 == 0
    head = data[:110]
    fields = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    ino, mode, uid, gid, nlink, mtime, size = fields[:7]
    assert (ino, mode, uid, gid, nlink, mtime, size) == (
        1, stat.S_IFREG | 0o755, 0, 0, 1, FIXED_MTIME, 3)
    assert data.endswith(b"TRAILER!!!\0\0\0\0")  # 121-byte trailer padded to 124
    dev = read_cpio(data)[1]
    assert stat.S_ISCHR(dev.mode) and dev.rdev == (1, 3)


@pytest.mark.parametrize("names", [["a", "a"], ["/abs"], [""]])
def test_writer_refuses_repeated_absolute_or_empty_names(names: list[str]) -> None:
    with pytest.raises(ImageError, match=r"^initramfs entry name .* is empty, absolute or "
                                         r"repeated; give each path once, relative to /$"):
        write_cpio([Entry.file(n, b"") for n in names])


def test_reader_refuses_bad_magic_and_truncation() -> None:
    data = write_cpio([Entry.file("init", b"x" * 100)])
    with pytest.raises(ImageError, match=r"^no newc header at offset 0 \(found b'\\x1f\\x8b"):
        read_cpio(b"\x1f\x8b" + data[2:])
    with pytest.raises(ImageError, match=r"^entry 'init' at offset 0 wants 100 bytes, "
                                         r"\d+ remain; the archive is truncated$"):
        read_cpio(data[:150])
    with pytest.raises(ImageError, match=r"^no newc header at offset \d+"):
        read_cpio(data[:-120])
