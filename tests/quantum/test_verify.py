"""The compile verifier: hand-built routed circuits and a tiny router written here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import UsageError
from qpuos.quantum import verify as vf
from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.verify import VerifyReport, verify_routed


def line(p: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(p - 1)]


def circuit(n: int, *ops: tuple[Any, ...],
            clbits: int = 0) -> Circuit:
    c = Circuit.with_registers([("q", n)], [("c", clbits)] if clbits else [])
    for op in ops:
        c.append(*op)
    return c


def check(original: Circuit, routed: Circuit, init: list[int], final: list[int],
          **kw: object) -> VerifyReport:
    return verify_routed(original, routed, edges=line(routed.num_qubits),
                         initial_layout=init, final_layout=final, **kw)  # type: ignore[arg-type]


# --- passing cases -------------------------------------------------------------------


def test_swap_moves_a_qubit_next_to_its_partner() -> None:
    orig = circuit(2, ("h", [0]), ("cx", [0, 1]), ("rz", [1], [0.4]))
    routed = circuit(3, ("h", [0]), ("swap", [0, 1]), ("cx", [1, 2]), ("rz", [2], [0.4]))
    r = check(orig, routed, [0, 2], [1, 2])
    assert r.ok, r.detail
    assert r.method == "statevector"
    assert r.coupling_violations == ()
    assert r.fidelity is not None and r.fidelity > 1 - 1e-9
    assert r.seconds >= 0
    assert r.detail.startswith("4 routed instructions: every 2-qubit gate on a device edge")


def test_final_measurements_are_checked_then_stripped_for_the_simulation() -> None:
    orig = circuit(2, ("h", [0]), ("cx", [0, 1]), ("barrier", [0, 1]),
                   ("measure", [0], [], [0]), ("measure", [1], [], [1]), clbits=2)
    routed = orig.copy_empty(num_qubits=3)
    ops: list[tuple[Any, ...]] = [
        ("h", [2]), ("swap", [2, 1]), ("cx", [1, 0]), ("barrier", [1, 0]),
        ("measure", [1], [], [0]), ("swap", [1, 2]), ("measure", [0], [], [1])]
    for op in ops:
        routed.append(*op)
    r = check(orig, routed, [2, 0], [2, 0])
    assert (r.ok, r.method) == (True, "statevector"), r.detail


def test_diagonal_gates_may_commute_within_a_run() -> None:
    orig = circuit(2, ("rz", [0], [0.3]), ("cz", [0, 1]), ("t", [0]), ("h", [0]),
                   ("cx", [0, 1]), ("cp", [0, 1], [0.2]))
    routed = circuit(2, ("t", [0]), ("cz", [0, 1]), ("rz", [0], [0.3]), ("h", [0]),
                     ("cp", [0, 1], [0.2]), ("cx", [0, 1]))  # cx, cp both diagonal on 0 only
    r = check(orig, routed, [0, 1], [0, 1])
    assert not r.ok  # cp and cx do not commute on qubit 1
    assert r.detail == "logical qubit 1: instruction 4 is 'cp' but the input has 'cx' there"
    ok = circuit(2, *[(i.name, list(i.qubits), list(i.params)) for i in routed][:4],
                 ("cx", [0, 1]), ("cp", [0, 1], [0.2]))
    r = check(orig, ok, [0, 1], [0, 1])
    assert (r.ok, r.method) == (True, "statevector"), r.detail


def test_input_swaps_may_be_executed_or_absorbed_into_the_layout() -> None:
    orig = circuit(2, ("x", [0]), ("swap", [0, 1]), ("h", [0]))
    executed = circuit(2, ("x", [0]), ("swap", [0, 1]), ("h", [0]))
    assert check(orig, executed, [0, 1], [0, 1]).ok
    absorbed = circuit(2, ("x", [0]), ("h", [1]))
    r = check(orig, absorbed, [0, 1], [1, 0])
    assert r.ok, r.detail


def test_large_circuits_fall_back_to_the_structural_check() -> None:
    orig = circuit(2, ("h", [0]), ("cx", [0, 1]))
    routed = circuit(3, ("h", [1]), ("cx", [1, 2]))
    r = check(orig, routed, [1, 2], [1, 2], max_sim_qubits=1)
    assert (r.ok, r.method, r.fidelity) == (True, "structural", None)
    assert r.detail.endswith("; statevector skipped: it touches 2 physical qubits, more than "
                             "max_sim_qubits=1")


def test_mid_circuit_measurement_and_conditions_are_checked_structurally() -> None:
    orig = circuit(2, ("h", [0]), ("measure", [0], [], [0]), ("x", [1], [], [], Condition("c", 1)),
                   ("h", [0]), clbits=1)
    routed = orig.copy_empty(num_qubits=2)
    for inst in orig:
        routed.add(inst)
    r = check(orig, routed, [0, 1], [0, 1])
    assert (r.ok, r.method) == (True, "structural")
    assert r.detail.endswith("statevector skipped: input instruction 2 'x' is not unitary")
    # The conditional gate reads the clbit the measurement writes: order matters there.
    reordered = orig.copy_empty(num_qubits=2)
    for i in (0, 2, 1, 3):
        reordered.add(orig.instructions[i])
    r = check(orig, reordered, [0, 1], [0, 1])
    assert not r.ok
    assert r.detail == "clbit 0: instruction 1 is 'x' but the input has 'measure' there"


def test_gate_after_a_measurement_is_checked_structurally() -> None:
    orig = circuit(1, ("h", [0]), ("measure", [0], [], [0]), ("x", [0]), clbits=1)
    r = check(orig, orig, [0], [0])
    assert (r.ok, r.method) == (True, "structural")
    assert r.detail.endswith("statevector skipped: input instruction 2 'x' follows a "
                             "measurement")


# --- failures ------------------------------------------------------------------------


def test_gate_off_the_coupling_graph() -> None:
    orig = circuit(2, ("cx", [0, 1]), ("cz", [1, 0]))
    routed = circuit(3, ("cx", [0, 2]), ("cz", [2, 0]))
    r = check(orig, routed, [0, 2], [0, 2])
    assert not r.ok
    assert r.detail == "gate 0 'cx' on physical (0, 2) is not a device edge"
    assert set(r.coupling_violations) - set(line(3)) == {(0, 2)}


def test_three_qubit_gate_after_routing_is_a_violation() -> None:
    orig = circuit(3, ("ccx", [0, 1, 2]))
    r = check(orig, orig, [0, 1, 2], [0, 1, 2])
    assert not r.ok
    assert r.detail == ("gate 0 'ccx' acts on 3 physical qubits (0, 1, 2); the device couples "
                        "pairs only")
    assert r.coupling_violations == ((0, 1), (0, 2), (1, 2))


def test_wrong_final_layout() -> None:
    orig = circuit(2, ("cx", [0, 1]))
    routed = circuit(3, ("swap", [0, 1]), ("cx", [1, 2]))
    r = check(orig, routed, [0, 2], [0, 2])
    assert (r.ok, r.method) == (False, "structural")
    assert r.detail == "final layout differs at logical 0: tracked 1, reported 0"


def test_dropped_gate() -> None:
    orig = circuit(2, ("h", [0]), ("cx", [0, 1]), ("x", [1]))
    routed = circuit(2, ("h", [0]), ("cx", [0, 1]))
    r = check(orig, routed, [0, 1], [0, 1])
    assert r.detail == "logical qubit 1: input instruction 2 'x' is missing from the routed circuit"


def test_extra_gate() -> None:
    orig = circuit(2, ("h", [0]))
    routed = circuit(2, ("h", [0]), ("z", [1]))
    r = check(orig, routed, [0, 1], [0, 1])
    assert r.detail == "logical qubit 1: instruction 1 'z' is not in the input"


def test_swapped_order_of_non_commuting_gates() -> None:
    orig = circuit(2, ("h", [0]), ("cx", [0, 1]))
    routed = circuit(2, ("cx", [0, 1]), ("h", [0]))
    r = check(orig, routed, [0, 1], [0, 1])
    assert r.detail == "logical qubit 0: instruction 0 is 'cx' but the input has 'h' there"


def test_wrong_parameter_or_operand_order() -> None:
    orig = circuit(2, ("rz", [0], [0.5]), ("cx", [0, 1]))
    r = check(orig, circuit(2, ("rz", [0], [0.25]), ("cx", [0, 1])), [0, 1], [0, 1])
    assert r.detail == ("logical qubit 0: instruction 0 is 'rz(0.25,)' on logical (0,) but the "
                        "input has 'rz(0.5,)' on logical (0,) there")
    r = check(orig, circuit(2, ("rz", [0], [0.5]), ("cx", [1, 0])), [0, 1], [0, 1])
    assert r.detail == ("logical qubit 0: instruction 1 is 'cx' on logical (1, 0) but the "
                        "input has 'cx' on logical (0, 1) there")


def test_gate_on_an_ancilla() -> None:
    orig = circuit(2, ("cx", [0, 1]))
    routed = circuit(3, ("cx", [1, 2]))  # the router forgot the swap 0 <-> 1
    r = check(orig, routed, [0, 2], [1, 2])
    assert r.detail == ("instruction 0 'cx' on physical (1, 2) touches physical qubit 1, which "
                        "holds no logical qubit")


def test_wrong_swap_bookkeeping() -> None:
    # The router moved logical 0 next to logical 2 but then used the old position of 1.
    orig = circuit(3, ("cx", [0, 2]), ("h", [1]))
    routed = circuit(3, ("swap", [0, 1]), ("cx", [1, 2]), ("h", [1]))
    r = check(orig, routed, [0, 1, 2], [1, 0, 2])
    assert r.detail == "logical qubit 0: instruction 2 'h' is not in the input"


def test_statevector_check_alone_catches_a_wrong_gate() -> None:
    # Structural checks already compare names and parameters, so exercise the simulation
    # step directly with an input/output pair that it must reject.
    orig = [Instruction("h", (0,)), Instruction("cx", (0, 1))]
    wrong = [Instruction("h", (1,)), Instruction("cx", (1, 0)), Instruction("rz", (0,), (2.0,))]
    rng = np.random.default_rng(0)
    fid, problem = vf._statevector(orig, 2, wrong, touched=[0, 1], init=[1, 0], final=[1, 0],
                                   rng=rng, trials=2, atol=1e-6)
    assert problem is not None
    assert fid < 0.99
    assert problem.startswith("fidelity ") and problem.endswith(" < 0.999999 on trial 0")
    right = wrong[:2]
    fid, problem = vf._statevector(orig, 2, right, touched=[0, 1], init=[1, 0], final=[1, 0],
                                   rng=rng, trials=2, atol=1e-6)
    assert problem is None and fid == pytest.approx(1.0)


def test_malformed_arguments_raise() -> None:
    orig = circuit(2, ("cx", [0, 1]))
    routed = circuit(3, ("cx", [0, 1]))
    with pytest.raises(UsageError, match=r"^initial_layout has 1 entries but the input circuit "
                                         r"has 2 qubits; give one physical qubit per logical "
                                         r"qubit$"):
        check(orig, routed, [0], [0, 1])
    with pytest.raises(UsageError, match=r"^final_layout puts logical qubits 0 and 1 both on "
                                         r"physical qubit 1$"):
        check(orig, routed, [0, 1], [1, 1])
    with pytest.raises(UsageError, match=r"^initial_layout\[1\] = 3 is not a physical qubit of "
                                         r"the routed circuit \(0\.\.2\)$"):
        check(orig, routed, [0, 3], [0, 1])
    with pytest.raises(UsageError, match=r"^trials must be >= 1, got 0$"):
        check(orig, routed, [0, 1], [0, 1], trials=0)


# --- a tiny router, and hypothesis ---------------------------------------------------

GATE_POOL = [("h", 1, 0), ("x", 1, 0), ("t", 1, 0), ("rz", 1, 1), ("sx", 1, 0),
             ("cx", 2, 0), ("cz", 2, 0), ("cp", 2, 1), ("rzz", 2, 1), ("swap", 2, 0)]


def naive_route(orig: Circuit, num_phys: int, init: list[int]) -> tuple[Circuit, list[int]]:
    """Walk the first qubit of each 2-qubit gate along the line until it touches the other."""
    where = list(init)  # logical -> physical
    holder = {p: i for i, p in enumerate(where)}  # physical -> logical
    routed = orig.copy_empty(num_qubits=num_phys)
    for inst in orig:
        if len(inst.qubits) == 2:
            a, b = inst.qubits
            for _ in range(num_phys):  # capped: the gap shrinks by one per step
                if abs(where[a] - where[b]) == 1:
                    break
                pa = where[a]
                step = pa + (1 if where[b] > pa else -1)
                routed.append("swap", [pa, step])
                other = holder.pop(step, None)
                holder[step] = a
                where[a] = step
                if other is None:
                    del holder[pa]
                else:
                    holder[pa] = other
                    where[other] = pa
            assert abs(where[a] - where[b]) == 1, "naive router did not converge"
        routed.add(inst.with_qubits([where[q] for q in inst.qubits]))
    return routed, where


@st.composite
def routing_problems(draw: st.DrawFn) -> tuple[Circuit, int, list[int]]:
    n = draw(st.integers(2, 4))
    num_phys = n + draw(st.integers(0, 2))
    orig = Circuit.with_registers([("q", n)], [("c", n)])
    for _ in range(draw(st.integers(1, 14))):
        name, k, npar = draw(st.sampled_from(GATE_POOL))
        qubits = draw(st.permutations(range(n)))[:k]
        orig.append(name, qubits, [draw(st.floats(-math.pi, math.pi)) for _ in range(npar)])
    if draw(st.booleans()):
        for q in range(n):
            orig.append("measure", [q], [], [q])
    init = draw(st.permutations(range(num_phys)))[:n]
    return orig, num_phys, init


@settings(max_examples=80, deadline=None)
@given(routing_problems(), st.data())
def test_naively_routed_circuits_verify_and_corruptions_are_caught(
        problem: tuple[Circuit, int, list[int]], data: st.DataObject) -> None:
    orig, num_phys, init = problem
    routed, final = naive_route(orig, num_phys, init)
    r = check(orig, routed, init, final)
    assert (r.ok, r.method) == (True, "statevector"), r.detail

    # Corrupt one instruction: drop it, or rename it to another gate of the same arity.
    index = data.draw(st.integers(0, len(routed) - 1))
    inst = routed.instructions[index]
    bad = routed.copy_empty(num_qubits=num_phys)
    bad.instructions = list(routed.instructions)
    if inst.name == "measure" or data.draw(st.booleans()):
        del bad.instructions[index]
    else:
        pool = ["x", "y"] if len(inst.qubits) == 1 else ["cx", "cy"]
        name = pool[1] if inst.name == pool[0] else pool[0]
        bad.instructions[index] = Instruction(name, inst.qubits)
    r = check(orig, bad, init, final)
    assert not r.ok, f"corrupting instruction {index} ({inst}) went unnoticed"
