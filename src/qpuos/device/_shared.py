"""The shared memory of one controller, owned by the host: created together, freed together.

Three files in /dev/shm (the register window, the instruction ring, the DMA arena) and
an eventfd. ``close()`` unlinks every file even when the controller died holding them,
so a crash leaves nothing behind in /dev/shm (the fault tests check exactly that).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import weakref

from qpuos.device.registers import QPU_REGISTERS
from qpuos.ipc.ring import SpscRing
from qpuos.kernel.irq import EventSource
from qpuos.kernel.mheap import Arena
from qpuos.kernel.mmio import MmioWindow, unlink_window
from qpuos.quantum.isa import RECORD

__all__ = ["SharedResources"]

_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"


class SharedResources:
    """Register window (host role), instruction ring, DMA arena and completion eventfd.

    Every file's name starts with ``name`` (``qpuos-qpu-`` and 8 random hex digits).
    """

    def __init__(self, name: str, window: MmioWindow, ring: SpscRing, arena: Arena,
                 mm: mmap.mmap, arena_path: str, irq: EventSource) -> None:
        self.name = name
        self.window = window
        self.ring = ring
        self.arena = arena
        self.arena_path = arena_path
        self.irq = irq
        self._mm = mm
        self.closed = False
        # A handle never closed (an exception before close, a forgotten one) still
        # leaves nothing in /dev/shm: the files go when it is collected or at exit.
        self._finalizer = weakref.finalize(self, _unlink_files, window.name, arena_path)

    @classmethod
    def create(cls, *, ring_capacity: int = 16384, arena_bytes: int = 32 << 20
               ) -> SharedResources:
        """Create all of it; on any failure, what was created is removed again."""
        name = f"qpuos-qpu-{secrets.token_hex(4)}"
        with contextlib.ExitStack() as undo:
            window = MmioWindow.create(QPU_REGISTERS, name=f"{name}-regs",
                                       role="host")
            undo.callback(_drop_window, window)
            ring = SpscRing.create(slot_size=RECORD.itemsize, capacity=ring_capacity,
                                   name=f"{name}-ring", blocking=True,
                                   wait="yield")
            undo.callback(ring.close)
            path = os.path.join(_SHM, f"{name}-dma")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            undo.callback(_unlink, path)
            try:
                os.ftruncate(fd, arena_bytes)
                mm = mmap.mmap(fd, arena_bytes)
            finally:
                os.close(fd)
            undo.callback(mm.close)
            arena = Arena.create(mm, strategy="tlsf")
            undo.callback(arena.close)
            irq = EventSource()
            undo.pop_all()
        return cls(name, window, ring, arena, mm, path, irq)

    def close(self) -> None:
        """Close and unlink everything (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.irq.close()
            self.ring.close()
            self.arena.close()
            with contextlib.suppress(BufferError):
                self._mm.close()
        finally:
            self._finalizer.detach()
            _unlink(self.arena_path)
            _drop_window(self.window)


def _drop_window(window: MmioWindow) -> None:
    with contextlib.suppress(FileNotFoundError):
        window.unlink()
    window.close()


def _unlink_files(window: str, arena_path: str) -> None:
    unlink_window(window)
    _unlink(arena_path)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
