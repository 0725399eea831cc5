"""OpenQASM 2.0 tokens: the scanner, the token classes, and where an error points.

Split out of ``qasm.py`` so the statement parser there reads as grammar only.

Design notes:

* Tokens are plain strings, not objects with a kind and a position: one regular
  expression run by ``re.findall`` produces them all, which keeps the per-token work in
  C. A token's class is read from its first character (``NUMBER_START``,
  ``IDENT_START``) when the parser needs it.
* Positions are not kept. Errors are rare, so to report one the text is scanned again
  with ``finditer`` (same pattern, so the k-th match is the k-th token) and only then
  turned into a line and a column.
* The list always ends with the token ``""`` (end of file), so the parser can look one
  token ahead without bounds checks.
"""

from __future__ import annotations

import re
import string
from typing import NoReturn

from qpuos.errors import QasmError, QasmSyntaxError

# Whitespace and // comments are skipped possessively (no backtracking into a comment);
# any other lone character is a token, so nothing is skipped silently; the empty match at
# the end of the text is the token "".
TOKEN = re.compile(r"""(?:\s+|//[^\n]*)*+(
    (?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)? | [A-Za-z_][A-Za-z0-9_]* | "[^"\n]*"
    | -> | == | /\* | \S | \Z)""", re.VERBOSE | re.ASCII)
NUMBER_START = frozenset("0123456789.")
IDENT_START = frozenset(string.ascii_letters + "_")
#: Reserved words: never a register, parameter or user-gate name.
KEYWORDS = frozenset({"OPENQASM", "include", "qreg", "creg", "gate", "opaque", "measure",
                      "reset", "barrier", "if", "pi", "U", "CX"})


def tokenize(text: str) -> list[str]:
    """The tokens of ``text``, ending with ``""``.

    >>> tokenize('qreg q[2]; // two\\nrz(-1.5e-3) q[0];')
    ['qreg', 'q', '[', '2', ']', ';', 'rz', '(', '-', '1.5e-3', ')', 'q', '[', '0', ']', ';', '']
    """
    toks: list[str] = TOKEN.findall(text)
    if toks[-1] != "":
        toks.append("")
    return toks


def is_number(tok: str) -> bool:
    """Whether ``tok`` is a numeric literal (a lone ``.`` is not)."""
    return tok[:1] in NUMBER_START and tok != "."


def position(text: str, k: int) -> tuple[int, int]:
    """The 1-based line and column of the ``k``-th token of ``text`` (past the end: EOF).

    >>> position("qreg q[2];\\n  h q;", 7)
    (2, 5)
    """
    offset = len(text)
    for n, m in enumerate(TOKEN.finditer(text)):
        if n == k:
            offset = m.start(1)
            break
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return line, column


class TokenCursor:
    """A token list, the index of the next token, and errors that point at a token.

    The base of the expression and statement parsers, which share one cursor.
    """

    def __init__(self) -> None:
        self.text, self.filename, self.toks, self.i = "", "<string>", [""], 0

    def fail(self, cls: type[QasmError], detail: str, at: int | None = None) -> NoReturn:
        """Raise ``cls`` at token ``at`` (default: the next token) of the current file."""
        line, column = position(self.text, self.i if at is None else at)
        raise cls(detail, filename=self.filename, line=line, column=column)

    def found(self, k: int | None = None) -> str:
        """Token ``k`` (default: the next one) as an error message names it."""
        tok = self.toks[self.i if k is None else k]
        if tok == "/*":
            return "'/*' (block comments are not OpenQASM 2.0; use '//')"
        return "end of file" if tok == "" else repr(tok)

    def expect(self, tok: str, what: str) -> None:
        """Consume ``tok`` or raise a syntax error saying it was expected ``what``."""
        if self.toks[self.i] != tok:
            self.fail(QasmSyntaxError, f"expected {tok!r} {what}, found {self.found()}")
        self.i += 1
