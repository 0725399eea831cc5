"""OpenQASM 2.0: read a file into a ``Circuit`` and write a ``Circuit`` back out.

This module is the public face and the statement parser; the tokenizer lives in
``_qasm_lexer``, parameter expressions in ``_qasm_expr`` and the writer in
``_qasm_writer`` (``dump_qasm`` and ``save_qasm`` are re-exported here).

Design notes:

* The parser is recursive descent over the lexer's list of token strings. Top-level
  parameter expressions are folded to floats as they are read.
* The IR holds only standard gates. A user ``gate`` is inlined into a flat body of
  standard calls when it is *defined* (parameters kept as expression trees), so a call
  only evaluates parameters and maps qubits.
* Built-ins are normalised: ``U`` becomes ``u`` and ``CX`` becomes ``cx`` (same
  matrices), so the rest of qpuos sees one name for each.
* ``include "qelib1.inc"`` always loads qpuos's packaged library (``data/qelib1.inc``),
  never a file of that name beside the source. Standard gate names are visible only after
  that include (or after the file defines them). Other includes resolve beside the
  including file (the working directory for text).
* A file may define a gate with a standard name (Qiskit's exports re-declare some): the
  standard semantics win and the body is only checked for syntax; the signature must
  match. ``U`` and ``CX`` cannot be defined.
* ``opaque`` declarations are accepted; *calling* an opaque gate is an error, since qpuos
  can neither simulate nor route a gate with no definition.
* Barriers are never conditional: ``if(...)`` cannot precede ``barrier`` (as in the
  spec), and barriers in the body of a conditional user-gate call stay unconditional.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import NoReturn, TypeAlias, cast

from qpuos.errors import QasmSemanticError, QasmSyntaxError, UsageError
from qpuos.quantum._qasm_expr import EvalError, Expr, ExprParser, evaluate, substitute
from qpuos.quantum._qasm_lexer import IDENT_START, KEYWORDS, is_number, tokenize
from qpuos.quantum._qasm_writer import dump_qasm, pi_forms, save_qasm
from qpuos.quantum.circuit import Circuit, Condition, Instruction, Register
from qpuos.quantum.gates import GATES

__all__ = ["GateDefinition", "dump_qasm", "load_qasm", "parse_qasm", "save_qasm"]

_BUILTIN = {"U": "u", "CX": "cx"}
# tests/quantum/test_qasm.py imports it from here, where it lived before the writer moved.
_pi_forms = pi_forms

#: One body operation: standard gate name (or "barrier"), indices into the gate's qubit
#: arguments, parameter expressions over the gate's parameters.
_BodyOp: TypeAlias = tuple[str, tuple[int, ...], tuple[Expr, ...]]


@dataclass(frozen=True, slots=True)
class GateDefinition:
    """A gate defined by ``gate name(params) qubits { body }``, resolved to standard gates.

    A user gate's body is fully inlined (it calls only standard gates). The definitions
    of ``qelib1.inc`` call the earlier standard gates of that file, which is what
    ``decompose_multiqubit`` expands step by step.

    Attributes:
        name: the gate's name.
        params: the parameter names, in order.
        qubits: the qubit argument names, in order.
        body: ``(gate, qubit indices into qubits, parameter expressions)`` per operation.
    """

    name: str
    params: tuple[str, ...]
    qubits: tuple[str, ...]
    body: tuple[_BodyOp, ...]

    def instantiate(self, qubits: Sequence[int], params: Sequence[float] = (),
                    condition: Condition | None = None) -> list[Instruction]:
        """The body on concrete qubits with concrete parameters, as instructions.

        Every produced gate carries ``condition``; barriers stay unconditional.

        Raises:
            UsageError: wrong number of qubits or parameters, or a parameter expression
                these values cannot evaluate (a division by zero, say).
        """
        if len(qubits) != len(self.qubits) or len(params) != len(self.params):
            raise UsageError(f"gate {self.name!r} takes {len(self.qubits)} qubits and "
                             f"{len(self.params)} parameters, got {len(qubits)} and "
                             f"{len(params)}")
        out: list[Instruction] = []
        for name, idx, exprs in self.body:
            qs = tuple(qubits[j] for j in idx)
            if name == "barrier":
                out.append(Instruction("barrier", qs))
                continue
            try:
                vals = tuple(evaluate(e, params) for e in exprs)
            except EvalError as exc:
                raise UsageError(f"in gate {self.name!r}: {exc}") from None
            out.append(Instruction(name, qs, vals, (), condition))
        return out


class _Parser(ExprParser):
    """Parser state shared by a file and the files it includes."""

    def __init__(self, *, library: bool = False) -> None:
        super().__init__()
        self.library = library  # reading data/qelib1.inc: keep standard definitions
        # Callable gates: None for a standard gate, else the user gate's definition.
        self.visible: dict[str, GateDefinition | None] = {"U": None, "CX": None}
        self.opaque: set[str] = set()
        self.definitions: dict[str, GateDefinition] = {}
        self.qregs: dict[str, Register] = {}
        self.cregs: dict[str, Register] = {}
        self.out: list[Instruction] = []
        self.including: list[str] = []

    # -- tokens (fail, found and expect come from TokenCursor) --------------------
    def ident(self, what: str, *, builtin: bool = False) -> str:
        tok = self.toks[self.i]
        if tok[:1] not in IDENT_START or (
                tok in KEYWORDS and not (builtin and tok in _BUILTIN)):
            self.fail(QasmSyntaxError, f"expected {what}, found {self.found()}")
        self.i += 1
        return tok

    def names(self, what: str) -> list[str]:
        out = [self.ident(what)]
        while self.toks[self.i] == ",":
            self.i += 1
            out.append(self.ident(what))
        return out

    def integer(self, what: str) -> int:
        tok = self.toks[self.i]
        if not (tok.isascii() and tok.isdigit()):
            self.fail(QasmSyntaxError, f"expected {what} (an integer), found {self.found()}")
        self.i += 1
        return int(tok)

    # -- files and statements -------------------------------------------------------
    def run(self, text: str, filename: str, *, header: bool) -> None:
        saved = (self.text, self.filename, self.toks, self.i)
        self.text, self.filename, self.i = text, filename, 0
        self.toks = tokenize(text)
        if self.toks[0] == "OPENQASM":
            self.i = 1
            version = self.toks[1]
            if not is_number(version):
                self.fail(QasmSyntaxError, f"expected a version number after 'OPENQASM', "
                                           f"found {self.found()}")
            if float(version) != 2.0:
                self.fail(QasmSemanticError, f"unsupported OpenQASM version {version}; qpuos "
                                             "reads OpenQASM 2.0")
            self.i = 2
            self.expect(";", "after 'OPENQASM 2.0'")
        elif header:
            self.fail(QasmSyntaxError, "expected 'OPENQASM 2.0;' as the first statement, "
                                       f"found {self.found()}")
        while self.toks[self.i] != "":
            self.statement()
        self.text, self.filename, self.toks, self.i = saved

    def statement(self) -> None:
        tok = self.toks[self.i]
        if tok in self.visible:
            self.call(None)
        elif tok in ("qreg", "creg"):
            self.register(tok)
        elif tok in ("measure", "reset"):
            self.measure_reset(None)
        elif tok == "barrier":
            self.i += 1
            args = self.bits(self.qregs, "quantum")
            self.expect(";", "after barrier")
            flat = [q for a in args for q in (a.bits if isinstance(a, Register) else (a,))]
            self.out.append(Instruction("barrier", tuple(dict.fromkeys(flat))))
        elif tok == "if":
            self.conditional()
        elif tok in ("gate", "opaque"):
            self.definition(opaque=tok == "opaque")
        elif tok == "include":
            self.include()
        elif tok == "OPENQASM":
            self.fail(QasmSyntaxError, "'OPENQASM 2.0;' must be the first statement")
        elif tok[:1] in IDENT_START:
            self.unknown_gate(self.i)
        else:
            self.fail(QasmSyntaxError, f"expected a statement, found {self.found()}")

    def include(self) -> None:
        at = self.i = self.i + 1
        tok = self.toks[at]
        if len(tok) < 2 or tok[0] != '"':
            self.fail(QasmSyntaxError, "expected a file name in double quotes after "
                                       f"'include', found {self.found()}")
        self.i += 1
        self.expect(";", "after include")
        name = tok[1:-1]
        if name == "qelib1.inc":
            self.visible.update(dict.fromkeys(_library_definitions()))
            return
        base = Path(self.filename).parent if self.filename != "<string>" else Path.cwd()
        path = base / name
        key = str(path.resolve())
        if key in self.including:
            self.fail(QasmSemanticError, f"include cycle: {name!r} includes itself", at)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self.fail(QasmSemanticError, f"cannot include {name!r}: {why} ({path})", at)
        self.including.append(key)
        self.run(text, str(path), header=False)
        self.including.pop()

    def register(self, kind: str) -> None:
        at = self.i = self.i + 1
        name = self.ident(f"a register name after '{kind}'")
        self.expect("[", f"after register name {name!r}")
        size = self.integer("the register size")
        self.expect("]", "after the register size")
        self.expect(";", "after register declaration")
        if name in self.qregs or name in self.cregs:
            self.fail(QasmSemanticError, f"register {name!r} is already declared", at)
        if size == 0:
            self.fail(QasmSemanticError, f"register {name!r} has size 0; sizes must be at "
                                         "least 1", at)
        regs = self.qregs if kind == "qreg" else self.cregs
        regs[name] = Register(name, size, sum(r.size for r in regs.values()))

    def bit(self, regs: dict[str, Register], kind: str) -> int | Register:
        """One argument: a whole register or one bit (its circuit-wide index)."""
        at = self.i
        name = self.ident(f"a {kind} register name")
        reg = regs.get(name)
        if reg is None:
            if name in self.qregs or name in self.cregs:
                self.fail(QasmSemanticError, f"{name!r} is not a {kind} register", at)
            self.fail(QasmSemanticError, f"undeclared {kind} register {name!r}"
                                         f"{_suggest(name, regs)}", at)
        if self.toks[self.i] != "[":
            return reg
        self.i += 1
        index = self.integer("an index")
        self.expect("]", "after the index")
        if index >= reg.size:
            self.fail(QasmSemanticError, f"{name}[{index}] is out of range: register {name!r} "
                                         f"has {reg.size} bits (indices 0..{reg.size - 1})", at)
        return reg.start + index

    def bits(self, regs: dict[str, Register], kind: str) -> list[int | Register]:
        args = [self.bit(regs, kind)]
        while self.toks[self.i] == ",":
            self.i += 1
            args.append(self.bit(regs, kind))
        return args

    def call(self, cond: Condition | None) -> None:
        toks = self.toks
        at = self.i
        name = toks[at]
        self.i += 1
        params: list[float] = []
        if toks[self.i] == "(":
            self.i += 1
            if toks[self.i] != ")":
                params.append(self.param())
                while toks[self.i] == ",":
                    self.i += 1
                    params.append(self.param())
            self.expect(")", "after gate parameters")
        args = self.bits(self.qregs, "quantum")
        self.expect(";", "after gate call")
        defn = self.visible[name]
        ir_name = _BUILTIN.get(name, name)
        if defn is None:
            self.check(name, (GATES[ir_name].num_params, GATES[ir_name].num_qubits),
                       (len(params), len(args)), at)
        else:
            self.check(name, (len(defn.params), len(defn.qubits)), (len(params), len(args)),
                       at)
        values = tuple(params)
        for qs in self.broadcast(name, args, at):
            if defn is None:
                self.out.append(Instruction(ir_name, qs, values, (), cond))
            else:
                try:
                    self.out.extend(defn.instantiate(qs, values, cond))
                except UsageError as exc:
                    self.fail(QasmSemanticError, str(exc), at)

    def param(self) -> float:
        toks, i = self.toks, self.i
        # Fast paths for a plain number, possibly negated, followed by ',' or ')'.
        if is_number(toks[i]) and toks[i + 1] in (",", ")"):
            self.i += 1
            value: Expr = float(toks[i])
        elif toks[i] == "-" and is_number(toks[i + 1]) and toks[i + 2] in (",", ")"):
            self.i += 2
            value = -float(toks[i + 1])
        else:
            value = self.expr({})
        if not isinstance(value, float) or not math.isfinite(value):
            self.fail(QasmSemanticError, f"parameter evaluates to {value}", i)
        return value

    def check(self, name: str, want: tuple[int, int], got: tuple[int, int], at: int) -> None:
        if got[0] != want[0]:
            self.fail(QasmSemanticError, f"gate {name!r} takes {_plural(want[0], 'parameter')}"
                                         f", got {got[0]}", at)
        if got[1] != want[1]:
            self.fail(QasmSemanticError, f"gate {name!r} acts on {_plural(want[1], 'qubit')}, "
                                         f"got {got[1]}", at)

    def broadcast(self, name: str, args: list[int | Register],
                  at: int) -> list[tuple[int, ...]]:
        regs = [a for a in args if isinstance(a, Register)]
        if not regs:
            calls = [cast(tuple[int, ...], tuple(args))]
        else:
            for r in regs:
                if r.size != regs[0].size:
                    self.fail(QasmSemanticError, "registers of different sizes in one call to "
                                                 f"{name!r}: {regs[0].name} has "
                                                 f"{regs[0].size}, {r.name} has {r.size}", at)
            calls = [tuple(a.start + k if isinstance(a, Register) else a for a in args)
                     for k in range(regs[0].size)]
        for qs in calls:
            if len(set(qs)) != len(qs):
                dup = next(q for q in qs if qs.count(q) > 1)
                reg = next(r for r in self.qregs.values() if dup in r.bits)
                self.fail(QasmSemanticError, f"qubit {reg.name}[{dup - reg.start}] used twice "
                                             f"in one call to {name!r}", at)
        return calls

    def measure_reset(self, cond: Condition | None) -> None:
        at = self.i
        kw = self.toks[at]
        self.i += 1
        q = self.bit(self.qregs, "quantum")
        if kw == "reset":
            self.expect(";", "after reset")
            bits = q.bits if isinstance(q, Register) else (q,)
            self.out.extend(Instruction("reset", (b,), (), (), cond) for b in bits)
            return
        self.expect("->", "after the measured qubits")
        c = self.bit(self.cregs, "classical")
        self.expect(";", "after measure")
        if isinstance(q, Register) and isinstance(c, Register):
            if q.size != c.size:
                self.fail(QasmSemanticError, f"measure {q.name} -> {c.name}: registers have "
                                             f"{q.size} and {c.size} bits", at)
            self.out.extend(Instruction("measure", (qb,), (), (cb,), cond)
                            for qb, cb in zip(q.bits, c.bits, strict=True))
        elif isinstance(q, Register) or isinstance(c, Register):
            self.fail(QasmSemanticError, "measure needs a register on both sides or a single "
                                         "bit on both sides", at)
        else:
            self.out.append(Instruction("measure", (q,), (), (c,), cond))

    def conditional(self) -> None:
        self.i += 1
        self.expect("(", "after 'if'")
        at = self.i
        name = self.ident("a classical register name")
        self.expect("==", f"after {name!r} in the condition")
        value = self.integer("the value to compare with")
        self.expect(")", "after the condition")
        if name not in self.cregs:
            self.fail(QasmSemanticError, f"undeclared classical register {name!r}"
                                         f"{_suggest(name, self.cregs)}", at)
        tok = self.toks[self.i]
        if tok in self.visible:
            self.call(Condition(name, value))
        elif tok in ("measure", "reset"):
            self.measure_reset(Condition(name, value))
        elif tok[:1] in IDENT_START and tok not in KEYWORDS:
            self.unknown_gate(self.i)
        else:
            self.fail(QasmSyntaxError, "expected a gate call, measure or reset after "
                                       f"'if(...)', found {self.found()}")

    def unknown_gate(self, at: int) -> NoReturn:
        name = self.toks[at]
        if name in self.opaque:
            self.fail(QasmSemanticError, f"opaque gate {name!r} has no definition; qpuos "
                                         "cannot simulate or route it", at)
        if name in GATES:
            self.fail(QasmSemanticError, f"gate {name!r} is defined in qelib1.inc; add "
                                         "'include \"qelib1.inc\";' after the header", at)
        hint = difflib.get_close_matches(name, [*self.visible, *self.opaque], n=1)
        more = f"; did you mean {hint[0]!r}?" if hint else ""
        self.fail(QasmSemanticError, f"unknown gate {name!r}{more}", at)

    # -- gate definitions -------------------------------------------------------------
    def definition(self, *, opaque: bool) -> None:
        at = self.i = self.i + 1
        name = self.ident("a gate name", builtin=True)
        pnames: list[str] = []
        if self.toks[self.i] == "(":
            self.i += 1
            if self.toks[self.i] != ")":
                pnames = self.names("a parameter name")
            self.expect(")", "after gate parameters")
        qnames = self.names("a qubit argument name")
        for group in (pnames, qnames):
            for dup in {n for n in group if group.count(n) > 1}:
                self.fail(QasmSemanticError, f"name {dup!r} is declared twice in gate "
                                             f"{name!r}", at)
        standard = name in GATES
        if name in _BUILTIN:
            self.fail(QasmSemanticError, f"cannot redefine the built-in gate {name!r}", at)
        if name in self.opaque or (name in self.visible and not standard):
            self.fail(QasmSemanticError, f"gate {name!r} is already defined", at)
        if standard and (len(pnames), len(qnames)) != (GATES[name].num_params,
                                                       GATES[name].num_qubits):
            self.fail(QasmSemanticError, f"gate {name!r} is redefined with {len(pnames)} "
                                         f"parameters and {len(qnames)} qubits; the standard "
                                         f"gate has {GATES[name].num_params} and "
                                         f"{GATES[name].num_qubits}", at)
        if opaque:
            self.expect(";", "after opaque declaration")
            if standard:
                self.visible[name] = None
            else:
                self.opaque.add(name)
            return
        self.expect("{", f"to open the body of gate {name!r}")
        resolve = self.library or not standard  # a user's standard redefinition: syntax only
        params = {p: k for k, p in enumerate(pnames)}
        qubits = {q: k for k, q in enumerate(qnames)}
        body: list[_BodyOp] = []
        while self.toks[self.i] != "}":
            body.extend(self.body_op(params, qubits, resolve=resolve))
        self.i += 1
        defn = GateDefinition(name, tuple(pnames), tuple(qnames), tuple(body))
        self.visible[name] = None if standard else defn
        if standard and self.library:
            self.definitions[name] = defn

    def body_op(self, params: dict[str, int], qubits: dict[str, int], *,
                resolve: bool) -> list[_BodyOp]:
        toks = self.toks
        at = self.i
        name = toks[at]
        if name in ("measure", "reset", "if", "gate", "opaque", "qreg", "creg", ""):
            self.fail(QasmSyntaxError, "expected a gate call, barrier or '}' in a gate body, "
                                       f"found {self.found()}")
        if name != "barrier":
            self.ident("a gate call in the gate body", builtin=True)
        else:
            self.i += 1
        exprs: list[Expr] = []
        if name != "barrier" and toks[self.i] == "(":
            self.i += 1
            if toks[self.i] != ")":
                exprs.append(self.expr(params))
                while toks[self.i] == ",":
                    self.i += 1
                    exprs.append(self.expr(params))
            self.expect(")", "after gate parameters")
        idx: list[int] = []
        for q in self.names("a qubit argument"):
            if q not in qubits:
                self.fail(QasmSemanticError, f"{q!r} is not an argument of this gate "
                                             f"(arguments: {', '.join(qubits)})", at)
            idx.append(qubits[q])
        self.expect(";", f"after {'barrier' if name == 'barrier' else 'gate call'}")
        if name == "barrier":
            return [("barrier", tuple(dict.fromkeys(idx)), ())]
        if not resolve:
            return []
        if name not in self.visible:
            self.unknown_gate(at)
        if len(set(idx)) != len(idx):
            self.fail(QasmSemanticError, f"argument used twice in one call to {name!r}", at)
        defn = self.visible[name]
        if defn is None:
            spec = GATES[_BUILTIN.get(name, name)]
            self.check(name, (spec.num_params, spec.num_qubits), (len(exprs), len(idx)), at)
            return [(spec.name, tuple(idx), tuple(exprs))]
        self.check(name, (len(defn.params), len(defn.qubits)), (len(exprs), len(idx)), at)
        try:
            return [(g, tuple(idx[j] for j in qs), tuple(substitute(e, exprs) for e in es))
                    for g, qs, es in defn.body]
        except EvalError as exc:
            self.fail(QasmSemanticError, str(exc), at)

    def circuit(self) -> Circuit:
        qregs, cregs = list(self.qregs.values()), list(self.cregs.values())
        return Circuit(sum(r.size for r in qregs), sum(r.size for r in cregs), qregs, cregs,
                       self.out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _suggest(name: str, known: dict[str, Register]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


@cache
def _library_definitions() -> dict[str, GateDefinition]:
    """The packaged ``qelib1.inc``, parsed once; its bodies call standard gates."""
    text = resources.files("qpuos.quantum").joinpath("data/qelib1.inc").read_text("utf-8")
    parser = _Parser(library=True)
    parser.run(text, "qelib1.inc", header=False)
    return parser.definitions


def parse_qasm(text: str, *, filename: str = "<string>") -> Circuit:
    """Read OpenQASM 2.0 source into a circuit of standard gates.

    User gates are expanded, registers broadcast, ``U``/``CX`` renamed ``u``/``cx``.

    >>> c = parse_qasm('OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; h q; cx q[0],q[1];')
    >>> [(i.name, i.qubits) for i in c]
    [('h', (0,)), ('h', (1,)), ('cx', (0, 1))]

    Args:
        text: the source.
        filename: names the source in errors; relative includes resolve beside it.

    Raises:
        QasmSyntaxError: not OpenQASM 2.0 (with line, column and what was expected).
        QasmSemanticError: unknown or opaque gate, undeclared register, index out of range,
            wrong arity or parameter count, mismatched broadcast, repeated qubit.
    """
    parser = _Parser()
    try:
        parser.run(text, filename, header=True)
    except RecursionError:
        raise QasmSyntaxError("expressions or includes nested too deeply",
                              filename=filename) from None
    return parser.circuit()


def load_qasm(path: str | os.PathLike[str]) -> Circuit:
    """Read an OpenQASM 2.0 file; errors name the file by ``path``.

    Raises:
        OSError: the file cannot be read.
        QasmError: as ``parse_qasm``; also when the file is not UTF-8 text.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QasmSyntaxError(f"not UTF-8 text (byte {exc.start})", filename=str(path)) from None
    return parse_qasm(text, filename=str(path))

