"""Typed register maps over an mmap'd window: the host's view of a device's registers.

A ``RegisterMap`` declares registers (name, offset, width, access, bit fields with enums)
and is validated once (the map types live in ``_mmio_map.py`` and are public here). An
``MmioWindow`` maps it over memory:

- **emulated** (``create`` / ``attach``): a file in /dev/shm that the emulated device
  process and the host both map; W1C registers are emulated (a host write of 1 clears
  that bit atomically, a 0 leaves it);
- **real** (``open_path``): ``/dev/mem``, ``/dev/uioN`` or a PCI BAR
  (``/sys/bus/pci/devices/*/resource0``); W1C writes are plain stores and the hardware
  clears the bits.

Design (memory ordering, why no caching):

1. Every ``read`` is one load and every ``write`` one store, of the register's width,
   from the shared mapping: a ``memoryview`` cast to ``B``/``H``/``I``/``Q`` indexed per
   access. CPython moves the item with a fixed-size ``memcpy``, which compiles to a single
   ``mov``; registers are naturally aligned, so 32- and 64-bit accesses never tear.
   Nothing is cached in Python objects: the window holds views, never values.
2. Order: x86-64 is TSO (stores are not reordered with older stores, loads not with
   older loads), so accesses from one thread reach memory in program order with no
   fence. Elsewhere every access is followed by a full fence. ``barrier()`` is a full
   fence (``mfence``) for the one reordering TSO allows: a store followed by a load of
   another location.
3. Read-modify-write across processes (``set_bits``, ``clear_bits``, emulated W1C) are
   lock-prefixed atomics at the register's width (numba intrinsics, kernel/atomics.py).
   ``write_field`` is a plain read-modify-write: use it on registers only one side writes.
   numpy and numba are imported on the first atomic (or ``barrier()``, or any access
   off x86-64), never before: ``import qpuos.kernel.mmio`` and plain ``read``/``write``
   on an ``open_path`` window need neither, so the controller's boot image (which
   cannot carry them) drives its PCI BAR through this class.
4. Access rules apply to the ``"host"`` role (the driver): RO registers refuse writes,
   WO registers refuse reads. The ``"device"`` role is the emulated hardware itself and
   may read and write any register with plain loads and stores.

The hot path is one dict lookup per access: per-register (view, index) pairs are built
when the window opens; names are checked only when that lookup fails.
"""

from __future__ import annotations

import functools
import os
import sys
from types import ModuleType, TracebackType
from typing import Any, Literal

from qpuos.errors import ClosedResourceError, MmioError, QpuosError, UsageError
from qpuos.kernel import _mmio_file
from qpuos.kernel._mmio_map import Access, Field, Register, RegisterMap, unknown

__all__ = ["Access", "Field", "MmioWindow", "Register", "RegisterMap", "unlink_window"]

_TSO = os.uname().machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_BYTEORDER = sys.byteorder
_Format = Literal["B", "H", "I", "Q"]
_FORMATS: dict[int, _Format] = {8: "B", 16: "H", 32: "I", 64: "Q"}

_Role = Literal["host", "device"]


class MmioWindow:
    """A register map over a mapped window: named, typed, width-exact register accesses.

    Open one with ``create`` (an emulated device window in /dev/shm), ``attach`` (the
    same window from another process, by name) or ``open_path`` (real hardware). Every
    access goes to the mapping (see the module docstring for ordering); after ``close()``
    every access raises ``ClosedResourceError``.

    >>> regs = RegisterMap("doc", [Register("STATUS", 0x0, access=Access.RO),
    ...                            Register("IRQ", 0x4, access=Access.W1C),
    ...                            Register("DOORBELL", 0x8, access=Access.WO)])
    >>> with MmioWindow.create(regs) as device, \\
    ...         MmioWindow.attach(regs, device.name) as host:
    ...     _ = device.set_bits("IRQ", 0b110)   # the device raises two interrupts
    ...     host.write("IRQ", 0b010)            # the host acknowledges one
    ...     host.write("DOORBELL", 1)
    ...     host.read("IRQ"), device.read("DOORBELL")
    (4, 1)
    """

    __slots__ = ("_arrays", "_base", "_closed", "_creator", "_fenced", "_fetch_and",
                 "_fetch_or", "_mm", "_rd", "_rmw", "_unlink_on_close", "_views", "_wr",
                 "emulated", "name", "regmap", "role")

    def __init__(self, regmap: RegisterMap, mm: Any, *, name: str, role: _Role,
                 emulated: bool, creator: int = 0, start: int = 0) -> None:
        """Build the access paths over ``mm``; use ``create``/``attach``/``open_path``."""
        self.regmap = regmap
        self.name = name
        self.role = role
        self.emulated = emulated
        self._mm = mm
        self._creator = creator           # pid that unlinks the name on close, 0: none
        self._unlink_on_close = True
        self._closed = False
        self._fenced = not _TSO
        size = regmap.size
        self._base = memoryview(mm)[start:start + size]
        self._views: dict[int, memoryview] = {}
        self._arrays: dict[int, Any] = {}     # width -> numpy view, for the atomics
        self._fetch_or: Any = None            # numba's, set with the first array
        self._fetch_and: Any = None
        for width in sorted({r.width for r in regmap.registers}):
            self._views[width] = self._base[:size - size % (width // 8)].cast(
                _FORMATS[width])
        host = role == "host"
        self._rd: dict[str, tuple[memoryview, int]] = {}
        # (view, index, w1c, limit); w1c: None for a plain store, else the numpy array
        # of the atomics (False until the first atomic builds it: see _arm)
        self._wr: dict[str, tuple[memoryview, int, Any, int]] = {}
        # (numpy array or None until _arm, index, limit, view)
        self._rmw: dict[str, tuple[Any, int, int, memoryview]] = {}
        for r in regmap.registers:
            view, index, limit = self._views[r.width], r.offset // (r.width // 8), \
                (1 << r.width) - 1
            if not (host and r.access is Access.WO):
                self._rd[r.name] = (view, index)
            if not (host and r.access is Access.RO):
                w1c = host and emulated and r.access is Access.W1C
                self._wr[r.name] = (view, index, False if w1c else None, limit)
            if not host or r.access is Access.RW:
                self._rmw[r.name] = (None, index, limit, view)

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def create(cls, regmap: RegisterMap, *, name: str | None = None, role: _Role = "device",
               unlink_on_close: bool = True) -> MmioWindow:
        """Create an emulated device window in /dev/shm, holding the reset values.

        Args:
            regmap: the register layout.
            name: the window's name (a file in /dev/shm); generated when None.
            role: ``"device"`` (the emulated hardware, the usual creator) or ``"host"``.
            unlink_on_close: remove the name when this window is closed (by the creating
                process only; forked children never unlink it).

        Returns:
            The window; others ``attach`` it by ``window.name``.

        Raises:
            UsageError: the name is invalid or taken, or the role is unknown.
        """
        _check_role(role)

        def reset(mm: Any) -> None:
            for r in regmap.registers:
                n = r.width // 8
                mm[r.offset:r.offset + n] = r.reset.to_bytes(n, _BYTEORDER)

        fp = regmap.fingerprint
        mm, name = _mmio_file.create_file(name, regmap.size, fp, regmap.name, reset)
        window = cls(regmap, mm, name=name, role=role, emulated=True, creator=os.getpid())
        window._unlink_on_close = unlink_on_close
        return window

    @classmethod
    def attach(cls, regmap: RegisterMap, name: str, *, role: _Role = "host") -> MmioWindow:
        """Map the emulated window ``name`` that another process created.

        Args:
            regmap: the register layout; must be the one the window was created with.
            name: the window's name (``window.name`` on the creating side).
            role: ``"host"`` (the driver, access rules apply) or ``"device"``.

        Returns:
            The window; closing it never unlinks the name.

        Raises:
            MmioError: no such window, or it was created for another register map.
            UsageError: the name is not valid or the role is unknown.
        """
        _check_role(role)
        mm = _mmio_file.attach_file(name, regmap.size, regmap.fingerprint, regmap.name)
        return cls(regmap, mm, name=name, role=role, emulated=True)

    @classmethod
    def open_path(cls, regmap: RegisterMap, path: str | os.PathLike[str], *,
                  offset: int = 0) -> MmioWindow:
        """Map real device registers: ``/dev/mem``, ``/dev/uioN`` or a PCI BAR file.

        Args:
            regmap: the register layout of the device.
            path: the device node or resource file (opened read-write, ``O_SYNC``).
            offset: byte offset of the register block in ``path`` (a physical address for
                ``/dev/mem``); a multiple of 8.

        Returns:
            A host-role window; W1C writes are plain stores (the hardware clears bits).

        Raises:
            MmioError: the path cannot be opened or mapped, the offset is misaligned, or
                a regular file is shorter than the window.
        """
        if not isinstance(offset, int) or offset < 0 or offset % 8:
            raise MmioError(f"window offset {offset!r} into {os.fspath(path)} is not a "
                            "non-negative multiple of 8; registers must stay aligned")
        where = os.fspath(path)
        mm, start = _mmio_file.open_device(where, offset, regmap.size)
        return cls(regmap, mm, name=where, role="host", emulated=False, start=start)

    # -- the hot path: one dict lookup, one load or store --------------------------------

    def read(self, reg: str) -> int:
        """Load register ``reg`` (one load of its width from the window).

        Raises:
            MmioError: unknown register, or a write-only register read by the host.
            ClosedResourceError: the window is closed.
        """
        try:
            view, index = self._rd[reg]
        except KeyError:
            raise self._refused(reg, "read") from None
        value: int = view[index]
        if self._fenced:
            _atomics().fence()
        return value

    def write(self, reg: str, value: int) -> None:
        """Store ``value`` into register ``reg`` (one store of its width).

        From the host, a W1C register of an emulated window clears the bits written as 1
        (atomically) and keeps the others, as the hardware would.

        Raises:
            MmioError: unknown register, a read-only register written by the host, or a
                value that is negative or wider than the register.
            ClosedResourceError: the window is closed.
        """
        try:
            view, index, w1c, limit = self._wr[reg]
        except KeyError:
            raise self._refused(reg, "write") from None
        if w1c is None:
            try:
                view[index] = value
            except (ValueError, TypeError):
                raise self._bad_value(reg, value, limit) from None
        else:  # emulated W1C: clear the 1s, atomically against the device's set_bits
            if not isinstance(value, int) or not 0 <= value <= limit:
                raise self._bad_value(reg, value, limit)
            if w1c is False:
                w1c = self._arm(reg)
            keep = ~value & limit
            self._fetch_and(w1c, index, keep - (1 << 64) if keep >> 63 else keep)
        if self._fenced:
            _atomics().fence()

    def set_bits(self, reg: str, mask: int) -> int:
        """Atomically OR ``mask`` into ``reg`` (how the device raises STATUS/IRQ bits).

        Returns:
            The register's value before.

        Raises:
            MmioError: unknown register, a host call on a register that is not RW, or a
                mask wider than the register.
            ClosedResourceError: the window is closed.
        """
        try:
            arr, index, limit, _ = self._rmw[reg]
        except KeyError:
            raise self._refused(reg, "set_bits") from None
        operand = _int64(self._operand(reg, mask, limit))
        if arr is None:
            arr = self._arm(reg)
        return int(self._fetch_or(arr, index, operand))

    def clear_bits(self, reg: str, mask: int) -> int:
        """Atomically clear the bits of ``mask`` in ``reg`` (AND-NOT).

        Returns:
            The register's value before.

        Raises:
            MmioError: as for ``set_bits``.
            ClosedResourceError: the window is closed.
        """
        try:
            arr, index, limit, _ = self._rmw[reg]
        except KeyError:
            raise self._refused(reg, "clear_bits") from None
        keep = _int64(~self._operand(reg, mask, limit) & limit)
        if arr is None:
            arr = self._arm(reg)
        return int(self._fetch_and(arr, index, keep))

    def read_field(self, reg: str, field: str) -> int:
        """Read bit field ``field`` of ``reg``.

        Returns:
            The field's value: a member of the field's enum when it has one and the value
            is a member (hardware may show reserved encodings: then the plain int).

        Raises:
            MmioError: unknown register or field, or a write-only register.
            ClosedResourceError: the window is closed.
        """
        lsb, mask, values = self.regmap.field_spec(reg, field)
        raw = (self.read(reg) >> lsb) & mask
        if values is not None and raw in values._value2member_map_:
            return values(raw)
        return raw

    def write_field(self, reg: str, field: str, value: int) -> None:
        """Set bit field ``field`` of ``reg`` to ``value`` (read-modify-write).

        Not atomic against the other side: use it on registers only one side writes.

        Raises:
            MmioError: unknown register or field, a host call on a register that is not
                RW, a value wider than the field or not a member of its enum.
            ClosedResourceError: the window is closed.
        """
        try:
            _, index, limit, view = self._rmw[reg]
        except KeyError:
            raise self._refused(reg, "write_field") from None
        lsb, mask, values = self.regmap.field_spec(reg, field)
        if not isinstance(value, int) or not 0 <= value <= mask or (
                values is not None and value not in values._value2member_map_):
            allowed = f"0..{mask}" if values is None else \
                ", ".join(f"{m.name}={m.value}" for m in values)
            raise MmioError(f"value {value!r} does not fit field {field!r} of register "
                            f"{reg!r} in map {self.regmap.name!r}; allowed: {allowed}")
        view[index] = (view[index] & ~(mask << lsb) & limit) | (int(value) << lsb)
        if self._fenced:
            _atomics().fence()

    def barrier(self) -> None:
        """Full memory fence: no access before it moves after it, nor the reverse.

        Raises:
            ClosedResourceError: the window is closed.
        """
        if self._closed:
            raise self._closed_error()
        _atomics().fence()

    def _arm(self, reg: str) -> Any:
        """Make the atomics ready (first use): import numba, view the window as unsigned
        numpy arrays of each width, put them in the access tables; ``reg``'s array."""
        ops = _atomics()
        import numpy as np  # after _atomics(): its ImportError names what is missing

        self._fetch_or, self._fetch_and = ops.fetch_or, ops.fetch_and
        size = self.regmap.size
        for width in self._views:
            chunk = self._base[:size - size % (width // 8)]
            self._arrays[width] = np.frombuffer(chunk, dtype=f"u{width // 8}")
        for name, (_, index, limit, view) in self._rmw.items():
            self._rmw[name] = (self._arrays[self.regmap[name].width], index, limit, view)
        for name, (view, index, w1c, limit) in self._wr.items():
            if w1c is not None:
                self._wr[name] = (view, index, self._arrays[self.regmap[name].width], limit)
        return self._arrays[self.regmap[reg].width]

    # -- errors --------------------------------------------------------------------------

    def _closed_error(self) -> ClosedResourceError:
        return ClosedResourceError(f"register window {self.name!r} is closed; open it "
                                   "again (MmioWindow.attach or open_path)")

    def _refused(self, reg: str, op: str) -> QpuosError:
        if self._closed:
            return self._closed_error()
        if reg not in self.regmap:
            return unknown("register", reg, f"register map {self.regmap.name!r}",
                           [r.name for r in self.regmap.registers])
        access = self.regmap[reg].access
        where = f"register {reg!r} of map {self.regmap.name!r}"
        if op == "read":
            return MmioError(f"{where} is write-only (wo); the host cannot read it: keep "
                             "the value you wrote, or read a status register")
        if op == "write":
            return MmioError(f"{where} is read-only (ro); the host cannot write it")
        hint = "; write 1s with write() to clear W1C bits" if access is Access.W1C else ""
        return MmioError(f"{op}() needs a read-write register from the host; {where} is "
                         f"{access.value}{hint}")

    def _bad_value(self, reg: str, value: object, limit: int) -> MmioError:
        return MmioError(f"value {value!r} does not fit {limit.bit_length()}-bit register "
                         f"{reg!r} of map {self.regmap.name!r} (0..{limit:#x}); mask it to "
                         "the register's width")

    def _operand(self, reg: str, value: object, limit: int) -> int:
        if not isinstance(value, int) or not 0 <= value <= limit:
            raise self._bad_value(reg, value, limit)
        return int(value)

    # -- lifetime ------------------------------------------------------------------------

    def unlink(self) -> None:
        """Remove an emulated window's name from /dev/shm (idempotent).

        Mappings already open stay valid; new ``attach`` calls fail. Any side may call
        it, also after ``close()`` (a driver cleaning up after a dead device process).
        Windows from ``open_path`` have no name to remove: a no-op.
        """
        if self.emulated:
            _mmio_file.remove_file(self.name)

    def close(self) -> None:
        """Unmap the window (idempotent); the creator also unlinks the name by default."""
        if self._closed:
            return
        self._closed = True
        self._rd, self._wr, self._rmw = {}, {}, {}
        self._arrays = {}  # drops numpy's exports of the mapping before it is closed
        for view in self._views.values():
            view.release()
        self._views = {}
        self._base.release()
        try:
            self._mm.close()
        finally:
            if self._unlink_on_close and self._creator == os.getpid():
                self.unlink()

    def __enter__(self) -> MmioWindow:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        kind = "emulated" if self.emulated else "device"
        return (f"<MmioWindow {self.name!r} map={self.regmap.name!r} role={self.role} "
                f"{kind} {state}>")


def unlink_window(name: str) -> bool:
    """Remove emulated window ``name`` from /dev/shm (what a crashed creator left).

    Returns:
        True if the window existed.

    >>> unlink_window("qpuos-no-such-window")
    False
    """
    return _mmio_file.remove_file(name)


def _check_role(role: str) -> None:
    if role not in ("host", "device"):
        raise UsageError(f"window role {role!r} is not valid; use 'host' or 'device'")


@functools.cache
def _atomics() -> ModuleType:
    """``qpuos.kernel.atomics``, imported on first use (it loads numpy and numba).

    Raises:
        MmioError: numba (or numpy) is not installed: say that only atomics need it.
    """
    try:
        from qpuos.kernel import atomics
    except ImportError as exc:
        raise MmioError(f"atomic register operations (set_bits, clear_bits, emulated W1C "
                        f"writes, barrier, accesses off x86-64) need numba: {exc}; install "
                        "numba, or use plain read()/write() (which do not)") from None
    return atomics


def _int64(value: int) -> int:
    """``value`` (0..2**64-1) as the int64 with the same bits (see atomics.fetch_or)."""
    return value - (1 << 64) if value >> 63 else value
