"""OpenQASM 2.0 parameter expressions: parsing, constant folding and evaluation.

Split out of ``qasm.py``: the arithmetic (``pi``, ``+ - * / ^``, unary minus and the
spec's functions) is one concept, separate from statements and registers.

Design notes:

* An expression is a ``float`` as soon as its value is known, else a small tuple tree
  over the enclosing gate's parameters (see ``Expr``). Folding happens while parsing, so
  a top-level parameter is a float by the time its statement ends, and inlining a gate
  body (``substitute``) folds again, so a call only runs ``evaluate`` on what is left.
* ``ExprParser`` is a base class of the statement parser rather than an object of its
  own because both advance the same token cursor (``toks``, ``i``); a separate object
  would have to hand that index back and forth at every parameter.
* Arithmetic faults raise ``EvalError`` without a position; the caller knows which
  token or gate call to blame and re-raises it as a ``QasmError`` or ``UsageError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from qpuos.errors import QasmSemanticError, QasmSyntaxError
from qpuos.quantum._qasm_lexer import IDENT_START, TokenCursor, is_number

FUNCS: dict[str, Callable[[float], float]] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "ln": math.log,
    "sqrt": math.sqrt, "asin": math.asin, "acos": math.acos, "atan": math.atan,
}

#: A parameter expression: a float or a node ``("var", k)``, ``("neg", e)``,
#: ``("fn", name, e)`` or ``(op, a, b)`` with op one of ``+ - * / ^``.
Expr: TypeAlias = float | tuple[Any, ...]


class EvalError(Exception):
    """A parameter expression could not be evaluated (the caller adds the position)."""


def _binop(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        return a / b if op == "/" else math.pow(a, b)
    except (ArithmeticError, ValueError):
        why = "division by zero" if op == "/" else "not a real number"
        raise EvalError(f"cannot evaluate {a!r} {op} {b!r}: {why}") from None


def _func(name: str, x: float) -> float:
    try:
        return FUNCS[name](x)
    except (ArithmeticError, ValueError):
        raise EvalError(f"cannot evaluate {name}({x!r}): outside its domain") from None


def evaluate(e: Expr, env: Sequence[float]) -> float:
    """The value of ``e`` with variable k bound to ``env[k]``.

    >>> evaluate(("+", ("var", 0), ("neg", ("var", 1))), [3.0, 0.5])
    2.5

    Raises:
        EvalError: a division by zero, or a value outside a function's domain.
    """
    if isinstance(e, float):
        return e
    if e[0] == "var":
        return env[e[1]]
    if e[0] == "neg":
        return -evaluate(e[1], env)
    if e[0] == "fn":
        return _func(e[1], evaluate(e[2], env))
    return _binop(e[0], evaluate(e[1], env), evaluate(e[2], env))


def fold(op: str, a: Expr, b: Expr) -> Expr:
    """``a op b`` (``b`` unused for ``neg`` and functions), computed when both are known.

    >>> fold("*", 2.0, 0.25), fold("*", 2.0, ("var", 0))
    (0.5, ('*', 2.0, ('var', 0)))
    """
    if op == "neg":
        return -a if isinstance(a, float) else ("neg", a)
    if op in FUNCS:
        return _func(op, a) if isinstance(a, float) else ("fn", op, a)
    if isinstance(a, float) and isinstance(b, float):
        return _binop(op, a, b)
    return (op, a, b)


def substitute(e: Expr, args: Sequence[Expr]) -> Expr:
    """``e`` with each variable k replaced by ``args[k]``, constants folded."""
    if isinstance(e, float):
        return e
    if e[0] == "var":
        return args[e[1]]
    if e[0] == "neg":
        return fold("neg", substitute(e[1], args), 0.0)
    if e[0] == "fn":
        return fold(e[1], substitute(e[2], args), 0.0)
    return fold(e[0], substitute(e[1], args), substitute(e[2], args))


class ExprParser(TokenCursor):
    """Recursive descent over a parameter expression, folding constants as it goes.

    ``params`` maps the enclosing gate's parameter names to variable indices (empty at
    the top level, where every expression folds to a float).
    """

    # expr := term (+|- term)*   term := unary (*|/ unary)*
    # unary := (-|+) unary | atom (^ unary)?   (so ^ binds tightest, right-assoc)
    def expr(self, params: dict[str, int]) -> Expr:
        left = self.term(params)
        while self.toks[self.i] in ("+", "-"):
            at = self.i = self.i + 1
            left = self.fold_at(self.toks[at - 1], left, self.term(params), at - 1)
        return left

    def term(self, params: dict[str, int]) -> Expr:
        left = self.unary(params)
        while self.toks[self.i] in ("*", "/"):
            at = self.i = self.i + 1
            left = self.fold_at(self.toks[at - 1], left, self.unary(params), at - 1)
        return left

    def unary(self, params: dict[str, int]) -> Expr:
        tok = self.toks[self.i]
        if tok in ("-", "+"):
            self.i += 1
            inner = self.unary(params)
            return inner if tok == "+" else fold("neg", inner, 0.0)
        base = self.atom(params)
        if self.toks[self.i] == "^":
            self.i += 1
            return self.fold_at("^", base, self.unary(params), self.i - 1)
        return base

    def atom(self, params: dict[str, int]) -> Expr:
        at = self.i
        tok = self.toks[at]
        self.i += 1
        if is_number(tok):
            return float(tok)
        if tok == "pi":
            return math.pi
        if tok == "(" or tok in FUNCS:
            if tok != "(":
                self.expect("(", f"after function {tok!r}")
            inner = self.expr(params)
            self.expect(")", "to close the parenthesis")
            return inner if tok == "(" else self.fold_at(tok, inner, 0.0, at)
        if tok in params:
            return ("var", params[tok])
        if tok[:1] in IDENT_START:
            where = (f"this gate's parameters are: {', '.join(params)}" if params
                     else "parameter names can be used only inside a gate body")
            self.fail(QasmSemanticError, f"unknown identifier {tok!r} in expression; {where}",
                      at)
        self.fail(QasmSyntaxError, f"expected a number, 'pi', a name or '(', found "
                                   f"{self.found(at)}", at)

    def fold_at(self, op: str, a: Expr, b: Expr, at: int) -> Expr:
        """``fold``, with an evaluation error reported at token ``at``."""
        try:
            return fold(op, a, b)
        except EvalError as exc:
            self.fail(QasmSemanticError, str(exc), at)
