"""The shard planner: every plan, run shard by shard in this process, equals the
single-process simulator; its steps respect the layout rules; its swap-or-exchange
choices follow the byte count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.cluster._plan import LocalOp, SwapStep, _mixes, plan_circuit, split_measurements
from qpuos.cluster.shards import ShardedSimulator
from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.statevector import simulate

ONE = ["h", "x", "s", "t", "rz", "ry", "u3", "sx"]
TWO = ["cx", "cz", "swap", "rxx", "cp", "crx", "ch", "rzz"]
PARAMS = {"rz": 1, "ry": 1, "u3": 3, "rxx": 1, "cp": 1, "crx": 1, "rzz": 1}


@st.composite
def circuits(draw: st.DrawFn, min_qubits: int = 3, max_qubits: int = 7) -> Circuit:
    n = draw(st.integers(min_qubits, max_qubits))
    c = Circuit(num_qubits=n)
    for _ in range(draw(st.integers(1, 40))):
        name = draw(st.sampled_from(ONE + TWO + (["ccx"] if n >= 6 else [])))
        width = 1 if name in ONE else (3 if name == "ccx" else 2)
        qubits = draw(st.permutations(range(n)))[:width]
        params = [draw(st.floats(-3.2, 3.2)) for _ in range(PARAMS.get(name, 0))]
        c.append(name, qubits, params)
    return c


def check_plan(plan_steps: tuple[object, ...], k: int, n: int) -> None:
    for step in plan_steps:
        if isinstance(step, SwapStep):
            assert step.glob < k <= step.loc < n
            continue
        assert isinstance(step, tuple)
        for op in step:
            assert isinstance(op, LocalOp)
            mixing_globals = {p for p, mx in zip(op.positions, _mixes(op.matrix), strict=True)
                              if mx and p < k}
            assert mixing_globals == set()


@settings(max_examples=60, deadline=None)
@given(circuits(), st.integers(0, 3), st.sampled_from(["barrier", "pairwise", "relaxed"]))
def test_inline_shards_equal_the_simulator(c: Circuit, k: int, mode: str) -> None:
    n = c.num_qubits
    k = min(k, n - 3)   # ccx may need three local qubits
    plan = plan_circuit(c, k)
    check_plan(plan.steps, k, n)
    with ShardedSimulator(shards=1 << k, backend="inline") as sim:
        stats = sim.run(c, mode=mode)  # type: ignore[arg-type]
        got = sim.state()
    np.testing.assert_allclose(got, simulate(c), atol=1e-10)
    assert stats.swaps == plan.swaps
    assert stats.bytes_exchanged == plan.swaps * 8 * 2**n
    assert stats.stale_reads == 0


def test_diagonal_and_controlled_gates_on_a_global_qubit_move_nothing() -> None:
    c = Circuit(num_qubits=4)
    c.append("h", [3])
    c.append("cz", [3, 0])      # diagonal on both
    c.append("cx", [0, 3])      # qubit 0 is only the control
    c.append("rz", [1], [0.4])  # diagonal one-qubit gate on a global qubit
    plan = plan_circuit(c, 2)
    assert (plan.swaps, plan.global_gates, plan.free_global_gates) == (0, 0, 3)


def test_a_qubit_used_again_is_swapped_in_and_stays() -> None:
    c = Circuit(num_qubits=4)
    for _ in range(3):
        c.append("h", [0])
        c.append("cx", [0, 3])
    plan = plan_circuit(c, 1)
    assert (plan.swaps, plan.exchanges, plan.global_gates) == (1, 0, 1)


def test_a_gate_whose_victim_is_needed_first_is_an_exchange() -> None:
    # At the first rxx(0, 3), qubits 1 and 2 (the only victims) are needed before global
    # qubit 0 is needed again: swapping 0 in for good would cost a swap back, so the gate
    # runs as an exchange. At the second, no victim is needed again: a plain swap.
    c = Circuit(num_qubits=4)
    c.append("rxx", [0, 3], [0.3])
    c.append("rxx", [1, 2], [0.4])
    c.append("rxx", [0, 3], [0.5])
    plan = plan_circuit(c, 1)
    assert (plan.exchanges, plan.swaps, plan.global_gates) == (1, 3, 2)
    kinds = ["swap" if isinstance(s, SwapStep) else "gates" for s in plan.steps]
    assert kinds == ["swap", "gates", "swap", "gates", "swap", "gates"]
    assert plan.final_positions == (1, 0, 2, 3)


def test_swap_gates_relabel_without_moving_data() -> None:
    c = Circuit(num_qubits=3)
    c.append("x", [2])
    c.append("swap", [0, 2])
    plan = plan_circuit(c, 1)
    assert plan.swaps == 0
    assert plan.final_positions == (2, 1, 0)


def test_too_few_local_qubits_is_refused() -> None:
    c = Circuit(num_qubits=3)
    c.append("cx", [2, 0])
    with pytest.raises(UsageError, match=r"^a 2-qubit gate must bring 1 global qubit\(s\) "
                                         r"local but only 0 of the 1 local qubits"):
        plan_circuit(c, 2)


def test_split_measurements_keeps_terminal_ones_and_refuses_the_rest() -> None:
    c = Circuit(num_qubits=2, num_clbits=2)
    c.append("h", [0])
    c.append("measure", [0], clbits=[1])
    c.append("x", [1])
    body, measured = split_measurements(c)
    assert [i.name for i in body] == ["h", "x"]
    assert measured == ((0, 1),)
    c.append("x", [0])
    with pytest.raises(UsageError, match=r"^instruction 3 'x' acts on a measured qubit"):
        split_measurements(c)
    r = Circuit(num_qubits=1)
    r.append("reset", [0])
    with pytest.raises(UsageError, match=r"^instruction 0 'reset' is a reset"):
        split_measurements(r)
