"""A numpy-free window on a real device's registers, for the boot image.

:class:`qpuos.kernel.mmio.MmioWindow` is the driver-side window, but importing it loads
numpy and numba (its atomics), and numba's llvmlite alone is ~170 MB: far beyond the
image's 20 MB budget and seconds of import under QEMU's TCG. A real BAR needs none of
that: the hardware applies W1C itself and a PID 1 driver is the only writer, so plain
width-exact loads and stores through a ``memoryview`` cast are enough. This window does
exactly those (one load or store of the register's width per access, as MmioWindow's
design point 1), over the same :class:`~qpuos.kernel.mmio.RegisterMap` and the same
host access rules (RO refuses writes, WO refuses reads).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Literal

from qpuos.errors import ClosedResourceError, MmioError
from qpuos.kernel._mmio_file import open_device
from qpuos.kernel._mmio_map import Access, RegisterMap

__all__ = ["BarWindow"]

_FORMATS: dict[int, Literal["B", "H", "I", "Q"]] = {8: "B", 16: "H", 32: "I", 64: "Q"}


class BarWindow:
    """Named register accesses on a mapped device region (a PCI BAR, ``/dev/uioN``).

    >>> import tempfile
    >>> from qpuos.kernel.boot.edu import EDU_REGISTERS
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.truncate(EDU_REGISTERS.size)
    ...     with BarWindow(EDU_REGISTERS, f.name) as bar:
    ...         bar.write("LIVENESS", 0x1234)
    ...         hex(bar.read("LIVENESS"))
    '0x1234'

    Args:
        regmap: the device's register layout.
        path: the resource file or device node (opened read-write, ``O_SYNC``).

    Raises:
        MmioError: the path cannot be opened or mapped.
    """

    __slots__ = ("_closed", "_mm", "_regs", "path", "regmap")

    def __init__(self, regmap: RegisterMap, path: str | os.PathLike[str]) -> None:
        self.regmap = regmap
        self.path = os.fspath(path)
        mm, start = open_device(self.path, 0, regmap.size)
        self._mm: Any = mm
        base = memoryview(mm)[start:start + regmap.size]
        views = {w: base[:regmap.size - regmap.size % (w // 8)].cast(f)
                 for w, f in _FORMATS.items()}
        self._regs = {r.name: (views[r.width], r.offset // (r.width // 8), r.access,
                               (1 << r.width) - 1) for r in regmap.registers}
        self._closed = False

    def _slot(self, reg: str) -> tuple[memoryview, int, Access, int]:
        if self._closed:
            raise ClosedResourceError(f"register window on {self.path} is closed; "
                                      "open a new BarWindow")
        try:
            return self._regs[reg]
        except KeyError:
            raise MmioError(f"register map {self.regmap.name!r} has no register {reg!r}; "
                            f"known: {', '.join(self._regs)}") from None

    def read(self, reg: str) -> int:
        """Load register ``reg`` (one access of its width).

        Raises:
            MmioError: unknown or write-only register.
            ClosedResourceError: the window is closed.
        """
        view, index, access, _ = self._slot(reg)
        if access is Access.WO:
            raise MmioError(f"register {reg!r} of {self.regmap.name!r} is write-only; "
                            "it cannot be read")
        return int(view[index])

    def write(self, reg: str, value: int) -> None:
        """Store ``value`` into register ``reg`` (one access of its width).

        Raises:
            MmioError: unknown or read-only register, or a value that does not fit.
            ClosedResourceError: the window is closed.
        """
        view, index, access, limit = self._slot(reg)
        if access is Access.RO:
            raise MmioError(f"register {reg!r} of {self.regmap.name!r} is read-only; "
                            "it cannot be written")
        if not 0 <= value <= limit:
            raise MmioError(f"value {value:#x} does not fit register {reg!r} "
                            f"(0..{limit:#x})")
        view[index] = value

    def close(self) -> None:
        """Unmap the window (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._regs.clear()
        self._mm.close()

    def __enter__(self) -> BarWindow:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
