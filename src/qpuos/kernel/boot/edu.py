"""QEMU's ``edu`` PCI device: its register map and a UIO driver for PID 1.

``edu`` (vendor 0x1234, device 0x11e8; QEMU's docs/specs/edu.rst) is a teaching device
with one 1 MB memory BAR: an identification register, a liveness check (reads back the
bitwise inverse of what was written), a factorial unit, and an interrupt that software
raises with IRQ_RAISE and acknowledges with IRQ_ACK. That makes it a real PCI device
whose interrupt the boot image can trigger and count.

:class:`EduUio` binds the device to ``uio_pci_generic``, maps BAR0 from sysfs with the
driver-side :class:`~qpuos.kernel.mmio.MmioWindow` (``open_path``: plain width-exact
loads and stores, no numpy or numba, which the image cannot carry) and routes its INTx
interrupt (``/dev/uioN``) into a :class:`~qpuos.kernel.irq.VectorTable`. The
generic UIO driver masks INTx in the interrupt handler (PCI_COMMAND bit 10, "interrupt
disable") and has no irqcontrol write, so the top half acknowledges the device and then
clears that bit through the sysfs config file to take the next interrupt.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from qpuos.errors import UsageError
from qpuos.kernel.irq import UioSource, VectorTable
from qpuos.kernel.mmio import Access, Field, MmioWindow, Register, RegisterMap

__all__ = ["EDU_DEVICE", "EDU_REGISTERS", "EDU_VENDOR", "EduUio", "find_edu"]

EDU_VENDOR = 0x1234
EDU_DEVICE = 0x11E8

EDU_REGISTERS = RegisterMap("edu", [
    Register("ID", 0x00, access=Access.RO, reset=0x010000ED,
             fields=(Field("MINOR", 16, 8), Field("MAJOR", 24, 8)),
             doc="0xRRrr00edu: major.minor version, 0xed in the low byte"),
    Register("LIVENESS", 0x04, doc="reads back the bitwise inverse of the last write"),
    Register("FACTORIAL", 0x08, doc="write n: computes n! (STATUS.COMPUTING while busy)"),
    Register("STATUS", 0x20, fields=(Field("COMPUTING", 0), Field("IRQ_ON_DONE", 7)),
             doc="bit 0 (read-only): factorial busy; bit 7: raise 0x01 when done"),
    Register("IRQ_STATUS", 0x24, access=Access.RO, doc="the pending interrupt bits"),
    Register("IRQ_RAISE", 0x60, access=Access.WO, doc="OR the value into IRQ_STATUS"),
    Register("IRQ_ACK", 0x64, access=Access.WO, doc="clear these IRQ_STATUS bits"),
    Register("DMA_SRC", 0x80, width=64),
    Register("DMA_DST", 0x88, width=64),
    Register("DMA_COUNT", 0x90, width=64),
    Register("DMA_CMD", 0x98, width=64,
             fields=(Field("START", 0), Field("TO_RAM", 1), Field("IRQ", 2))),
])
"""The edu BAR0 registers (the first page of its 1 MB region)."""

_PCI_COMMAND = 0x04
_INTX_DISABLE = 1 << 10
_SYSFS_PCI = "/sys/bus/pci"


def find_edu(root: str = _SYSFS_PCI) -> str | None:
    """The sysfs directory of the first edu device under ``root``, or None.

    >>> find_edu("/nonexistent") is None
    True
    """
    devices = os.path.join(root, "devices")
    for name in sorted(os.listdir(devices)) if os.path.isdir(devices) else ():
        path = os.path.join(devices, name)
        if _read_hex(path, "vendor") == EDU_VENDOR and _read_hex(path, "device") == EDU_DEVICE:
            return path
    return None


def _read_hex(path: str, name: str) -> int:
    with open(os.path.join(path, name)) as f:
        return int(f.read().strip(), 16)


def _uio_node(pci_dir: str) -> str:
    names = sorted(os.listdir(os.path.join(pci_dir, "uio")))
    if not names:
        raise UsageError(f"{pci_dir} is bound to uio_pci_generic but has no uio node")
    return "/dev/" + names[0]


class EduUio:
    """The edu device driven from user space: BAR0 mapped, INTx via ``/dev/uioN``.

    The device must already be bound to ``uio_pci_generic`` (see
    :func:`qpuos.kernel.boot.selftest.bind_uio`).

    Args:
        pci_dir: the device's sysfs directory (``find_edu()``).

    Raises:
        MmioError: BAR0 cannot be mapped.
        UsageError: the device has no uio node (not bound).
    """

    def __init__(self, pci_dir: str) -> None:
        self.pci_dir = pci_dir
        self.uio_path = _uio_node(pci_dir)
        self.bar = MmioWindow.open_path(EDU_REGISTERS, os.path.join(pci_dir, "resource0"))
        self._config = os.open(os.path.join(pci_dir, "config"), os.O_RDWR | os.O_CLOEXEC)
        self._closed = False
        self.unmask()

    def unmask(self) -> None:
        """Clear PCI_COMMAND's interrupt-disable bit: the next INTx may arrive."""
        cmd = int.from_bytes(os.pread(self._config, 2, _PCI_COMMAND), "little")
        if cmd & _INTX_DISABLE:
            os.pwrite(self._config, (cmd & ~_INTX_DISABLE).to_bytes(2, "little"),
                      _PCI_COMMAND)

    def top_half(self, _count: Any) -> int:
        """Acknowledge the device's pending bits, unmask INTx; return the bits."""
        bits = self.bar.read("IRQ_STATUS")
        self.bar.write("IRQ_ACK", bits)
        self.unmask()
        return bits

    def register(self, table: VectorTable, vector: int, *, priority: int = 0) -> None:
        """Route the device's interrupt into ``table`` at ``vector``."""
        table.register(vector, UioSource(self.uio_path, rearm=False), self.top_half,
                       priority=priority, name="edu")

    def close(self) -> None:
        """Unmap BAR0 and close the config file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.bar.close()
        os.close(self._config)

    def __enter__(self) -> EduUio:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
