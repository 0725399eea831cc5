"""The kernel-layer self-test steps PID 1 runs inside the image.

Each step is a plain function that returns a one-line detail and raises on failure;
the image's config names the steps as ``module:function`` with keyword arguments, so
callers above the kernel layer can add their own (a compiled circuit, a bpf probe)
without this layer importing them.

- :func:`timer_loop`: the qpuos kernel loop up: a coroutine on the
  :class:`~qpuos.kernel.scheduler.Scheduler` awaits ``ticks`` interrupts of a periodic
  timerfd registered in its :class:`~qpuos.kernel.irq.VectorTable`.
- :func:`load_modules`: kernel modules loaded with ``finit_module``.
- :func:`edu_registers`: the edu device's ID, liveness and factorial registers.
- :func:`edu_irqs`: ``n`` real edu interrupts raised by a coroutine, routed through
  ``/dev/uioN`` into the vector table, delivered by ``await irq(vector)`` and counted
  in the vector's statistics exactly.
"""

from __future__ import annotations

import os
import time

from qpuos.errors import DeviceFault
from qpuos.kernel._sys_admin import finit_module
from qpuos.kernel.boot.edu import EDU_DEVICE, EDU_VENDOR, EduUio, find_edu
from qpuos.kernel.irq import TimerSource
from qpuos.kernel.scheduler import Scheduler, irq

__all__ = ["bind_uio", "edu_irqs", "edu_registers", "load_modules", "timer_loop"]

_UIO_NEW_ID = "/sys/bus/pci/drivers/uio_pci_generic/new_id"


def timer_loop(*, ticks: int = 20, period_ns: int = 1_000_000) -> str:
    """Run the scheduler until a coroutine has awaited ``ticks`` timer interrupts.

    >>> timer_loop(ticks=3).startswith("3 timer interrupts")
    True

    Raises:
        DeviceFault: the vector counted fewer ticks than the coroutine received.
        SchedulerError: the ticks did not come within 100 periods each.
    """
    async def ticker() -> int:
        for _ in range(ticks):
            await irq(0)
        return ticks

    with Scheduler() as sched:
        sched.table.register(0, TimerSource(period_ns=period_ns), name="tick")
        t0 = time.monotonic_ns()
        sched.run(ticker(), name="ticker", timeout_ns=ticks * period_ns * 100)
        elapsed = time.monotonic_ns() - t0
        stats = sched.table.stats(0)
    if stats.count < ticks:
        raise DeviceFault(f"timer vector counted {stats.count} interrupts but the task "
                          f"awaited {ticks}; check the table's timer path")
    return (f"{ticks} timer interrupts at {period_ns / 1e6:g} ms awaited in "
            f"{elapsed / 1e6:.1f} ms (count {stats.count}, overruns {stats.overruns})")


def load_modules(*, paths: list[str]) -> str:
    """Load each kernel module file in ``paths`` with ``finit_module`` (in order).

    A module that is already loaded (EEXIST) counts as loaded.
    """
    done = []
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            finit_module(fd)
        except FileExistsError:
            pass
        finally:
            os.close(fd)
        done.append(os.path.basename(path))
    return "loaded " + ", ".join(done)


def bind_uio(pci_dir: str) -> None:
    """Bind the edu device to ``uio_pci_generic`` (its ``new_id``), once."""
    if os.path.isdir(os.path.join(pci_dir, "uio")):
        return
    with open(_UIO_NEW_ID, "w") as f:
        f.write(f"{EDU_VENDOR:04x} {EDU_DEVICE:04x}")


def _edu() -> EduUio:
    pci_dir = find_edu()
    if pci_dir is None:
        raise DeviceFault("no edu PCI device (1234:11e8) in /sys/bus/pci; start QEMU with "
                          "-device edu")
    bind_uio(pci_dir)
    return EduUio(pci_dir)


def edu_registers() -> str:
    """Check the edu ID, liveness (inverse read-back) and factorial(10) registers.

    Raises:
        DeviceFault: a register read back a wrong value.
    """
    with _edu() as edu:
        ident = edu.bar.read("ID")
        if ident & 0xFF != 0xED:
            raise DeviceFault(f"edu ID register reads {ident:#010x}, expected 0x....00ed")
        edu.bar.write("LIVENESS", 0x12345678)
        live = edu.bar.read("LIVENESS")
        if live != 0x12345678 ^ 0xFFFFFFFF:
            raise DeviceFault(f"edu liveness reads {live:#010x} after writing 0x12345678; "
                              "expected its inverse 0xedcba987")
        edu.bar.write("FACTORIAL", 10)
        deadline = time.monotonic() + 2.0
        while edu.bar.read("STATUS") & 1 and time.monotonic() < deadline:
            pass
        fact = edu.bar.read("FACTORIAL")
        if fact != 3628800:
            raise DeviceFault(f"edu factorial(10) reads {fact}, expected 3628800")
    return f"ID {ident:#010x}, liveness ok, factorial(10) = {fact}"


def edu_irqs(*, n: int = 20, vector: int = 32) -> str:
    """Raise ``n`` edu interrupts from a coroutine, await each; the vector counts ``n``.

    Raises:
        DeviceFault: the vector's count differs from ``n``, or a status bit was lost.
        SchedulerError: an interrupt did not arrive within 2 s.
    """
    got: list[int] = []

    async def driver(edu: EduUio) -> None:
        for i in range(n):
            edu.bar.write("IRQ_RAISE", 1 << (i % 8))
            got.append(await irq(vector))

    with _edu() as edu, Scheduler() as sched:
        edu.register(sched.table, vector)
        t0 = time.monotonic_ns()
        sched.run(driver(edu), name="edu-driver", timeout_ns=n * 2_000_000_000)
        elapsed = time.monotonic_ns() - t0
        stats = sched.table.stats(vector)
    want = [1 << (i % 8) for i in range(n)]
    if stats.count != n or got != want:
        raise DeviceFault(f"raised {n} edu interrupts, the vector table counted "
                          f"{stats.count} (errors {stats.errors}, spurious {stats.spurious})"
                          f" with status bits {got[:8]}...; expected {want[:8]}...")
    return (f"{n} edu interrupts via {edu.uio_path}: vector {vector} count {stats.count}, "
            f"{elapsed / n / 1e3:.0f} us per raise-to-await")
