"""Outcome words to count dictionaries, written as OpenQASM tools print them.

A word holds classical bit ``i`` at bit ``i``. Each register is written highest bit
first, registers separated by a space with the first-declared register rightmost, as
Qiskit does and as ``qpuos.device`` reports controller runs (the same convention
everywhere a count dictionary leaves qpuos).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from qpuos.quantum.circuit import Register

__all__ = ["format_words"]


def format_words(words: NDArray[np.int64], cregs: Sequence[Register]) -> dict[str, int]:
    """Count ``words`` per outcome string, most frequent first.

    >>> format_words(np.array([0b101, 0b101, 0b001]), [Register("a", 2), Register("b", 1, 2)])
    {'1 01': 2, '0 01': 1}
    """
    values, counts = np.unique(words, return_counts=True)
    out: dict[str, int] = {}
    for v, n in sorted(zip(values.tolist(), counts.tolist(), strict=True),
                       key=lambda vn: (-vn[1], vn[0])):
        parts = [format((v >> r.start) & ((1 << r.size) - 1), f"0{r.size}b")
                 for r in reversed(cregs)]
        out[" ".join(parts)] = int(n)
    return out
