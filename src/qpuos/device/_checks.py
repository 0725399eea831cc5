"""Statistical checks of measured counts against a circuit's exact distribution.

Used by ``qpuos demo`` and the tests: Pearson's chi-square test of the counts against
the distribution the state-vector simulator gives for the input circuit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from qpuos.device._results import format_counts
from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.statevector import simulate

__all__ = ["ChiSquare", "chi_square", "chi_square_quantile", "exact_distribution"]

# Standard normal quantiles of the significance levels offered.
_Z = {0.01: 2.3263, 0.001: 3.0902, 0.0001: 3.7190}


def chi_square_quantile(dof: int, alpha: float = 0.001) -> float:
    """Upper ``alpha`` quantile of chi-square with ``dof`` degrees of freedom.

    Wilson-Hilferty's cube approximation, so no statistics package is needed: at
    these levels it is within 8% of the exact quantile at 1 degree of freedom, 3% from
    4 (exact at alpha=0.001: 10.83 for 1 dof, 29.59 for 10).

    >>> round(chi_square_quantile(1), 1), round(chi_square_quantile(10), 1)
    (11.2, 29.8)
    """
    if dof < 1 or alpha not in _Z:
        raise UsageError(f"dof={dof} must be >= 1 and alpha one of {sorted(_Z)}")
    h = 2.0 / (9.0 * dof)
    return dof * (1.0 - h + _Z[alpha] * math.sqrt(h)) ** 3


@dataclass(frozen=True, slots=True)
class ChiSquare:
    """The outcome of a chi-square test.

    Attributes:
        statistic: Pearson's statistic over the outcomes with non-zero probability.
        dof: degrees of freedom (outcomes - 1).
        bound: the critical value at the test's level.
        impossible: outcomes seen that have probability 0 (any one fails the test).
        ok: ``statistic <= bound`` and nothing impossible was seen.
    """

    statistic: float
    dof: int
    bound: float
    impossible: tuple[str, ...]
    ok: bool


def chi_square(counts: Mapping[str, int], expected: Mapping[str, float], *,
               alpha: float = 0.001, zero_tol: float = 1e-9) -> ChiSquare:
    """Test ``counts`` against the probabilities ``expected``.

    >>> chi_square({"00": 510, "11": 490}, {"00": 0.5, "11": 0.5}).ok
    True
    >>> chi_square({"00": 500, "01": 3, "11": 497}, {"00": 0.5, "11": 0.5}).impossible
    ('01',)
    """
    shots = sum(counts.values())
    support = {k: p for k, p in expected.items() if p > zero_tol}
    impossible = tuple(sorted(k for k, n in counts.items() if n and k not in support))
    stat = sum((counts.get(k, 0) - shots * p) ** 2 / (shots * p) for k, p in support.items())
    dof = max(1, len(support) - 1)
    bound = chi_square_quantile(dof, alpha)
    return ChiSquare(stat, dof, bound, impossible, not impossible and stat <= bound)


def exact_distribution(circuit: Circuit) -> dict[str, float]:
    """Outcome probabilities of a circuit whose measurements all come last.

    Keys are formatted like the counts (``format_counts``: Qiskit's order).

    Raises:
        UsageError: a measurement is followed by another operation on its qubit, or the
            circuit has resets or conditions.
    """
    unitary = circuit.copy_empty()
    meas: list[tuple[int, int]] = []
    measured: set[int] = set()
    for inst in circuit.instructions:
        if inst.name == "measure":
            meas.append((inst.qubits[0], inst.clbits[0]))
            measured.add(inst.qubits[0])
        elif measured & set(inst.qubits) or inst.name == "reset" or inst.condition:
            raise UsageError(f"{inst.name} after a measurement, a reset or a condition: "
                             "only circuits measured at the end have a fixed distribution")
        else:
            unitary.add(inst)
    probs = np.abs(simulate(unitary).reshape(-1)) ** 2
    n = circuit.num_qubits
    words = np.zeros(len(probs), dtype=np.int64)
    for q, c in meas:
        bit = (np.arange(len(probs)) >> (n - 1 - q)) & 1
        words = (words & ~(1 << c)) | (bit << c)
    out: dict[str, float] = {}
    for w in np.unique(words):
        key = next(iter(format_counts(np.array([w], dtype=np.int64), circuit)))
        out[key] = float(probs[words == w].sum())
    return out
