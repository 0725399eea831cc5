"""A state vector sharded over Ray actors, with explicit synchronisation modes.

Design (read before editing):

* Layout. An ``n``-qubit register over ``2**k`` shards: the top ``k`` qubits (physical
  positions ``0..k-1``, the most significant bits of the amplitude index, as in
  ``quantum.statevector``) select the shard; each shard holds ``2**(n-k)`` amplitudes
  in one numpy array inside its own Ray actor. ``_plan.py`` turns a circuit into
  *segments* (gates every shard runs alone, in place) and *swaps* (a global and a local
  position trade qubits: partner shards trade half-shards through Ray's object store,
  where a numpy array travels without pickling its data and is read zero-copy).
* Steps. Epoch ``e`` is one actor call per shard (``ShardWorker.step``): take in the
  partner's half of swap ``e - 1``, run segment ``e``, release the half for swap ``e``.
* Ordering facts we rely on: Ray runs one actor's calls one at a time in the order this
  driver submitted them; an ``ObjectRef`` passed as a call's argument is resolved before
  the call starts; a call's return value is immutable once in the object store.
* ``barrier`` mode (sequentially consistent). Every swap is a cluster-wide epoch: the
  driver submits epoch ``e`` to all shards and waits until every shard has released
  its half before submitting epoch ``e + 1``. All shards see one global order of steps
  and none is ever an epoch ahead of another. Costs a driver round trip per swap.
* ``pairwise`` mode (acquire/release). The driver submits the whole plan at once and
  waits only at the end. A shard's released half carries everything that shard did
  before it (release); its partner's next call takes that ``ObjectRef`` as an argument,
  so it cannot start before the release (acquire). Only exchange partners synchronise:
  a shard waits for its one partner of each swap, never for the whole cluster, so a
  slow shard delays others only through the partners whose data depends on it.
  Each shard carries its own epoch (swaps done) and every half is stamped with the
  sender's; ``unpack`` refuses a half from the wrong shard or epoch, so a reordering
  bug raises ``ShardError`` instead of corrupting amplitudes. Correctness: a shard's
  amplitudes after epoch ``e`` depend only on its own steps (program order, guaranteed
  by the actor) and on its partner's half of epoch ``e`` (acquired), so by induction
  on epochs every shard computes what the sequential simulator computes.
* ``relaxed`` mode (UNSAFE, for the calibration test only). Like pairwise, but the half
  is passed inside a list, which Ray does not resolve: ``unpack`` uses it only if it
  happens to be ready, else keeps its stale amplitudes (counted as ``stale_reads``).
  A shard that drifts late (``Drift``) then corrupts the state; the calibration's
  Bell/GHZ correlations must notice. Never use it for results.
* Memory. ``memory_limit`` bounds one shard's peak (its amplitudes plus a half out and a
  half in: ``2 * 16 * 2**(n-k)`` bytes); a register that does not fit is refused before
  any actor allocates, and the message names the shard count that would fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from qpuos.cluster._counts import format_words
from qpuos.cluster._inline import InlineHandle
from qpuos.cluster._plan import LocalOp, Plan, SwapStep, plan_circuit, split_measurements
from qpuos.cluster._ray import ensure_ray
from qpuos.cluster._shard_worker import ShardWorker, check_fits
from qpuos.cluster._sync import MODES, Drift, Mode, SyncStats
from qpuos.errors import ClosedResourceError, QpuosError, ShardError, UsageError
from qpuos.quantum.circuit import Circuit, Register
from qpuos.quantum.statevector import State

__all__ = ["MODES", "Drift", "Mode", "ShardedSimulator", "SyncStats"]

def _shard_bits(shards: int) -> int:
    if shards < 1 or shards & (shards - 1):
        raise UsageError(f"shards must be a power of two (1, 2, 4, ...), got {shards}")
    return shards.bit_length() - 1


class ShardedSimulator:
    """A pool of shard actors that run circuits on a sharded state vector.

    The register lives in the shards between calls: ``run`` builds it, ``sample``,
    ``correlation`` and ``state`` read it. Close the simulator to release its actors.

    Args:
        shards: how many shard actors to keep (a power of two); a run may use fewer.
        memory_limit: largest peak a shard may need, in bytes (None: no limit).
        backend: ``"ray"`` (actors; Ray starts locally on demand) or ``"inline"`` (all
            shards in this process, in order: no concurrency, no Ray needed).
        address: a Ray cluster to join instead of starting one.

    Raises:
        UsageError: bad options, or Ray is not installed for ``backend="ray"``.

    >>> c = Circuit(num_qubits=3)
    >>> c.append("h", [2]); c.append("cx", [2, 0])
    >>> with ShardedSimulator(shards=2, backend="inline") as sim:
    ...     stats = sim.run(c, mode="pairwise")
    ...     counts = sim.sample(100, seed=1)
    >>> stats.swaps, sorted(counts)
    (1, ['000', '101'])
    """

    def __init__(self, *, shards: int = 4, memory_limit: int | None = None,
                 backend: Literal["ray", "inline"] = "ray",
                 address: str | None = None) -> None:
        _shard_bits(shards)
        if memory_limit is not None and memory_limit < 1:
            raise UsageError(f"memory_limit must be a positive byte count, got {memory_limit}")
        if backend not in ("ray", "inline"):
            raise UsageError(f"backend must be 'ray' or 'inline', got {backend!r}")
        self.memory_limit = memory_limit
        self.backend = backend
        self._ray: Any = ensure_ray(address=address) if backend == "ray" else None
        self._workers: list[Any] = [self._spawn() for _ in range(shards)]
        self._plan: Plan | None = None
        self._measured: tuple[tuple[int, int], ...] = ()
        self._cregs: list[Register] = []
        self._closed = False

    def _spawn(self) -> Any:
        if self._ray is None:
            return InlineHandle(ShardWorker())
        actor = self._ray.remote(ShardWorker).options(num_cpus=0,
                                                      scheduling_strategy="SPREAD")
        return actor.remote()

    def __enter__(self) -> ShardedSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the shard actors (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._ray is not None:
            for w in self._workers:
                self._ray.kill(w)
        self._workers = []

    @property
    def shards(self) -> int:
        """The number of shard actors in the pool."""
        return len(self._workers)

    @property
    def worker_handles(self) -> list[Any]:
        """The shard actors' handles, shard 0 first (for fault injection in tests)."""
        return list(self._workers)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the sharded simulator is closed; create a new one")

    def _get(self, refs: Sequence[Any]) -> list[Any]:
        if self._ray is None:
            return [r.value for r in refs]
        rx = self._ray.exceptions
        try:
            return list(self._ray.get(list(refs)))
        except rx.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, QpuosError):
                raise cause from None
            raise ShardError(f"a shard step failed: {type(cause).__name__}: {cause}") from exc
        except rx.RayActorError as exc:
            raise ShardError(f"a shard actor died ({type(exc).__name__}); the register is "
                             "lost: run the circuit again (dead shards are replaced)") from exc

    def _reset(self, n: int, k: int) -> None:
        for attempt in range(2):
            try:
                # shards this run does not use drop their old registers (memory)
                self._get([w.reset.remote(n, k, s, self.memory_limit) if s < 1 << k
                           else w.reset.remote(0, 0, 0, None)
                           for s, w in enumerate(self._workers)])
                return
            except ShardError:
                if attempt or self._ray is None:
                    raise
                self._replace_dead()

    def _replace_dead(self) -> None:
        for s, w in enumerate(self._workers):
            try:
                self._ray.get(w.counters.remote())
            except self._ray.exceptions.RayActorError:
                self._workers[s] = self._spawn()
            except self._ray.exceptions.RayTaskError:
                pass  # alive; reset clears its failure

    def run(self, circuit: Circuit, *, shards: int | None = None,
            mode: Mode = "pairwise", drift: Drift | None = None) -> SyncStats:
        """Run ``circuit`` from ``|0...0>`` on ``shards`` shards (default: all).

        Terminal measurements are kept for ``sample``; the rest must be unitary.

        Args:
            circuit: the circuit to run.
            shards: shards to use, a power of two up to ``self.shards``.
            mode: ``"barrier"``, ``"pairwise"`` or ``"relaxed"`` (unsafe).
            drift: delay one shard's releases (calibration of the sync modes).

        Returns:
            The run's synchronisation statistics.

        Raises:
            UsageError: bad options or a non-unitary circuit.
            ShardError: the register does not fit ``memory_limit``, or a shard failed.
        """
        self._check_open()
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        count = self.shards if shards is None else shards
        k = _shard_bits(count)
        if count > self.shards:
            raise UsageError(f"{count} shards asked but the pool has {self.shards}")
        n = circuit.num_qubits
        if drift is not None and not (0 <= drift.shard < count and drift.lag_s >= 0):
            raise UsageError(f"drift must name a shard within 0..{count - 1} and a lag "
                             f">= 0, got {drift}")
        check_fits(n, k, self.memory_limit)
        body, measured = split_measurements(circuit)
        plan = plan_circuit(body, k)
        self._plan = None
        self._reset(n, k)
        workers = self._workers[:count]
        t0 = time.perf_counter()
        last, waits = self._execute(plan, workers, mode, drift)
        self._get(last)
        waits += 1
        counters = self._get([w.counters.remote() for w in workers])
        elapsed = time.perf_counter() - t0
        epochs = {c[0] for c in counters}
        if len(epochs) != 1 or epochs != {plan.swaps}:
            raise ShardError(f"shards ended at epochs {sorted(epochs)} but the plan has "
                             f"{plan.swaps} swaps (a bug)")
        self._plan, self._measured, self._cregs = plan, measured, list(circuit.cregs)
        return SyncStats(mode, count, plan.swaps, plan.swaps, plan.exchanges,
                         plan.global_gates, plan.free_global_gates,
                         plan.swaps * 8 * (1 << n), waits,
                         sum(c[2] for c in counters), sum(c[1] for c in counters), elapsed)

    def _execute(self, plan: Plan, workers: list[Any], mode: Mode,
                 drift: Drift | None) -> tuple[list[Any], int]:
        """Submit every step; returns each shard's last call and the barrier waits.

        Epoch ``e`` is one actor call per shard: take in swap ``e - 1`` (the partner's
        half of it), run segment ``e``, release the half for swap ``e``. One call per
        swap instead of three keeps Ray's per-call cost off the critical path.
        """
        k = plan.shard_bits
        segments: list[tuple[LocalOp, ...]] = [()]
        swaps: list[SwapStep] = []
        for step in plan.steps:
            if isinstance(step, SwapStep):
                swaps.append(step)
                segments.append(())
            else:
                segments[-1] += step
        lag = [0.0] * len(workers)
        if drift is not None:
            lag[drift.shard] = drift.lag_s
        relaxed = mode == "relaxed"
        calls: list[Any] = []
        waits = 0
        for e, segment in enumerate(segments):
            swap_in = swaps[e - 1] if e else None
            swap_out = swaps[e] if e < len(swaps) else None
            flip = 1 << (k - 1 - swap_in.glob) if swap_in is not None else 0
            calls = [w.step.remote(e, swap_in,
                                   None if swap_in is None
                                   else [calls[s ^ flip]] if relaxed else calls[s ^ flip],
                                   relaxed, segment, swap_out, lag[s])
                     for s, w in enumerate(workers)]
            if mode == "barrier" and swap_out is not None:
                released = self._get(calls)
                waits += 1
                if {h.epoch for h in released} != {e}:
                    raise ShardError(f"barrier {e}: shards released epochs "
                                     f"{sorted({h.epoch for h in released})} (a bug)")
        return calls, waits

    # -- reading the register ------------------------------------------------------------

    def _current(self) -> Plan:
        self._check_open()
        if self._plan is None:
            raise UsageError("no register yet: call run() first")
        return self._plan

    def _active(self) -> list[Any]:
        return self._workers[:1 << self._current().shard_bits]

    def norm(self) -> float:
        """The register's squared norm (1 up to rounding after a consistent run).

        Raises:
            UsageError: no register yet (call ``run`` first).
            ShardError: a shard failed or died.
        """
        return float(sum(self._get([w.mass.remote() for w in self._active()])))

    def state(self) -> State:
        """Gather the whole register into this process.

        Returns:
            A new state, axis ``q`` = qubit ``q``, as ``quantum.simulate`` returns it.

        Raises:
            UsageError: no register yet (call ``run`` first).
            ShardError: a shard failed or died.
        """
        plan = self._current()
        parts = self._get([w.fetch.remote() for w in self._active()])
        full = np.concatenate(parts).reshape((2,) * plan.num_qubits)
        return np.ascontiguousarray(np.transpose(full, plan.final_positions))

    def correlation(self, qubits: Sequence[int]) -> float:
        """The exact ``<Z...Z>`` on ``qubits``, computed where the amplitudes are.

        Args:
            qubits: the qubits whose Z operators are multiplied together.

        Returns:
            The expectation normalised by the register's norm (nan for a zero norm).

        Raises:
            UsageError: no register yet, or a qubit out of range.
            ShardError: a shard failed or died.
        """
        plan = self._current()
        n, k = plan.num_qubits, plan.shard_bits
        gmask = lmask = 0
        for q in qubits:
            if not 0 <= q < n:
                raise UsageError(f"qubit {q} is out of range 0..{n - 1}")
            p = plan.final_positions[q]
            if p < k:
                gmask ^= 1 << (k - 1 - p)
            else:
                lmask ^= 1 << (n - 1 - p)
        sums = self._get([w.parity.remote(lmask) for w in self._active()])
        total = signed = 0.0
        for s, (even, odd) in enumerate(sums):
            sign = -1.0 if (s & gmask).bit_count() & 1 else 1.0
            signed += sign * (even - odd)
            total += even + odd
        return signed / total if total > 0 else math.nan

    def sample(self, shots: int, *, seed: int | None = None) -> dict[str, int]:
        """Measure the register ``shots`` times (it is left as it is).

        Bitstrings follow OpenQASM tools: per register the highest classical bit first,
        registers separated by a space. A circuit without measurements reads qubit ``q``
        into bit ``q`` of one register.

        Args:
            shots: how many samples.
            seed: the sampling seed (None: fresh entropy).

        Returns:
            Outcome string -> count, most frequent first.

        Raises:
            UsageError: no register yet, or negative shots.
            ShardError: the register has zero norm, or a shard failed or died.
        """
        plan = self._current()
        if shots < 0:
            raise UsageError(f"shots must be >= 0, got {shots}")
        n, k = plan.num_qubits, plan.shard_bits
        workers = self._active()
        masses = np.array(self._get([w.mass.remote() for w in workers]))
        if not masses.sum() > 0:
            raise ShardError("the register has zero norm; nothing to sample")
        rng = np.random.default_rng(seed)
        per_shard = rng.multinomial(shots, masses / masses.sum())
        seeds = rng.integers(0, 2**63 - 1, size=len(workers))
        parts = self._get([w.sample.remote(int(c), int(sd))
                           for w, c, sd in zip(workers, per_shard, seeds, strict=True)])
        phys = np.concatenate([(s << (n - k)) + np.asarray(p, dtype=np.int64)
                               for s, p in enumerate(parts)])
        measured = self._measured or tuple((q, q) for q in range(n))
        words = np.zeros(phys.shape, dtype=np.int64)
        for q, c in measured:
            bit = (phys >> (n - 1 - plan.final_positions[q])) & 1
            words = (words & ~(1 << c)) | (bit << c)
        return format_words(words, self._cregs if self._measured else [Register("c", n)])
