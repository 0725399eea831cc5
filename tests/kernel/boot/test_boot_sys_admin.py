"""``finit_module`` (added to kernel/_sys_admin.py for the image's PID 1).

Loading a real module is checked inside the guest (the boot's ``modules`` stage); the
host kernel here has no module support, so these tests pin the refusal paths."""

from __future__ import annotations

import os
import platform

import pytest

from qpuos.kernel._sys_admin import finit_module
from qpuos.kernel.boot.selftest import load_modules


def test_a_file_that_is_no_module_is_refused_by_the_kernel() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            finit_module(fd)
    finally:
        os.close(fd)
    # ENOSYS (no module support), EPERM (no CAP_SYS_MODULE) or ENOEXEC/EINVAL (not an ELF)
    assert info.value.errno in (38, 1, 8, 22)
    assert info.value.__notes__ == [f"from syscall finit_module ({platform.machine()})"]


def test_load_modules_stops_at_the_first_refusal() -> None:
    with pytest.raises(OSError):
        load_modules(paths=["/dev/null", "/nonexistent.ko"])
    with pytest.raises(FileNotFoundError):
        load_modules(paths=["/nonexistent.ko"])
