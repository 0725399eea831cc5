"""Pinning to bpffs: keep a program, map or link alive after this process exits, and
open it again by path (``BPF_OBJ_PIN`` / ``BPF_OBJ_GET``).

bpffs is usually mounted at ``/sys/fs/bpf`` (``mount -t bpf bpf /sys/fs/bpf``); a pin
is a file there, removed with ``os.unlink``.

>>> from qpuos.bpf.maps import HashMap
>>> with HashMap.create(key="I", value="I", max_entries=4) as m:   # doctest: +SKIP
...     pin(m, "/sys/fs/bpf/qpuos_counts")
"""

from __future__ import annotations

from pathlib import Path

from qpuos._ffi import bpf as _ffi
from qpuos._ffi import consts as _c
from qpuos._ffi.libc import CString
from qpuos.bpf.asm import HasFd
from qpuos.kernel import syscall as _sc

__all__ = ["get_pinned", "pin"]


def pin(obj: HasFd | int, path: str | Path) -> None:
    """Pin a program, map or link (or its fd) at ``path`` on bpffs.

    Raises:
        FileExistsError: something is pinned there already.
        PermissionError: ``path`` is not on bpffs (EPERM), or no CAP_BPF.
    """
    fd = obj if isinstance(obj, int) else obj.fd
    cpath = CString(str(path))
    attr = _ffi.ObjAttr()
    attr.pathname = cpath.address
    attr.bpf_fd = fd
    try:
        _sc.bpf(_c.BPF_OBJ_PIN, _ffi.attr_bytes(attr))
    except PermissionError as exc:
        exc.add_note(f"{path} must be on a bpffs mount (mount -t bpf bpf /sys/fs/bpf)")
        raise


def get_pinned(path: str | Path) -> int:
    """A new fd for the object pinned at ``path`` (adopt it with ``BpfMap(fd, ...)``).

    Raises:
        FileNotFoundError: nothing is pinned there.
    """
    cpath = CString(str(path))
    attr = _ffi.ObjAttr()
    attr.pathname = cpath.address
    return _sc.bpf(_c.BPF_OBJ_GET, _ffi.attr_bytes(attr))
