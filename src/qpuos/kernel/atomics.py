"""Atomic operations on 64-bit words of a shared buffer, as numba intrinsics.

Shared-memory structures (the ring's head and tail, the arena's lock word) need loads
with acquire ordering, stores with release ordering, compare-and-swap and fetch-and-add
on aligned 8-byte words that another process may touch at the same moment. Python has
none of these, and the ``atomics`` package costs ~13 µs per operation here; LLVM has them
all, so each is a few lines of IR emitted through ``numba.extending.intrinsic``.

Every function takes a ``uint64`` numpy array (usually a view over an ``mmap`` or a
``SharedMemory`` buffer, which is page aligned) and a word index. They are ``@njit``
functions: call them from other numba code for the full speed (a few ns); from Python
each call also pays numba's dispatch (~0.2-0.5 µs).

Ordering: ``load_acquire`` / ``store_release`` pair up (what is written before a release
store is visible after the acquire load that sees it); ``cas`` and ``fetch_add`` are
sequentially consistent.

``fetch_or`` and ``fetch_and`` work on an array of any unsigned width (``uint8`` to
``uint64``: register windows have 8-, 16-, 32- and 64-bit registers) and return a value
of that width; they are sequentially consistent too. Their operand is truncated to the
width; give it as an ``int64`` (a 64-bit mask with bit 63 set as its two's complement,
``mask - 2**64``): numba cannot dispatch a Python int above ``2**63 - 1`` to a function
it already compiled for ``int64``. ``fence`` is a full barrier (``mfence`` on x86-64,
``dmb ish`` on arm64).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "cas", "fence", "fetch_add", "fetch_and", "fetch_or", "load_acquire", "store_release",
    "words",
]


def _word_pointer(context: Any, builder: Any, arr_type: Any, arr: Any, index: Any) -> Any:
    ary = context.make_array(arr_type)(context, builder, arr)
    return cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
        context, builder, arr_type, ary, [index], wraparound=False)


@intrinsic
def _cas_ir(typingctx: Any, arr: Any, index: Any, expected: Any, new: Any) -> Any:
    sig = types.uint64(arr, index, expected, new)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        exp = context.cast(builder, args[2], signature.args[2], types.uint64)
        val = context.cast(builder, args[3], signature.args[3], types.uint64)
        pair = builder.cmpxchg(ptr, exp, val, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return sig, codegen


@intrinsic
def _fetch_add_ir(typingctx: Any, arr: Any, index: Any, delta: Any) -> Any:
    sig = types.uint64(arr, index, delta)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        val = context.cast(builder, args[2], signature.args[2], types.uint64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return sig, codegen


@intrinsic
def _load_acquire_ir(typingctx: Any, arr: Any, index: Any) -> Any:
    sig = types.uint64(arr, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def _store_release_ir(typingctx: Any, arr: Any, index: Any, value: Any) -> Any:
    sig = types.void(arr, index, value)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        val = context.cast(builder, args[2], signature.args[2], types.uint64)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


def _rmw_intrinsic(op: str) -> Any:
    """An intrinsic ``(arr, index, operand) -> old`` doing atomic ``op`` at the array's width."""

    def typer(typingctx: Any, arr: Any, index: Any, operand: Any) -> Any:
        if not (isinstance(arr, types.Array) and arr.dtype in types.unsigned_domain):
            return None
        sig = arr.dtype(arr, index, operand)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            arr_type = signature.args[0]
            ptr = _word_pointer(context, builder, arr_type, args[0], args[1])
            val = context.cast(builder, args[2], signature.args[2], arr_type.dtype)
            return builder.atomic_rmw(op, ptr, val, "seq_cst")

        return sig, codegen

    typer.__name__ = f"_fetch_{op}_ir"
    return intrinsic(typer)


@intrinsic
def _fence_ir(typingctx: Any) -> Any:
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


# Typed as Any: numba's stubs type an intrinsic's call as taking its typing context too.
_cas: Any = _cas_ir
_fetch_add: Any = _fetch_add_ir
_load_acquire: Any = _load_acquire_ir
_store_release: Any = _store_release_ir
_fetch_or: Any = _rmw_intrinsic("or")
_fetch_and: Any = _rmw_intrinsic("and")
_fence: Any = _fence_ir


@njit(cache=True, inline="always")
def cas(arr: Any, index: int, expected: int, new: int) -> int:
    """Compare-and-swap word ``index``: if it holds ``expected`` store ``new``.

    Returns the value the word held before (equal to ``expected`` on success).
    """
    return int(_cas(arr, index, expected, new))


@njit(cache=True, inline="always")
def fetch_add(arr: Any, index: int, delta: int) -> int:
    """Add ``delta`` to word ``index`` (mod 2**64); returns the value before."""
    return int(_fetch_add(arr, index, delta))


@njit(cache=True, inline="always")
def load_acquire(arr: Any, index: int) -> int:
    """Read word ``index``; later reads cannot move before this one."""
    return int(_load_acquire(arr, index))


@njit(cache=True, inline="always")
def store_release(arr: Any, index: int, value: int) -> None:
    """Write word ``index``; earlier writes cannot move after this one."""
    _store_release(arr, index, value)


@njit(cache=True, inline="always")
def fetch_or(arr: Any, index: int, mask: int) -> int:
    """OR ``mask`` into element ``index`` of an unsigned array; returns the value before."""
    return _fetch_or(arr, index, mask)  # type: ignore[no-any-return]


@njit(cache=True, inline="always")
def fetch_and(arr: Any, index: int, mask: int) -> int:
    """AND ``mask`` into element ``index`` of an unsigned array; returns the value before.

    >>> r = np.array([0b1010], dtype=np.uint32)
    >>> int(fetch_or(r, 0, 0b0101)), int(fetch_and(r, 0, 0b0011)), int(r[0])
    (10, 15, 3)
    """
    return _fetch_and(arr, index, mask)  # type: ignore[no-any-return]


@njit(cache=True, inline="always")
def fence() -> None:
    """Full memory barrier: no load or store moves across it, in either direction."""
    _fence()


def words(buffer: Any, offset: int = 0, count: int | None = None) -> np.ndarray[Any, Any]:
    """A ``uint64`` view of ``buffer`` starting at byte ``offset`` (must be 8-aligned).

    >>> w = words(bytearray(32))
    >>> int(cas(w, 1, 0, 7)), int(load_acquire(w, 1)), int(fetch_add(w, 1, 3)), int(w[1])
    (0, 7, 7, 10)
    """
    if offset % 8:
        raise ValueError(f"offset {offset} is not 8-byte aligned")
    arr = np.frombuffer(buffer, dtype=np.uint64, count=-1 if count is None else count,
                        offset=offset)
    return arr
