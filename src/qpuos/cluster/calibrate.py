"""Calibration of the sync modes: Bell and GHZ correlations across shard boundaries.

An entangled state whose qubits sit in different shards is only right if every
exchange between those shards saw the partner's amplitudes of the same epoch; a stale
half-shard shows up as a wrong norm or a wrong correlation. So: prepare a Bell pair
(qubit 0, a global qubit, with the last qubit, a local one) or a GHZ state over every
global qubit and two local ones, rotate into a measurement basis, then compare with
theory both the exact correlation (computed in the shards) and the one measured from
shots. The other qubits are put in ``|+>`` so that each swap carries live amplitudes
(a swap of two ``|0>`` qubits moves only zeros and could not notice a stale read).

Injected *phase drift* (``Drift``): one shard releases its half-shards late. The safe
modes wait for it (a calibration must pass: no false alarm); ``relaxed`` does not, and
the check must fail. The inconsistency rate is the fraction of checks that failed.

Theory: Bell ``(|00> + |11>)/sqrt(2)`` has ``<ZZ> = <XX> = 1`` and ``<YY> = -1``; GHZ on
``m`` qubits has ``<Z_i Z_j> = 1`` for every pair and ``<X...X> = 1``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from qpuos.cluster.shards import Drift, Mode, ShardedSimulator
from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit

__all__ = ["CalibrationCheck", "CalibrationReport", "Correlation", "bell_circuit",
           "calibrate", "ghz_circuit"]


@dataclass(frozen=True, slots=True)
class Correlation:
    """One correlation: the product of one Pauli per qubit, in theory and as found."""

    paulis: str
    qubits: tuple[int, ...]
    theory: float
    exact: float
    measured: float


@dataclass(frozen=True, slots=True)
class CalibrationCheck:
    """One prepared state checked in every basis: passed, or what was off."""

    kind: str
    qubits: tuple[int, ...]
    correlations: tuple[Correlation, ...]
    norm_error: float
    stale_reads: int
    passed: bool


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """Every check of one calibration run, and the fraction that failed."""

    mode: str
    shards: int
    num_qubits: int
    drift: Drift | None
    checks: tuple[CalibrationCheck, ...]

    @property
    def inconsistency_rate(self) -> float:
        """Failed checks over all checks."""
        return sum(not c.passed for c in self.checks) / len(self.checks)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)


def _prepared(num_qubits: int, entangled: Sequence[int]) -> Circuit:
    """Spectators in ``|+>``; ``entangled[0]`` in ``|+>`` fanned out by a CX chain."""
    c = Circuit(num_qubits=num_qubits, num_clbits=len(entangled))
    for q in range(num_qubits):
        if q not in entangled:
            c.append("h", [q])
    c.append("h", [entangled[0]])
    for a, b in itertools.pairwise(entangled):
        c.append("cx", [a, b])
    return c


def _rotate_and_measure(c: Circuit, qubits: Sequence[int], paulis: str) -> Circuit:
    for i, (q, p) in enumerate(zip(qubits, paulis, strict=True)):
        if p == "Y":
            c.append("sdg", [q])
        if p in "XY":
            c.append("h", [q])
        c.append("measure", [q], clbits=[i])
    return c


def bell_circuit(num_qubits: int, a: int, b: int, paulis: str = "ZZ") -> Circuit:
    """A Bell pair on qubits ``a`` and ``b`` (``a`` in ``|+>``, then CX onto ``b``);
    ``a`` is measured in ``paulis[0]`` into clbit 0, ``b`` in ``paulis[1]`` into clbit 1.

    >>> bell_circuit(3, 2, 0, "XX").count_ops()
    {'h': 4, 'cx': 1, 'measure': 2}
    """
    return ghz_circuit(num_qubits, [a, b], paulis)


def ghz_circuit(num_qubits: int, qubits: Sequence[int], paulis: str) -> Circuit:
    """A GHZ state on ``qubits`` (fanned out from the first), then each qubit measured
    in its Pauli of ``paulis`` into clbit ``i`` (``"I"`` measures in Z as well).

    >>> ghz_circuit(4, [3, 2, 0], "ZZZ").count_ops()
    {'h': 2, 'cx': 2, 'measure': 3}
    """
    qs = list(qubits)
    if len(set(qs)) != len(qs) or any(not 0 <= q < num_qubits for q in qs) or len(qs) < 2:
        raise UsageError(f"GHZ qubits {qs} must be at least two distinct qubits of "
                         f"0..{num_qubits - 1}")
    if len(paulis) != len(qs) or set(paulis) - set("IXYZ"):
        raise UsageError(f"paulis {paulis!r} must give one of I, X, Y, Z per qubit")
    return _rotate_and_measure(_prepared(num_qubits, qs), qs, paulis)


_Groups = list[tuple[tuple[int, ...], float]]  # (indices into the qubits, theory)


def _cases(n: int, k: int) -> list[tuple[str, tuple[int, ...], list[tuple[str, _Groups]]]]:
    """Bell on (last qubit, qubit 0); GHZ fanned out from the last two qubits to every
    global one."""
    ghz = (n - 1, n - 2, *range(k))
    m = len(ghz)
    pair = (0, 1)
    return [("bell", (n - 1, 0), [("ZZ", [(pair, 1.0)]), ("XX", [(pair, 1.0)]),
                                  ("YY", [(pair, -1.0)])]),
            ("ghz", ghz, [("Z" * m, [((i, i + 1), 1.0) for i in range(m - 1)]),
                          ("X" * m, [(tuple(range(m)), 1.0)])])]


def calibrate(sim: ShardedSimulator, *, num_qubits: int, shards: int | None = None,
              mode: Mode = "pairwise", drift: Drift | None = None, trials: int = 1,
              shots: int = 1000, seed: int = 0, tolerance: float = 1e-9
              ) -> CalibrationReport:
    """Check Bell and GHZ correlations across shard boundaries, ``trials`` times.

    Each trial runs a Bell pair in ZZ, XX and YY and a GHZ state in Z and X. A check
    passes when, for every basis, the norm is 1 and the exact and measured
    correlations equal theory, all within ``tolerance`` (an ideal state never yields a
    violating shot, so the measured value is exact too).

    Args:
        sim: the sharded simulator to calibrate.
        num_qubits: register width (at least ``log2(shards) + 2``).
        shards: shards to use (default: all of ``sim``).
        mode: the sync mode under test.
        drift: delay one shard's releases.
        trials: repetitions.
        shots: measurements per basis.
        seed: sampling seed of the first trial.
        tolerance: largest accepted deviation.

    Returns:
        The report; ``inconsistency_rate`` is the fraction of failed checks.

    Raises:
        UsageError: too few qubits for the shards, or bad counts.

    >>> with ShardedSimulator(shards=2, backend="inline") as sim:
    ...     report = calibrate(sim, num_qubits=4, mode="barrier", shots=200)
    >>> report.passed, report.inconsistency_rate
    (True, 0.0)
    """
    count = sim.shards if shards is None else shards
    k = max(count, 1).bit_length() - 1
    if num_qubits < k + 2:
        raise UsageError(f"calibration over {count} shards needs at least {k + 2} qubits, "
                         f"got {num_qubits}")
    if trials < 1 or shots < 1:
        raise UsageError(f"trials and shots must be >= 1, got {trials} and {shots}")
    checks: list[CalibrationCheck] = []
    for trial in range(trials):
        for kind, qubits, bases in _cases(num_qubits, k):
            corrs: list[Correlation] = []
            norm_error = 0.0
            stale = 0
            for paulis, groups in bases:
                c = ghz_circuit(num_qubits, qubits, paulis)
                stats = sim.run(c, shards=count, mode=mode, drift=drift)
                stale += stats.stale_reads
                norm = sim.norm()
                norm_error = max(norm_error, abs(norm - 1.0))
                # a register a stale read emptied has nothing to sample: it fails as nan
                counts = sim.sample(shots, seed=seed + trial) if norm > tolerance else {}
                for bits, want in groups:
                    sub = tuple(qubits[b] for b in bits)
                    corrs.append(Correlation(
                        "".join(paulis[b] for b in bits), sub, want,
                        sim.correlation(sub), _measured(counts, bits)))
            ok = norm_error <= tolerance and all(
                abs(x.exact - x.theory) <= tolerance and abs(x.measured - x.theory) <= tolerance
                for x in corrs)
            checks.append(CalibrationCheck(kind, qubits, tuple(corrs), norm_error, stale, ok))
    return CalibrationReport(mode, count, num_qubits, drift, tuple(checks))


def _measured(counts: dict[str, int], bits: Sequence[int]) -> float:
    """Mean of ``(-1)**parity`` of clbits ``bits`` over the shots."""
    total = signed = 0
    for key, n in counts.items():
        parity = sum(key[len(key) - 1 - b] == "1" for b in bits) & 1
        signed += -n if parity else n
        total += n
    return signed / total if total else float("nan")
