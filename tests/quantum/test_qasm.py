"""Tests for qpuos.quantum.qasm: the OpenQASM 2.0 reader, writer and qelib1.inc."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpuos.errors import QasmError, QasmSemanticError, QasmSyntaxError, UsageError
from qpuos.quantum.circuit import Circuit, Condition, Instruction
from qpuos.quantum.decompose import decompose_multiqubit, standard_definitions
from qpuos.quantum.gates import GATES, gate_matrix
from qpuos.quantum.qasm import (
    _pi_forms,
    dump_qasm,
    load_qasm,
    parse_qasm,
    save_qasm,
)

BENCH = Path("/work/shared/bench/quantum/circuits")
BENCH_FILES = sorted(BENCH.glob("*.qasm"))
HEAD = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'


def unitary(ops: Sequence[Instruction], n: int) -> np.ndarray:
    """Tiny dense builder: first qubit most significant, as in gates.py."""
    u = np.eye(2**n, dtype=np.complex128)
    for op in ops:
        if op.name == "barrier":
            continue
        m, k, qs = gate_matrix(op.name, op.params), len(op.qubits), list(op.qubits)
        t = np.moveaxis(u.reshape([2] * n + [2**n]), qs, list(range(k)))
        shape = t.shape
        t = (m @ t.reshape(2**k, -1)).reshape(shape)
        u = np.moveaxis(t, list(range(k)), qs).reshape(2**n, 2**n)
    return u


def equal_up_to_phase(a: np.ndarray, b: np.ndarray) -> bool:
    k = int(np.argmax(np.abs(b)))
    phase = a.flat[k] / b.flat[k]
    return bool(np.isclose(abs(phase), 1.0) and np.allclose(a, phase * b, atol=1e-9))


def exact_params(c: Circuit) -> list[tuple[str, ...]]:
    """Parameters as hex strings, so -0.0 and 0.0 differ (bit-for-bit comparison)."""
    return [tuple(p.hex() for p in i.params) for i in c.instructions]


def ops(c: Circuit) -> list[tuple[str, tuple[int, ...]]]:
    return [(i.name, i.qubits) for i in c.instructions]


# -- the bench files ---------------------------------------------------------------------
def test_all_bench_files_are_present() -> None:
    assert len(BENCH_FILES) == 31


@pytest.mark.parametrize("path", BENCH_FILES, ids=lambda p: p.name)
def test_bench_file_round_trips(path: Path) -> None:
    first = load_qasm(path)
    assert len(first) > 0
    assert {i.name for i in first} - set(GATES) - {"measure", "reset", "barrier"} == set()
    again = parse_qasm(dump_qasm(first))
    assert again == first
    assert exact_params(again) == exact_params(first)
    assert dump_qasm(again) == dump_qasm(first)


def test_bench_user_gates_expand_to_standard_gates() -> None:
    c = load_qasm(BENCH / "qasmbench_adder_n10.qasm")
    assert "majority" not in c.count_ops() and c.count_ops()["ccx"] > 0


# -- qelib1.inc ----------------------------------------------------------------------------
def test_library_defines_exactly_the_standard_gates() -> None:
    assert set(standard_definitions()) ^ (set(GATES) - {"U", "CX"}) == set()


# rz, sx and sxdg are defined through u1/sdg.h.sdg and differ by a global phase only.
_PHASE_ONLY = {"rz", "sx", "sxdg"}


@pytest.mark.parametrize("name", sorted(set(GATES) - {"U", "CX", "rccx", "rc3x"}))
def test_library_definition_matches_gate_matrix(name: str) -> None:
    definition = standard_definitions()[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(3):
        params = [float(x) for x in rng.uniform(-2 * math.pi, 2 * math.pi,
                                                len(definition.params))]
        n = len(definition.qubits)
        body = definition.instantiate(range(n), params)
        assert {i.name for i in body} <= set(GATES)
        got, want = unitary(body, n), gate_matrix(name, params)
        assert equal_up_to_phase(got, want), name
        if name not in _PHASE_ONLY:
            np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("name,controls", [("rccx", 2), ("rc3x", 3)])
def test_relative_phase_toffolis(name: str, controls: int) -> None:
    n = controls + 1
    got = unitary(standard_definitions()[name].instantiate(range(n)), n)
    mcx = gate_matrix("ccx" if controls == 2 else "c3x")
    # equal to the multi-controlled X up to a diagonal phase: |entries| match and
    # got @ mcx^-1 is diagonal
    np.testing.assert_allclose(np.abs(got), np.abs(mcx), atol=1e-9)
    d = got @ mcx.conj().T
    np.testing.assert_allclose(d, np.diag(np.diag(d)), atol=1e-9)
    qiskit_lib = pytest.importorskip("qiskit.circuit.library")
    operator = pytest.importorskip("qiskit.quantum_info").Operator
    gate = qiskit_lib.RCCXGate() if controls == 2 else qiskit_lib.RC3XGate()
    np.testing.assert_allclose(got, operator(gate).reverse_qargs().data, atol=1e-9)


# -- writer --------------------------------------------------------------------------------
def test_pi_forms_parse_back_exactly() -> None:
    forms = _pi_forms()
    c = parse_qasm(HEAD + "qreg q[1];\n" + "".join(f"rz({t}) q[0];\n" for t in forms.values()))
    got = {text: inst.params[0] for text, inst in zip(forms.values(), c, strict=True)}
    assert {t for t, v in got.items() if forms.get(v) != t} == set()


def test_dump_writes_registers_and_pretty_params() -> None:
    c = Circuit.with_registers([("a", 2), ("b", 1)], [("m", 2)])
    c.append("rz", [2], [math.pi / 2])
    c.append("u3", [0], [-math.pi / 4, 3 * math.pi / 4, math.pi])
    c.append("cx", [0, 2])
    c.append("rx", [1], [0.1], condition=Condition("m", 1))
    c.append("measure", [2], clbits=[1])
    c.append("barrier", [0, 2])
    c.append("reset", [1])
    c.append("p", [0], [-0.0])
    assert dump_qasm(c).splitlines() == [
        "OPENQASM 2.0;", 'include "qelib1.inc";', "qreg a[2];", "qreg b[1];", "creg m[2];",
        "rz(pi/2) b[0];", "u3(-pi/4,3*pi/4,pi) a[0];", "cx a[0],b[0];",
        "if(m==1) rx(0.1) a[1];", "measure b[0] -> m[1];", "barrier a[0],b[0];",
        "reset a[1];", "p(-0.0) a[0];",
    ]
    assert math.copysign(1.0, parse_qasm(dump_qasm(c)).instructions[-1].params[0]) == -1.0


@pytest.mark.parametrize("inst,match", [
    (Instruction("rx", (0,), (math.inf,)), r"^parameter inf cannot be written in OpenQASM$"),
    (Instruction("barrier", (0,), (), (), Condition("c", 1)),
     r"^cannot write 'barrier' with condition on 'c': .*$"),
    (Instruction("barrier", ()), r"^cannot write 'barrier' on no qubits$"),
    (Instruction("foo", (0,)), r"^unknown operation 'foo' cannot be written as OpenQASM$"),
])
def test_dump_rejects_what_qasm_cannot_say(inst: Instruction, match: str) -> None:
    c = Circuit(num_qubits=1, num_clbits=1)
    c.instructions.append(inst)
    with pytest.raises(UsageError, match=match):
        dump_qasm(c)


def test_save_and_load(tmp_path: Path) -> None:
    c = Circuit(num_qubits=2, num_clbits=2)
    c.append("h", [0])
    c.append("cx", [0, 1])
    target = tmp_path / "out.qasm"
    target.write_text("old")
    save_qasm(c, target)
    assert load_qasm(target) == c
    assert os.listdir(tmp_path) == ["out.qasm"]  # no temp file left behind
    bad = Circuit(num_qubits=1)
    bad.instructions.append(Instruction("rx", (0,), (math.nan,)))
    with pytest.raises(UsageError):
        save_qasm(bad, target)
    assert load_qasm(target) == c and os.listdir(tmp_path) == ["out.qasm"]


def test_load_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.qasm"
    path.write_text(HEAD + "qreg q[1];\nfoo q[0];\n")
    with pytest.raises(QasmSemanticError,
                       match=rf"^{re.escape(str(path))}:4:1: unknown gate 'foo'$"):
        load_qasm(path)
    path.write_bytes(b"OPENQASM 2.0;\xff")
    with pytest.raises(QasmSyntaxError, match=r"not UTF-8 text \(byte 13\)$"):
        load_qasm(path)


# -- random round trips --------------------------------------------------------------------
_NAMES = ["q", "r", "anc", "data", "c", "meas", "flag", "out"]
_PARAMS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, math.pi, -math.pi / 2, 3 * math.pi / 4, 5e-324, 1e300]),
    st.builds(lambda k, d: k * math.pi / d, st.integers(-20, 20), st.integers(1, 70)),
)


@st.composite
def circuits(draw: st.DrawFn) -> Circuit:
    names = draw(st.permutations(_NAMES))
    qsizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    csizes = draw(st.lists(st.integers(1, 3), max_size=2))
    c = Circuit.with_registers(zip(names, qsizes, strict=False),
                               zip(names[len(qsizes):], csizes, strict=False))
    gates = sorted(g for g, s in GATES.items() if s.num_qubits <= c.num_qubits
                   and g not in ("U", "CX"))
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["gate", "gate", "gate", "measure", "reset", "barrier"]))
        qubits = draw(st.permutations(range(c.num_qubits)))
        cond = None
        if c.cregs and kind != "barrier" and draw(st.booleans()):
            reg = draw(st.sampled_from(c.cregs))
            cond = Condition(reg.name, draw(st.integers(0, 2**reg.size)))
        if kind == "gate":
            spec = GATES[draw(st.sampled_from(gates))]
            params = [draw(_PARAMS) for _ in range(spec.num_params)]
            c.append(spec.name, qubits[:spec.num_qubits], params, condition=cond)
        elif kind == "measure" and c.num_clbits:
            c.append("measure", qubits[:1], clbits=[draw(st.integers(0, c.num_clbits - 1))],
                     condition=cond)
        elif kind == "reset":
            c.append("reset", qubits[:1], condition=cond)
        elif kind == "barrier":
            c.append("barrier", qubits[:draw(st.integers(1, c.num_qubits))])
    return c


@settings(max_examples=300, deadline=None)
@given(circuits())
def test_random_circuits_round_trip(c: Circuit) -> None:
    again = parse_qasm(dump_qasm(c))
    assert again == c
    assert exact_params(again) == exact_params(c)


# -- interoperability with Qiskit ----------------------------------------------------------
def test_qiskit_export_reads_back_to_the_same_unitary() -> None:
    qiskit = pytest.importorskip("qiskit")
    lib = pytest.importorskip("qiskit.circuit.library")
    operator = pytest.importorskip("qiskit.quantum_info").Operator
    qc = qiskit.QuantumCircuit(5)
    qc.h(0)
    qc.rzz(0.3, 1, 2)
    qc.ryy(0.7, 2, 4)
    qc.rzx(0.4, 1, 3)
    qc.ecr(0, 4)
    qc.iswap(1, 2)
    qc.cswap(0, 1, 2)
    qc.mcx([0, 1, 2, 3], 4)
    qc.rcccx(0, 1, 2, 3)
    qc.r(0.3, 0.2, 1)
    qc.cu(0.1, 0.2, 0.3, 0.4, 0, 2)
    qc.append(lib.XXPlusYYGate(0.3, 0.1), [0, 1])
    qc.append(lib.C3SXGate(), [0, 1, 2, 3])
    qc.append(lib.C4XGate(), [4, 3, 2, 1, 0])
    c = decompose_multiqubit(parse_qasm(qiskit.qasm2.dumps(qc)))
    assert equal_up_to_phase(unitary(c.instructions, 5), operator(qc).reverse_qargs().data)


@settings(max_examples=25, deadline=None)
@given(circuits())
def test_qiskit_reads_our_output_as_the_same_unitary(c: Circuit) -> None:
    qiskit = pytest.importorskip("qiskit")
    operator = pytest.importorskip("qiskit.quantum_info").Operator
    # Qiskit reads u0(gamma) as gamma repetitions of id, so leave it out; huge angles
    # (hypothesis likes 2**53) lose all precision in either library's trigonometry.
    gates = Circuit(c.num_qubits, 0, list(c.qregs), [],
                    [i for i in c if i.is_gate and i.condition is None and i.name != "u0"
                     and all(abs(p) < 100 for p in i.params)])
    # Like the files Qiskit itself writes, ours need its full qelib1 gate set.
    qc = qiskit.qasm2.loads(dump_qasm(gates),
                            custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    ours = unitary(decompose_multiqubit(gates).instructions, c.num_qubits)
    np.testing.assert_allclose(ours, operator(qc).reverse_qargs().data, atol=1e-7)


# -- reader: language features ------------------------------------------------------------
def test_builtins_are_normalised_and_standard_names_are_visible_after_include() -> None:
    c = parse_qasm("OPENQASM 2.0;\nqreg q[2];\nU(pi,0,pi) q[0];\nCX q[0],q[1];")
    assert [(i.name, i.params) for i in c] == [("u", (math.pi, 0.0, math.pi)), ("cx", ())]


def test_expressions() -> None:
    exprs = {
        "-2^2": -4.0, "2^3^2": 2.0**9, "2*3+4/8": 6.5, "-(1+2)*3": -9.0, "1e-3": 1e-3,
        "2.5E+2": 250.0, ".5": 0.5, "3.": 3.0, "sin(pi/2)": 1.0, "cos(0)": 1.0,
        "ln(exp(2))": 2.0, "sqrt(16)": 4.0, "tan(0)": 0.0, "asin(1)": math.pi / 2,
        "acos(1)": 0.0, "atan(1)*4": math.pi, "pi*0.3501408748": math.pi * 0.3501408748,
        "2^-1": 0.5, "+1": 1.0, "10-2-3": 5.0, "8/2/2": 2.0,
    }
    text = HEAD + "qreg q[1];\n" + "".join(f"rz({e}) q[0];\n" for e in exprs)
    got = [i.params[0] for i in parse_qasm(text)]
    assert got == pytest.approx(list(exprs.values()), abs=1e-15)


def test_user_gates_with_parameter_expressions_expand() -> None:
    c = parse_qasm(HEAD + """
qreg q[3];
creg c[1];
gate rot(a, b) x { rz(a/2) x; ry(-b*2+a) x; }
gate pair(t) x, y { rot(t, pi) y; cx x, y; barrier x, y, x; rot(2*t, t^2) x; }
gate empty x { }
pair(1.5) q[0], q[2];
if(c==1) pair(0) q[1], q[0];
empty q[1];
""")
    got = [(i.name, i.qubits, i.params, i.condition) for i in c]
    on = Condition("c", 1)
    assert got == [
        ("rz", (2,), (0.75,), None), ("ry", (2,), (-2 * math.pi + 1.5,), None),
        ("cx", (0, 2), (), None), ("barrier", (0, 2), (), None),
        ("rz", (0,), (1.5,), None), ("ry", (0,), (-2 * 2.25 + 3.0,), None),
        ("rz", (0,), (0.0,), on), ("ry", (0,), (-2 * math.pi + 0.0,), on),
        ("cx", (1, 0), (), on), ("barrier", (1, 0), (), None),
        ("rz", (1,), (0.0,), on), ("ry", (1,), (0.0,), on),
    ]


def test_broadcasting() -> None:
    c = parse_qasm(HEAD + """
qreg a[2]; qreg b[2]; qreg s[1];
creg m[2]; creg k[1];
h a;
cx a, b;
cx s[0], b;
rzz(0.5) a, s[0];
measure a -> m;
measure s[0] -> k[0];
reset b;
barrier b, a[1], s, b[0];
if(m==3) x b;
""")
    assert ops(c) == [
        ("h", (0,)), ("h", (1,)),
        ("cx", (0, 2)), ("cx", (1, 3)),
        ("cx", (4, 2)), ("cx", (4, 3)),
        ("rzz", (0, 4)), ("rzz", (1, 4)),
        ("measure", (0,)), ("measure", (1,)), ("measure", (4,)),
        ("reset", (2,)), ("reset", (3,)),
        ("barrier", (2, 3, 1, 4)),
        ("x", (2,)), ("x", (3,)),
    ]
    assert [i.clbits for i in c if i.name == "measure"] == [(0,), (1,), (2,)]
    assert {i.condition for i in c.instructions[-2:]} == {Condition("m", 3)}


def test_registers_declared_late_get_the_next_indices() -> None:
    c = parse_qasm(HEAD + "qreg a[2];\nx a[1];\nqreg b[3];\ncreg c[2];\ncx a[0],b[2];")
    assert ops(c) == [("x", (1,)), ("cx", (0, 4))]
    assert [(r.name, r.start, r.size) for r in c.qregs] == [("a", 0, 2), ("b", 2, 3)]
    assert (c.num_qubits, c.num_clbits) == (5, 2)


def test_redefining_a_standard_gate_keeps_the_standard_meaning() -> None:
    c = parse_qasm(HEAD + "qreg q[2];\ngate cz a,b { whatever a; }\n"
                          "opaque h a;\ncz q[0],q[1];\nh q[0];")
    assert ops(c) == [("cz", (0, 1)), ("h", (0,))]
    no_include = parse_qasm("OPENQASM 2.0;\ngate x a { U(pi,0,pi) a; }\nqreg q[1];\nx q[0];")
    assert ops(no_include) == [("x", (0,))]


def test_opaque_declaration_alone_is_accepted() -> None:
    assert len(parse_qasm(HEAD + "opaque magic(a) x, y;\nqreg q[1];\nh q;")) == 1


def test_comments_whitespace_and_header_after_comments() -> None:
    c = parse_qasm("// leading comment\n\tOPENQASM 2.0; // trailing\ninclude\n\"qelib1.inc\""
                   ";qreg q[1];h\nq[0]\n;  // end\n// last line without newline")
    assert ops(c) == [("h", (0,))]


def test_includes_resolve_beside_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.inc").write_text("gate twice a { x a; x a; }\n")
    (tmp_path / "defs.inc").write_text('include "qelib1.inc";\ninclude "sub/more.inc";\n'
                                       "gate flip a { twice a; x a; }\n")
    main = tmp_path / "main.qasm"
    main.write_text('OPENQASM 2.0;\ninclude "defs.inc";\nqreg q[1];\nflip q[0];\n')
    assert ops(load_qasm(main)) == [("x", (0,))] * 3
    (tmp_path / "loop.inc").write_text('include "loop.inc";\n')
    main.write_text('OPENQASM 2.0;\ninclude "loop.inc";\n')
    with pytest.raises(QasmSemanticError,
                       match=r"^.*loop\.inc:1:9: include cycle: 'loop\.inc' includes itself$"):
        load_qasm(main)


def test_errors_inside_includes_name_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "bad.inc").write_text("gate g a {\n  nope a;\n}\n")
    main = tmp_path / "main.qasm"
    main.write_text('OPENQASM 2.0;\ninclude "bad.inc";\n')
    with pytest.raises(QasmSemanticError) as info:
        load_qasm(main)
    assert (info.value.filename, info.value.line, info.value.column) == (
        str(tmp_path / "bad.inc"), 2, 3)


# -- reader: errors, pinned ----------------------------------------------------------------
_Q = HEAD + "qreg q[3];\ncreg c[3];\n"  # statements below start on line 5
ERRORS: list[tuple[str, type[QasmError], str]] = [
    ("qreg q[1];", QasmSyntaxError,
     r"1:1: expected 'OPENQASM 2\.0;' as the first statement, found 'qreg'"),
    ("", QasmSyntaxError, r"1:1: expected 'OPENQASM 2\.0;' as the first statement, "
                          r"found end of file"),
    ("OPENQASM 3.0;", QasmSemanticError,
     r"1:10: unsupported OpenQASM version 3\.0; qpuos reads OpenQASM 2\.0"),
    ("OPENQASM 2.0\nqreg q[1];", QasmSyntaxError,
     r"2:1: expected ';' after 'OPENQASM 2\.0', found 'qreg'"),
    (_Q + "h q[0]\nh q[1];", QasmSyntaxError, r"6:1: expected ';' after gate call, found 'h'"),
    (_Q + "hh q[0];", QasmSemanticError, r"5:1: unknown gate 'hh'; did you mean 'h'\?"),
    (_Q + "frobnicate q[0];", QasmSemanticError, r"5:1: unknown gate 'frobnicate'"),
    ("OPENQASM 2.0;\nqreg q[1];\nh q[0];", QasmSemanticError,
     r"3:1: gate 'h' is defined in qelib1\.inc; add 'include \"qelib1\.inc\";' after the "
     r"header"),
    (_Q + "opaque magic a;\nmagic q[0];", QasmSemanticError,
     r"6:1: opaque gate 'magic' has no definition; qpuos cannot simulate or route it"),
    (_Q + "x q[3];", QasmSemanticError,
     r"5:3: q\[3\] is out of range: register 'q' has 3 bits \(indices 0\.\.2\)"),
    (_Q + "rx(0.1, 0.2) q[0];", QasmSemanticError, r"5:1: gate 'rx' takes 1 parameter, got 2"),
    (_Q + "u3(1) q[0];", QasmSemanticError, r"5:1: gate 'u3' takes 3 parameters, got 1"),
    (_Q + "cx q[0];", QasmSemanticError, r"5:1: gate 'cx' acts on 2 qubits, got 1"),
    (_Q + "x r[0];", QasmSemanticError, r"5:3: undeclared quantum register 'r'"),
    (_Q + "x qq[0];", QasmSemanticError,
     r"5:3: undeclared quantum register 'qq'; did you mean 'q'\?"),
    (_Q + "x c[0];", QasmSemanticError, r"5:3: 'c' is not a quantum register"),
    (_Q + "measure q[0] -> q[1];", QasmSemanticError, r"5:17: 'q' is not a classical register"),
    (_Q + "qreg r[2];\ncx q, r;", QasmSemanticError,
     r"6:1: registers of different sizes in one call to 'cx': q has 3, r has 2"),
    (_Q + "cx q[1], q[1];", QasmSemanticError, r"5:1: qubit q\[1\] used twice in one call to 'cx'"),
    (_Q + "cx q, q[2];", QasmSemanticError, r"5:1: qubit q\[2\] used twice in one call to 'cx'"),
    (_Q + "qreg q[2];", QasmSemanticError, r"5:6: register 'q' is already declared"),
    (_Q + "qreg z[0];", QasmSemanticError,
     r"5:6: register 'z' has size 0; sizes must be at least 1"),
    (_Q + "/* block */", QasmSyntaxError,
     r"5:1: expected a statement, found '/\*' \(block comments are not OpenQASM 2\.0; use '//'\)"),
    (_Q + "rx(1/0) q[0];", QasmSemanticError,
     r"5:5: cannot evaluate 1\.0 / 0\.0: division by zero"),
    (_Q + "rx(sqrt(-1)) q[0];", QasmSemanticError,
     r"5:4: cannot evaluate sqrt\(-1\.0\): outside its domain"),
    (_Q + "rx(1e308*10) q[0];", QasmSemanticError, r"5:4: parameter evaluates to inf"),
    (_Q + "rx(theta) q[0];", QasmSemanticError,
     r"5:4: unknown identifier 'theta' in expression; parameter names can be used only "
     r"inside a gate body"),
    (_Q + "rx(1 q[0];", QasmSyntaxError, r"5:6: expected '\)' after gate parameters, found 'q'"),
    (_Q + "rx() q[0];", QasmSemanticError, r"5:1: gate 'rx' takes 1 parameter, got 0"),
    (_Q + "rx(*) q[0];", QasmSyntaxError,
     r"5:4: expected a number, 'pi', a name or '\(', found '\*'"),
    (_Q + "measure q -> c[0];", QasmSemanticError,
     r"5:1: measure needs a register on both sides or a single bit on both sides"),
    (_Q + "creg d[2];\nmeasure q -> d;", QasmSemanticError,
     r"6:1: measure q -> d: registers have 3 and 2 bits"),
    (_Q + "if(c==1) barrier q;", QasmSyntaxError,
     r"5:10: expected a gate call, measure or reset after 'if\(\.\.\.\)', found 'barrier'"),
    (_Q + "if(d==1) x q;", QasmSemanticError, r"5:4: undeclared classical register 'd'"),
    (_Q + "gate g(a) x { rx(b) x; }", QasmSemanticError,
     r"5:18: unknown identifier 'b' in expression; this gate's parameters are: a"),
    (_Q + "gate g x { cx x, y; }", QasmSemanticError,
     r"5:12: 'y' is not an argument of this gate \(arguments: x\)"),
    (_Q + "gate g x { measure x; }", QasmSyntaxError,
     r"5:12: expected a gate call, barrier or '}' in a gate body, found 'measure'"),
    (_Q + "gate g x, y { cx x, x; }", QasmSemanticError,
     r"5:15: argument used twice in one call to 'cx'"),
    (_Q + "gate g x, x { }", QasmSemanticError, r"5:6: name 'x' is declared twice in gate 'g'"),
    (_Q + "gate g x { }\ngate g x { }", QasmSemanticError, r"6:6: gate 'g' is already defined"),
    (_Q + "gate U a { }", QasmSemanticError, r"5:6: cannot redefine the built-in gate 'U'"),
    (_Q + "gate cu1 a, b { }", QasmSemanticError,
     r"5:6: gate 'cu1' is redefined with 0 parameters and 2 qubits; the standard gate has 1 "
     r"and 2"),
    (_Q + "gate g(t) x { rx(1/t) x; }\ng(0) q[0];", QasmSemanticError,
     r"6:1: in gate 'g': cannot evaluate 1\.0 / 0\.0: division by zero"),
    (_Q + "gate g x {\n x x;\n", QasmSyntaxError,
     r"7:1: expected a gate call, barrier or '}' in a gate body, found end of file"),
    (_Q + 'include "missing.inc";', QasmSemanticError,
     r"5:9: cannot include 'missing\.inc': No such file or directory \(.*missing\.inc\)"),
    (_Q + "OPENQASM 2.0;", QasmSyntaxError, r"5:1: 'OPENQASM 2\.0;' must be the first statement"),
    (_Q + "x q[0]; )", QasmSyntaxError, r"5:9: expected a statement, found '\)'"),
    (_Q + "x q[-1];", QasmSyntaxError, r"5:5: expected an index \(an integer\), found '-'"),
]


@pytest.mark.parametrize("text,cls,message", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_error_messages(text: str, cls: type[QasmError], message: str) -> None:
    with pytest.raises(cls, match=rf"^<string>:{message}$") as info:
        parse_qasm(text)
    line, column = message.split(":")[:2]
    assert (info.value.line, info.value.column) == (int(line), int(column))


def test_deep_nesting_is_a_clean_error() -> None:
    text = _Q + "rx(" + "(" * 100_000 + "1" + ")" * 100_000 + ") q[0];"
    with pytest.raises(QasmSyntaxError, match=r"^<string>: expressions or includes nested "
                                              r"too deeply$"):
        parse_qasm(text)


_MUTATIONS = [";", ",", "(", ")", "[", "]", "{", "}", "-", "*", "^", ".", "0", "9", "e", '"',
              "\n", " ", "->", "==", "q", "pi", "gate", "if", "U", "CX", "measure", "barrier",
              "opaque", "sin(", "1e999", "//", "/*", "\u00e9", "\u00a0", "\u0663"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([p for p in BENCH_FILES if p.stat().st_size < 3000]),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(_MUTATIONS),
                          st.booleans()), min_size=1, max_size=4))
def test_mangled_files_fail_only_with_qasm_errors(path: Path,
                                                   edits: list[tuple[float, str, bool]]) -> None:
    text = path.read_text()
    for where, piece, replace in edits:
        k = int(where * len(text))
        text = text[:k] + piece + text[k + int(replace):]
    try:
        parse_qasm(text)
    except QasmError as exc:
        assert exc.line >= 1 and exc.column >= 1
