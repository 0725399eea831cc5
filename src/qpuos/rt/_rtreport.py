"""What a :class:`~qpuos.rt.RealtimeProfile` obtained: one item per setting, read back
from the kernel, with the errno and the reason for anything refused or cut."""

from __future__ import annotations

import errno
from dataclasses import dataclass

__all__ = ["RealtimeItem", "RealtimeReport"]


@dataclass(frozen=True, slots=True)
class RealtimeItem:
    """One setting of a :class:`RealtimeProfile`: asked, held now, and why not if not.

    Attributes:
        name: ``"cpus"``, ``"scheduler"``, ``"mlock"`` or ``"dma_latency"``.
        requested: what was asked, in words.
        granted: what the kernel holds now, in words (read back after the request).
        ok: the request is held in full.
        errno: the errno of the kernel's refusal, or None.
        reason: why it was refused or cut, and what to do ("" when ok).
    """

    name: str
    requested: str
    granted: str
    ok: bool
    errno: int | None = None
    reason: str = ""

    def line(self) -> str:
        """One short line: ``name: granted`` or ``name: REFUSED ..., held ...``."""
        if self.ok:
            return f"{self.name}: {self.granted} (asked {self.requested})"
        code = f"{errno.errorcode.get(self.errno, self.errno)}: " if self.errno else ""
        return f"{self.name}: NOT GRANTED, asked {self.requested}, holds {self.granted} " \
               f"({code}{self.reason})"


@dataclass(frozen=True, slots=True)
class RealtimeReport:
    """What :meth:`RealtimeProfile.apply` obtained, read back from the kernel.

    Attributes:
        items: one :class:`RealtimeItem` per requested setting.
        cpus: the affinity mask now (None if not requested).
        policy: the scheduling policy now, an ``os.SCHED_*`` value (None if not
            requested).
        priority: the real-time priority now (None if not requested).
        locked_bytes: ``VmLck`` of the process now (None if not requested).
        dma_latency_us: the kernel's CPU-latency limit while the request is held
            (None if not requested or refused).
    """

    items: tuple[RealtimeItem, ...]
    cpus: frozenset[int] | None = None
    policy: int | None = None
    priority: int | None = None
    locked_bytes: int | None = None
    dma_latency_us: int | None = None

    @property
    def ok(self) -> bool:
        """Every requested setting is held in full."""
        return all(item.ok for item in self.items)

    @property
    def refused(self) -> tuple[RealtimeItem, ...]:
        """The settings not held in full."""
        return tuple(item for item in self.items if not item.ok)

    def summary(self) -> str:
        """One short human-readable line per setting."""
        return "\n".join(item.line() for item in self.items)
