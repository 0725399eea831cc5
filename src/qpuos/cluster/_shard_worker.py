"""One shard of a sharded register: the object each Ray shard actor holds.

The driver (``shards.py``) calls these methods through actor handles; Ray runs one
actor's calls one at a time, in the order the driver submitted them, and an argument
that is an ``ObjectRef`` (a partner's half-shard) is resolved before the call starts.
That resolution is the *acquire*; a ``pack`` returning its half into the object store is
the *release*. Each shard also keeps its own epoch (swaps done) and checks every half it
receives against it, so an ordering bug surfaces as a ``ShardError`` rather than as a
wrong amplitude. ``relaxed`` unpacks skip the acquire (unsafe; calibration only).

A shard that raised refuses further work until ``reset``: a half-applied step must not
be built upon.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from qpuos.cluster._inline import poll
from qpuos.cluster._plan import LocalOp, SwapStep
from qpuos.cluster._shard_kernels import parity_mass, sample_sorted
from qpuos.errors import ShardError
from qpuos.quantum.statevector import apply_gate

__all__ = ["Half", "ShardWorker", "check_fits", "peak_bytes"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def peak_bytes(num_qubits: int, shard_bits: int) -> int:
    """Peak memory of one shard: its amplitudes plus a half sent and a half received."""
    return 2 * 16 * (1 << (num_qubits - shard_bits))


def check_fits(num_qubits: int, shard_bits: int, memory_limit: int | None) -> None:
    """Raise ``ShardError`` when one shard's peak exceeds ``memory_limit``, naming the
    shard count that would fit."""
    n, k, limit = num_qubits, shard_bits, memory_limit
    if limit is None or peak_bytes(n, k) <= limit:
        return
    fits = next((j for j in range(k, n + 1) if peak_bytes(n, j) <= limit), None)
    hint = (f"use {1 << fits} shards ({peak_bytes(n, fits):,} bytes each)"
            if fits is not None else "raise the limit")
    raise ShardError(f"a register of {n} qubits over {1 << k} shard(s) needs "
                     f"{peak_bytes(n, k):,} bytes per shard, over the limit of "
                     f"{limit:,}; {hint}")


@dataclass(frozen=True, slots=True)
class Half:
    """Half a shard on its way to the partner, stamped with the sender and its epoch."""

    src: int
    epoch: int
    data: NDArray[np.complex128]


def _guarded(fn: Callable[Concatenate[ShardWorker, _P], _R]
             ) -> Callable[Concatenate[ShardWorker, _P], _R]:
    @wraps(fn)
    def call(self: ShardWorker, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.failed is not None:
            raise ShardError(f"shard {self.index} stopped after an earlier failure "
                             f"({self.failed}); rerun the circuit")
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            raise
    return cast("Callable[Concatenate[ShardWorker, _P], _R]", call)


class ShardWorker:
    """The amplitudes of one shard and the steps that change them."""

    def __init__(self) -> None:
        self.index = 0
        self.failed: str | None = None
        self._n = self._k = 0
        self._psi: NDArray[np.complex128] = np.ones(1, dtype=np.complex128)
        self._epoch = self._stale = self._checks = 0

    def reset(self, num_qubits: int, shard_bits: int, index: int,
              memory_limit: int | None) -> int:
        """Hold shard ``index`` of ``|0...0>``; returns this process's pid."""
        self.failed = None
        check_fits(num_qubits, shard_bits, memory_limit)
        self._psi = np.ones(1, dtype=np.complex128)  # drop the old register first
        self._psi = np.zeros(1 << (num_qubits - shard_bits), dtype=np.complex128)
        if index == 0:
            self._psi[0] = 1.0
        self.index, self._n, self._k = index, num_qubits, shard_bits
        self._epoch = self._stale = self._checks = 0
        return os.getpid()

    def _check_epoch(self, epoch: int, what: str) -> None:
        if epoch != self._epoch:
            raise ShardError(f"shard {self.index} got {what} for epoch {epoch} while at "
                             f"epoch {self._epoch}: steps arrived out of order (a bug)")

    def _gbit(self, pos: int) -> int:
        return (self.index >> (self._k - 1 - pos)) & 1

    def _half(self, loc: int, bit: int) -> NDArray[np.complex128]:
        a = loc - self._k
        return self._psi.reshape(1 << a, 2, -1)[:, bit, :]

    @_guarded
    def apply(self, ops: Sequence[LocalOp], epoch: int) -> int:
        """Run a segment of local gates in place; returns the epoch."""
        self._check_epoch(epoch, "a segment")
        m = self._n - self._k
        state = self._psi.reshape((2,) * m)
        for op in ops:
            glob = [t for t, p in enumerate(op.positions) if p < self._k]
            locs = [p - self._k for p in op.positions if p >= self._k]
            matrix = op.matrix
            if glob:
                matrix = self._sub_block(op, glob)
                if not locs:
                    if matrix[0, 0] != 1:
                        self._psi *= matrix[0, 0]
                    continue
            apply_gate(state, matrix, locs)
        return epoch

    def _sub_block(self, op: LocalOp, glob: list[int]) -> NDArray[np.complex128]:
        """The block of a gate that leaves its global qubits alone, at this shard's bits."""
        width = len(op.positions)
        want = [(width - 1 - t, self._gbit(op.positions[t])) for t in glob]
        idx = [r for r in range(1 << width) if all((r >> s) & 1 == b for s, b in want)]
        return np.ascontiguousarray(op.matrix[np.ix_(idx, idx)])

    @_guarded
    def pack(self, step: SwapStep, epoch: int, lag_s: float) -> Half:
        """Release: copy out the half the partner needs (after ``lag_s`` of drift)."""
        self._check_epoch(epoch, "a pack")
        if lag_s > 0:
            time.sleep(lag_s)
        data = self._half(step.loc, 1 - self._gbit(step.glob)).copy()
        return Half(self.index, epoch, data)

    @_guarded
    def unpack(self, step: SwapStep, epoch: int, half: Any, relaxed: bool) -> int:
        """Acquire: put the partner's half in place and advance the epoch.

        ``half`` is the partner's ``Half`` (already resolved), or with ``relaxed`` a
        one-element list holding its unresolved reference: used if it happens to be
        ready, else this shard keeps its old amplitudes (a stale read, counted).
        """
        self._check_epoch(epoch, "an unpack")
        partner = self.index ^ (1 << (self._k - 1 - step.glob))
        if relaxed:
            ready, half = poll(half[0])
            if not ready or half.src != partner or half.epoch != epoch:
                self._stale += 1
                self._epoch += 1
                return self._epoch
        if half.src != partner or half.epoch != epoch:
            raise ShardError(f"shard {self.index} at epoch {epoch} expected the half of "
                             f"shard {partner} at the same epoch, got shard {half.src} at "
                             f"epoch {half.epoch}: the exchange is out of order (a bug)")
        self._checks += 1
        view = self._half(step.loc, 1 - self._gbit(step.glob))
        view[...] = half.data.reshape(view.shape)
        self._epoch += 1
        return self._epoch

    @_guarded
    def step(self, epoch: int, swap_in: SwapStep | None, half: Any, relaxed: bool,
             ops: Sequence[LocalOp], swap_out: SwapStep | None,
             lag_s: float) -> Half | int:
        """One epoch: ``unpack`` swap ``epoch - 1``, ``apply`` the segment, ``pack`` for
        swap ``epoch``. Returns the half released, or the epoch after the last swap."""
        if swap_in is not None:
            self.unpack(swap_in, epoch - 1, half, relaxed)
        self.apply(ops, epoch)
        if swap_out is None:
            return epoch
        return self.pack(swap_out, epoch, lag_s)

    @_guarded
    def counters(self) -> tuple[int, int, int]:
        """``(epoch, stale reads, acquire checks passed)`` since the last reset."""
        return self._epoch, self._stale, self._checks

    @_guarded
    def mass(self) -> float:
        """The squared norm of this shard's amplitudes."""
        return float(np.vdot(self._psi, self._psi).real)

    @_guarded
    def parity(self, mask: int) -> tuple[float, float]:
        """Probability mass at even and at odd parity of the local bits in ``mask``."""
        even, odd = parity_mass(self._psi, mask)
        return float(even), float(odd)

    @_guarded
    def sample(self, count: int, seed: int) -> NDArray[np.int64]:
        """``count`` local indices drawn with probability ``|psi|**2`` (sorted)."""
        out = np.zeros(count, dtype=np.int64)
        if count:
            total = float(np.vdot(self._psi, self._psi).real)
            rng = np.random.default_rng(seed)
            targets = np.sort(rng.random(count)) * total
            sample_sorted(self._psi, targets, out)
        return out

    @_guarded
    def fetch(self) -> NDArray[np.complex128]:
        """A copy of this shard's amplitudes."""
        return self._psi.copy()
