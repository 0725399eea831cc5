"""Count formatting: registers, bit order, and agreement with the device layer's."""

from __future__ import annotations

import numpy as np
import pytest

from qpuos.cluster._counts import format_words
from qpuos.quantum.circuit import Circuit, Register


def test_registers_are_written_highest_bit_first_first_register_rightmost() -> None:
    regs = [Register("a", 2, 0), Register("b", 3, 2)]
    words = np.array([0b10101, 0b00010, 0b10101], dtype=np.int64)
    assert format_words(words, regs) == {"101 01": 2, "000 10": 1}


def test_ties_are_ordered_by_value_and_empty_input_is_empty() -> None:
    regs = [Register("c", 2, 0)]
    assert list(format_words(np.array([3, 1, 2], dtype=np.int64), regs)) == ["01", "10", "11"]
    assert format_words(np.array([], dtype=np.int64), regs) == {}


def test_agrees_with_the_device_layer() -> None:
    device = pytest.importorskip("qpuos.device", reason="the device layer is not built here")
    c = Circuit.with_registers([("q", 4)], [("a", 1), ("b", 3)])
    words = np.random.default_rng(5).integers(0, 16, size=300).astype(np.int64)
    assert format_words(words, c.cregs) == device.format_counts(words, c)
