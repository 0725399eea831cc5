"""Duration models and ASAP/ALAP schedules, against hand-computed start times."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import UsageError
from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.device import Device, load_device
from qpuos.quantum.gates import GATES
from qpuos.quantum.timing import NOMINAL_NS, DurationModel, Schedule, schedule

# Distinct figures, so a test can tell which one a duration came from.
MODEL = DurationModel(sx_ns=10.0, x_ns=20.0, rz_ns=1.0, two_qubit_ns=100.0,
                      measure_ns=1000.0, reset_ns=500.0)
NOMINAL = DurationModel()


def build(n: int, *ops: tuple[object, ...], clbits: int = 0) -> Circuit:
    c = Circuit.with_registers([("q", n)], [("c", clbits)] if clbits else [])
    for op in ops:
        c.append(*op)  # type: ignore[arg-type]
    return c


def starts(s: Schedule) -> list[float]:
    return [op.start_ns for op in s.ops]


# --- one-qubit classes --------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "want"), [
    ("h", (), 10.0),
    ("u2", (0.0, math.pi), 10.0),
    ("u2", (0.3, -1.1), 10.0),
    ("sx", (), 10.0),
    ("sxdg", (), 10.0),
    ("u", (math.pi / 2, 0.4, 0.9), 10.0),
    ("rz", (0.7,), 1.0),
    ("s", (), 1.0),
    ("t", (), 1.0),
    ("z", (), 1.0),
    ("p", (0.2,), 1.0),
    ("id", (), 1.0),
    ("x", (), 20.0),
    ("y", (), 20.0),
    ("u3", (math.pi, 0.1, 0.2), 20.0),
    ("u", (0.3, 0.2, 0.1), 20.0),  # generic: two sx
    ("ry", (1.0,), 20.0),
    ("rx", (0.25,), 20.0),
])
def test_one_qubit_gates_cost_their_native_decomposition(
        name: str, params: tuple[float, ...], want: float) -> None:
    assert MODEL.duration_ns(Instruction(name, (0,), params)) == want


def test_x_and_generic_u_differ_when_x_is_not_two_sx() -> None:
    model = DurationModel(sx_ns=10.0, x_ns=35.0)
    assert model.one_qubit_ns(Instruction("x", (0,))) == 35.0
    assert model.one_qubit_ns(Instruction("u", (0,), (0.3, 0.2, 0.1))) == 20.0


# --- two-qubit costs ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "want"), [
    ("cx", (), 100.0),
    ("CX", (), 100.0),
    ("cz", (), 100.0),
    ("swap", (), 300.0),
    ("cp", (0.3,), 200.0),
    ("rzz", (0.3,), 200.0),
    ("ch", (), 120.0),
    ("crx", (0.3,), 220.0),
    ("rxx", (0.3,), 220.0),
    ("cu", (0.1, 0.2, 0.3, 0.4), 220.0),
])
def test_two_qubit_gates_cost_native_gates_plus_one_qubit_layers(
        name: str, params: tuple[float, ...], want: float) -> None:
    assert MODEL.duration_ns(Instruction(name, (0, 1), params)) == want


def test_every_standard_two_qubit_gate_has_a_duration() -> None:
    for name, spec in GATES.items():
        if spec.num_qubits == 2:
            inst = Instruction(name, (0, 1), (0.1,) * spec.num_params)
            modelled_ns = MODEL.duration_ns(inst)  # a gate-model figure, not a clock
            assert modelled_ns >= 100.0, name


def test_directives_use_their_figures() -> None:
    assert MODEL.duration_ns(Instruction("measure", (0,), (), (0,))) == 1000.0
    assert MODEL.duration_ns(Instruction("reset", (0,))) == 500.0
    assert MODEL.duration_ns(Instruction("barrier", (0, 1, 2))) == 0.0


@pytest.mark.parametrize("name", ["ccx", "cswap"])
def test_gates_on_three_qubits_cannot_be_timed(name: str) -> None:
    with pytest.raises(UsageError, match=rf"^cannot time '{name}' on 3 qubits; decompose gates "
                       r"on 3\+ qubits first$"):
        MODEL.duration_ns(Instruction(name, (0, 1, 2)))


def test_schedule_refuses_three_qubit_gates() -> None:
    c = build(3, ("ccx", [0, 1, 2]))
    with pytest.raises(UsageError, match=r"^cannot time 'ccx' on 3 qubits"):
        schedule(c, MODEL)


def test_unknown_policy_raises() -> None:
    with pytest.raises(UsageError, match=r"^unknown scheduling policy 'asal'; use 'asap' or "
                       r"'alap'$"):
        schedule(build(1), MODEL, policy="asal")  # type: ignore[arg-type]


# --- models from devices -------------------------------------------------------------


def test_model_from_a_device_with_figures() -> None:
    dev = load_device("ibm_falcon_27")
    m = DurationModel.from_device(dev, dev.edges)
    g = dev.gate_durations_ns
    assert not m.nominal
    assert (m.sx_ns, m.x_ns, m.rz_ns) == (g["sx"], g["x"], g["rz"])
    assert (m.two_qubit_ns, m.measure_ns, m.reset_ns) == (g["cx"], g["measure"], g["reset"])
    a, b = dev.edges[0]
    assert m.native_two_qubit_ns(a, b) == m.native_two_qubit_ns(b, a) == g["cx"]
    assert m.duration_ns(Instruction("h", (a,))) == g["sx"]
    assert m.duration_ns(Instruction("swap", (a, b))) == 3 * g["cx"]
    assert m.duration_ns(Instruction("measure", (a,), (), (0,))) == g["measure"]


def test_model_from_a_device_without_figures_is_nominal() -> None:
    dev = load_device("rigetti_aspen4_16")
    m = DurationModel.from_device(dev, dev.edges)
    assert m.nominal
    assert m == DurationModel()
    assert (m.sx_ns, m.x_ns, m.rz_ns, m.two_qubit_ns, m.measure_ns, m.reset_ns) == (
        NOMINAL_NS["sx"], NOMINAL_NS["x"], NOMINAL_NS["rz"], NOMINAL_NS["2q"],
        NOMINAL_NS["measure"], NOMINAL_NS["reset"])


def test_model_takes_per_edge_durations() -> None:
    dev = Device("edges3", 3, ((0, 1), (1, 2)), gate_durations_ns={"cx": 300.0, "sx": 30.0},
                 edge_durations_ns={(0, 1): 200.0})
    m = DurationModel.from_device(dev, dev.edges)
    assert not m.nominal
    assert m.native_two_qubit_ns(1, 0) == 200.0
    assert m.native_two_qubit_ns(1, 2) == 300.0
    assert m.duration_ns(Instruction("cp", (1, 0), (0.1,))) == 400.0
    assert m.duration_ns(Instruction("ch", (2, 1))) == 300.0 + 2 * 30.0


def test_model_with_only_per_edge_figures_is_not_nominal() -> None:
    dev = Device("edges2", 2, ((0, 1),), edge_durations_ns={(0, 1): 250.0})
    m = DurationModel.from_device(dev, dev.edges)
    assert not m.nominal
    assert m.native_two_qubit_ns(0, 1) == 250.0
    assert m.sx_ns == NOMINAL_NS["sx"]


@pytest.mark.parametrize("name", ["ibm_falcon_27", "rigetti_aspen4_16", "google_sycamore_54"])
def test_model_does_not_depend_on_whether_edges_are_given(name: str) -> None:
    """The typical two-qubit figure is the same with or without the per-edge lookup."""
    dev = load_device(name)
    plain = DurationModel.from_device(dev)
    with_edges = DurationModel.from_device(dev, dev.edges)
    assert {e: (plain.native_two_qubit_ns(*e), with_edges.native_two_qubit_ns(*e))
            for e in dev.edges
            if plain.native_two_qubit_ns(*e) != with_edges.native_two_qubit_ns(*e)} == {}
    assert plain.nominal == with_edges.nominal


# --- schedules on hand-built circuits ------------------------------------------------


def test_x_then_cx() -> None:
    c = build(2, ("x", [0]), ("cx", [0, 1]))
    for policy in ("asap", "alap"):
        s = schedule(c, NOMINAL, policy=policy)  # type: ignore[arg-type]
        assert (s.makespan_ns, starts(s), s.policy) == (350.0, [0.0, 50.0], policy)
        assert [op.duration_ns for op in s.ops] == [50.0, 300.0]
        assert [op.index for op in s.ops] == [0, 1]
        assert s.circuit is c


def test_asap_and_alap_differ_on_a_short_branch() -> None:
    # q0: h ------------- cx      q1: h  h  cx
    c = build(2, ("h", [0]), ("h", [1]), ("h", [1]), ("cx", [0, 1]))
    asap = schedule(c, NOMINAL, policy="asap")
    alap = schedule(c, NOMINAL, policy="alap")
    assert starts(asap) == [0.0, 0.0, 50.0, 100.0]
    assert starts(alap) == [50.0, 0.0, 50.0, 100.0]
    assert asap.makespan_ns == alap.makespan_ns == 400.0


def test_alap_puts_state_preparation_late_and_idle_tails_early() -> None:
    # q0: x ........ measure(1000)     q1: x  cx(300)...   q2: h (alone)
    c = build(3, ("x", [0]), ("x", [1]), ("cx", [1, 2]), ("measure", [0], [], [0]),
              ("h", [2]), clbits=1)
    asap = schedule(c, NOMINAL, policy="asap")
    alap = schedule(c, NOMINAL, policy="alap")
    assert starts(asap) == [0.0, 0.0, 50.0, 50.0, 350.0]
    assert asap.makespan_ns == 1050.0
    assert starts(alap) == [0.0, 650.0, 700.0, 50.0, 1000.0]
    assert alap.makespan_ns == 1050.0


def test_barrier_aligns_its_qubits() -> None:
    c = build(3, ("x", [0]), ("x", [0]), ("barrier", [0, 1]), ("x", [1]), ("x", [2]))
    asap = schedule(c, NOMINAL, policy="asap")
    assert starts(asap) == [0.0, 50.0, 100.0, 100.0, 0.0]
    assert asap.ops[2].duration_ns == 0.0
    without = build(3, ("x", [0]), ("x", [0]), ("x", [1]), ("x", [2]))
    assert starts(schedule(without, NOMINAL, policy="asap")) == [0.0, 50.0, 0.0, 0.0]


def test_rz_is_virtual() -> None:
    c = build(1, ("rz", [0], [0.3]), ("h", [0]), ("rz", [0], [0.1]))
    s = schedule(c, NOMINAL, policy="asap")
    assert starts(s) == [0.0, 0.0, 50.0]
    assert s.makespan_ns == 50.0


def test_measure_reset_and_a_conditional_on_the_measured_register() -> None:
    c = build(2, ("measure", [0], [], [0]), ("reset", [0]),
              ("x", [1], [], [], Condition("c", 1)), ("h", [0]), clbits=1)
    s = schedule(c, MODEL, policy="asap")
    assert starts(s) == [0.0, 1000.0, 1000.0, 1500.0]
    assert [op.end_ns for op in s.ops] == [1000.0, 1500.0, 1020.0, 1510.0]
    assert s.makespan_ns == 1510.0
    alap = schedule(c, MODEL, policy="alap")
    assert starts(alap) == [0.0, 1000.0, 1490.0, 1500.0]


def test_conditional_waits_for_every_bit_of_its_register() -> None:
    c = build(3, ("measure", [0], [], [0]), ("measure", [1], [], [1]),
              ("measure", [1], [], [1]), ("x", [2], [], [], Condition("c", 3)), clbits=2)
    s = schedule(c, MODEL, policy="asap")
    assert starts(s) == [0.0, 0.0, 1000.0, 2000.0]


def test_empty_circuit_has_no_makespan() -> None:
    for policy in ("asap", "alap"):
        s = schedule(build(2), MODEL, policy=policy)  # type: ignore[arg-type]
        assert (s.ops, s.makespan_ns) == ((), 0.0)


# --- properties -------------------------------------------------------------------


@st.composite
def circuits(draw: st.DrawFn) -> Circuit:
    n = draw(st.integers(1, 5))
    c = Circuit.with_registers([("q", n)], [("c", 2)])
    qubit = st.integers(0, n - 1)
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(("1q", "2q", "2q", "measure", "reset", "barrier", "if")))
        if kind in ("2q", "if") and n < 2:
            kind = "1q"
        if kind == "1q":
            name = draw(st.sampled_from(("h", "x", "rz", "u", "sx", "t")))
            c.append(name, [draw(qubit)], [0.3] * GATES[name].num_params)
        elif kind == "2q":
            name = draw(st.sampled_from(("cx", "cz", "swap", "cp", "ch", "rxx")))
            c.append(name, draw(st.lists(qubit, min_size=2, max_size=2, unique=True)),
                     [0.3] * GATES[name].num_params)
        elif kind == "measure":
            c.append("measure", [draw(qubit)], [], [draw(st.integers(0, 1))])
        elif kind == "reset":
            c.append("reset", [draw(qubit)])
        elif kind == "barrier":
            c.append("barrier", draw(st.lists(qubit, min_size=1, max_size=n, unique=True)))
        else:
            c.append("cx", draw(st.lists(qubit, min_size=2, max_size=2, unique=True)), [], [],
                     Condition("c", draw(st.integers(0, 3))))
    return c


def wire_order(c: Circuit) -> list[tuple[int, int]]:
    """Consecutive instructions on every qubit and clbit wire."""
    pairs: list[tuple[int, int]] = []
    last: dict[tuple[str, int], int] = {}
    for i, inst in enumerate(c.instructions):
        bits = [("q", q) for q in inst.qubits] + [("c", b) for b in inst.clbits]
        if inst.condition is not None:
            bits += [("c", b) for b in c.creg(inst.condition.creg).bits]
        for w in dict.fromkeys(bits):
            if w in last:
                pairs.append((last[w], i))
            last[w] = i
    return pairs


@settings(max_examples=150, deadline=None)
@given(circuits(), st.sampled_from([MODEL, NOMINAL]))
def test_asap_and_alap_have_the_same_makespan_and_respect_every_wire(
        c: Circuit, model: DurationModel) -> None:
    asap = schedule(c, model, policy="asap")
    alap = schedule(c, model, policy="alap")
    assert asap.makespan_ns == pytest.approx(alap.makespan_ns, abs=1e-6)
    for s in (asap, alap):
        assert len(s.ops) == len(c)
        assert [op.duration_ns for op in s.ops] == [model.duration_ns(i) for i in c]
        assert {op.index for op in s.ops if op.start_ns < -1e-9} == set()
        assert {op.index for op in s.ops if op.end_ns > s.makespan_ns + 1e-6} == set()
        overlaps = {(a, b) for a, b in wire_order(c)
                    if s.ops[a].end_ns > s.ops[b].start_ns + 1e-6}
        assert overlaps == set()
    assert {i for i, (a, b) in enumerate(zip(asap.ops, alap.ops, strict=True))
            if a.start_ns > b.start_ns + 1e-6} == set()  # ALAP never earlier than ASAP
    # the makespan is the longest chain of durations through the wire orders
    longest = [0.0] * len(c)
    for a, b in sorted(wire_order(c), key=lambda p: p[1]):
        longest[b] = max(longest[b], longest[a] + asap.ops[a].duration_ns)
    chain = max((t + op.duration_ns for t, op in zip(longest, asap.ops, strict=True)),
                default=0.0)
    assert asap.makespan_ns == pytest.approx(chain, abs=1e-6)
