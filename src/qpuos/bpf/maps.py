"""eBPF maps as Python mappings: array, hash and their per-CPU variants.

Keys and values are bytes, or numbers and tuples when a ``struct`` format is given
(``key="I", value="Q"``: ``m[3] = 10``). Each map keeps one attribute block and one
key and value buffer and reuses them for every call, so an element access is one
``bpf(2)`` call and two small copies; a map object is therefore not for sharing
between threads that use it at once.

The ring buffer, which is read through shared memory rather than ``bpf(2)``, is in
:mod:`qpuos.bpf.ringbuf`.

>>> with HashMap.create(key="I", value="Q", max_entries=16) as m:   # doctest: +SKIP
...     m[7] = 42
...     dict(m)
{7: 42}
"""

from __future__ import annotations

import errno as _errno
import re
import struct
from collections.abc import Iterator, MutableMapping
from functools import cache
from pathlib import Path
from typing import Any

from qpuos._ffi import bpf as _ffi
from qpuos._ffi import consts as _c
from qpuos._ffi.libc import PreparedCall, WritableBuffer, address_of, get_errno, sizeof
from qpuos.errors import ClosedResourceError, UsageError
from qpuos.kernel import syscall as _sc

__all__ = ["ArrayMap", "BpfMap", "HashMap", "PerCpuArrayMap", "PerCpuHashMap",
           "possible_cpus"]

_BPF_NR = _sc.syscall_number("bpf")
_NAME_OK = re.compile(r"^[A-Za-z0-9_.]{0,15}$")


@cache
def possible_cpus() -> int:
    """How many CPUs per-CPU maps hold a value for (``/sys/devices/system/cpu/possible``).

    >>> possible_cpus() >= 1
    True
    """
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    top = 0
    for part in text.split(","):
        top = max(top, int(part.split("-")[-1]))
    return top + 1


class _Codec:
    """bytes <-> Python values for one side (key or value) of a map."""

    __slots__ = ("_s", "fmt", "size")

    def __init__(self, fmt: str | None, size: int | None, what: str) -> None:
        if fmt is None:
            if size is None or size < 0:
                raise UsageError(f"give the {what} either a struct format or a size")
            self._s: struct.Struct | None = None
            self.size = size
        else:
            self._s = struct.Struct("=" + fmt.lstrip("@=<>!"))
            if size is not None and size != self._s.size:
                raise UsageError(f"{what} format {fmt!r} is {self._s.size} bytes but "
                                 f"{what}_size is {size}")
            self.size = self._s.size
        self.fmt = fmt

    def encode(self, obj: Any) -> bytes:
        if self._s is None:
            raw = bytes(obj)
            if len(raw) != self.size:
                raise UsageError(f"expected {self.size} bytes, got {len(raw)}")
            return raw
        try:
            return self._s.pack(*obj) if isinstance(obj, tuple) else self._s.pack(obj)
        except struct.error as exc:
            raise UsageError(f"{obj!r} does not fit format {self.fmt!r}: {exc}") from None

    def decode(self, raw: bytes | memoryview) -> Any:
        if self._s is None:
            return bytes(raw)
        vals = self._s.unpack(raw)
        return vals[0] if len(vals) == 1 else vals


class BpfMap(MutableMapping[Any, Any]):
    """A map the kernel holds; a ``MutableMapping`` over its elements.

    Use a subclass's ``create()``; ``BpfMap(fd, ...)`` adopts an fd this process has.

    Attributes:
        name: the map's name (at most 15 characters of [A-Za-z0-9_.]).
        map_type: ``enum bpf_map_type``.
        max_entries: capacity.
    """

    _map_type = 0

    def __init__(self, fd: int, *, map_type: int, key: str | None = None,
                 value: str | None = None, key_size: int | None = None,
                 value_size: int | None = None, max_entries: int, name: str = "") -> None:
        self._fd = fd
        self.map_type = map_type
        self.name = name
        self.max_entries = max_entries
        self._key = _Codec(key, key_size, "key")
        self._value = _Codec(value, value_size, "value")
        self._stride = self._value.size
        self._slots = 1
        self._setup_buffers()

    def _setup_buffers(self) -> None:
        self._kbuf = bytearray(max(self._key.size, 1))
        self._vbuf = bytearray(max(self._stride * self._slots, 1))
        self._nbuf = bytearray(max(self._key.size, 1))
        self._kview = WritableBuffer(self._kbuf)
        self._vview = WritableBuffer(self._vbuf)
        self._nview = WritableBuffer(self._nbuf)
        self._attr = _ffi.MapElemAttr()
        self._attr.map_fd = self._fd
        self._attr_mv = _ffi.attr_bytes(self._attr)
        # HOT: a lookup is one prepared bpf(2) call on its own attribute block, whose
        # key and value pointers never change (the key is copied into _kbuf in place)
        self._lookup_attr = _ffi.MapElemAttr()
        self._lookup_attr.map_fd = self._fd
        self._lookup_attr.key = self._kview.address
        self._lookup_attr.value = self._vview.address
        self._lookup_call = PreparedCall(_BPF_NR, _c.BPF_MAP_LOOKUP_ELEM,
                                         address_of(self._lookup_attr),
                                         sizeof(self._lookup_attr)).call

    @classmethod
    def _create(cls, *, key: str | None, value: str | None, key_size: int | None,
                value_size: int | None, max_entries: int, name: str, flags: int = 0,
                **extra: Any) -> Any:
        if not _NAME_OK.match(name):
            raise UsageError(f"map name {name!r} must be at most 15 characters of "
                             "A-Z, a-z, 0-9, '_' and '.'")
        if max_entries < 1:
            raise UsageError(f"max_entries must be at least 1, got {max_entries}")
        kc, vc = _Codec(key, key_size, "key"), _Codec(value, value_size, "value")
        attr = _ffi.MapCreateAttr()
        attr.map_type = cls._map_type
        attr.key_size = kc.size
        attr.value_size = vc.size
        attr.max_entries = max_entries
        attr.map_flags = flags
        attr.map_name = name.encode()
        fd = _sc.bpf(_c.BPF_MAP_CREATE, _ffi.attr_bytes(attr))
        return cls(fd, map_type=cls._map_type, key=key, value=value, key_size=kc.size,
                   value_size=vc.size, max_entries=max_entries, name=name, **extra)

    # ------------------------------------------------------------------ resource

    @property
    def fd(self) -> int:
        """The map's file descriptor.

        Raises:
            ClosedResourceError: after close().
        """
        if self._fd < 0:
            raise ClosedResourceError(f"eBPF map {self.name or '<unnamed>'!r} is closed")
        return self._fd

    def close(self) -> None:
        """Close this handle (idempotent); programs using the map keep it alive."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _sc.close(fd)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"{type(self).__name__}({self.name!r}, {self.max_entries} entries, {state})"

    # --------------------------------------------------------------- raw elements

    def _call(self, cmd: int, value_addr: int, flags: int = 0) -> int:
        a = self._attr
        a.map_fd = self.fd
        a.key = self._kview.address
        a.value = value_addr
        a.flags = flags
        return _sc.bpf(cmd, self._attr_mv)

    def lookup_raw(self, key: Any) -> bytes | None:
        """The raw value bytes at ``key`` (all CPUs' for per-CPU maps), or None.

        Raises:
            ClosedResourceError: after close().
        """
        if self._fd < 0:
            self.fd  # noqa: B018 - raises ClosedResourceError
        self._kbuf[:] = self._key.encode(key) or b"\0"
        if self._lookup_call() == -1:
            err = get_errno()
            if err == _errno.ENOENT:
                return None
            raise _sc.os_error(err, "bpf")
        return bytes(self._vbuf)

    def update_raw(self, key: Any, raw_value: bytes, *, flags: int = _ffi.BPF_ANY) -> None:
        """Store raw value bytes at ``key`` (``flags``: BPF_ANY, BPF_NOEXIST, BPF_EXIST).

        Raises:
            UsageError: the value has the wrong size, or the map is full.
            FileExistsError, FileNotFoundError: NOEXIST/EXIST not satisfied.
        """
        if len(raw_value) != len(self._vbuf):
            raise UsageError(f"value for {self!r} must be {len(self._vbuf)} bytes, got "
                             f"{len(raw_value)}")
        self._kbuf[:] = self._key.encode(key) or b"\0"
        self._vbuf[:] = raw_value
        try:
            self._call(_c.BPF_MAP_UPDATE_ELEM, self._vview.address, flags)
        except OSError as exc:
            if exc.errno == _errno.E2BIG:
                raise UsageError(f"{self!r} is full ({self.max_entries} entries); delete "
                                 "some or create it larger") from exc
            raise

    def _next_key(self, key: bytes | None) -> bytes | None:
        a = self._attr
        a.map_fd, a.value, a.flags = self.fd, self._nview.address, 0
        a.key = 0  # NULL: the first key
        if key is not None:
            self._kbuf[:] = key
            a.key = self._kview.address
        try:
            _sc.bpf(_c.BPF_MAP_GET_NEXT_KEY, self._attr_mv)
        except FileNotFoundError:
            return None
        return bytes(self._nbuf)

    def raw_keys(self) -> list[bytes]:
        """Every key's bytes, in the kernel's order (a snapshot)."""
        out: list[bytes] = []
        key = self._next_key(None)
        while key is not None and len(out) <= self.max_entries:
            out.append(key)
            key = self._next_key(key)
        return out

    # ----------------------------------------------------------- mapping protocol

    def _decode_value(self, raw: bytes) -> Any:
        return self._value.decode(raw)

    def _encode_value(self, value: Any) -> bytes:
        return self._value.encode(value)

    def __getitem__(self, key: Any) -> Any:
        raw = self.lookup_raw(key)
        if raw is None:
            raise KeyError(key)
        return self._decode_value(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update_raw(key, self._encode_value(value))

    def __delitem__(self, key: Any) -> None:
        self._kbuf[:] = self._key.encode(key) or b"\0"
        try:
            self._call(_c.BPF_MAP_DELETE_ELEM, 0)
        except FileNotFoundError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[Any]:
        for raw in self.raw_keys():
            yield self._key.decode(raw)

    def __len__(self) -> int:
        return len(self.raw_keys())


class HashMap(BpfMap):
    """``BPF_MAP_TYPE_HASH``: keys to values, up to ``max_entries``."""

    _map_type = _ffi.BPF_MAP_TYPE_HASH

    @classmethod
    def create(cls, *, key: str | None = None, value: str | None = None,
               key_size: int | None = None, value_size: int | None = None,
               max_entries: int, name: str = "", preallocate: bool = True) -> HashMap:
        """A new hash map.

        Args:
            key: ``struct`` format of keys ("I", "QQ"), or None for raw bytes of key_size.
            value: ``struct`` format of values, or None for raw bytes of value_size.
            key_size: key bytes (needed when ``key`` is None).
            value_size: value bytes (needed when ``value`` is None).
            max_entries: capacity.
            name: the map's name.
            preallocate: allocate every element up front (the kernel's default).

        Raises:
            UsageError: a bad size, format or name.
            PermissionError: no CAP_BPF.
        """
        m: HashMap = cls._create(key=key, value=value, key_size=key_size,
                                 value_size=value_size, max_entries=max_entries, name=name,
                                 flags=0 if preallocate else _ffi.BPF_F_NO_PREALLOC)
        return m


class ArrayMap(BpfMap):
    """``BPF_MAP_TYPE_ARRAY``: ``max_entries`` values at keys 0..max_entries-1, all
    present from the start (zeroed); elements cannot be deleted."""

    _map_type = _ffi.BPF_MAP_TYPE_ARRAY

    @classmethod
    def create(cls, *, value: str | None = None, value_size: int | None = None,
               max_entries: int, name: str = "") -> ArrayMap:
        """A new array map of ``max_entries`` zeroed values (keys are u32 indexes).

        Raises:
            UsageError: a bad size, format or name.
            PermissionError: no CAP_BPF.
        """
        m: ArrayMap = cls._create(key="I", value=value, key_size=4, value_size=value_size,
                                  max_entries=max_entries, name=name)
        return m

    def __delitem__(self, key: Any) -> None:
        raise UsageError("array map elements cannot be deleted; store a zero value")

    def __iter__(self) -> Iterator[Any]:
        return iter(range(self.max_entries))

    def __len__(self) -> int:
        return self.max_entries


class _PerCpu(BpfMap):
    """Values are tuples with one entry per possible CPU, each padded to 8 bytes."""

    def __init__(self, fd: int, **kw: Any) -> None:
        super().__init__(fd, **kw)
        self._stride = -(-self._value.size // 8) * 8
        self._slots = possible_cpus()
        self._setup_buffers()

    def _decode_value(self, raw: bytes) -> tuple[Any, ...]:
        size, stride = self._value.size, self._stride
        return tuple(self._value.decode(raw[i * stride:i * stride + size])
                     for i in range(self._slots))

    def _encode_value(self, value: Any) -> bytes:
        if not isinstance(value, list | tuple) or len(value) != self._slots:
            raise UsageError(f"a per-CPU value is a sequence of {self._slots} values (one "
                             f"per possible CPU), got {value!r}")
        pad = b"\0" * (self._stride - self._value.size)
        return b"".join(self._value.encode(v) + pad for v in value)

    def total(self, key: Any) -> int:
        """The sum over CPUs of a numeric value at ``key`` (a counter's total)."""
        return int(sum(self[key]))


class PerCpuHashMap(_PerCpu, HashMap):
    """``BPF_MAP_TYPE_PERCPU_HASH``: each CPU has its own value per key (no atomics
    needed in the program); reading returns one value per possible CPU."""

    _map_type = _ffi.BPF_MAP_TYPE_PERCPU_HASH


class PerCpuArrayMap(_PerCpu, ArrayMap):
    """``BPF_MAP_TYPE_PERCPU_ARRAY``: an array with one value per possible CPU."""

    _map_type = _ffi.BPF_MAP_TYPE_PERCPU_ARRAY
