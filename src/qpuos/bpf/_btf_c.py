"""BTF types printed as C declarations (what ``bpftool btf dump format c`` shows).

A declarator is built inside out: starting from the name, each pointer, array or
function layer wraps it (``*p``, ``(*p)[4]``, ``(*p)(int)``) until a named base type
is reached, which is written in front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qpuos.bpf._btf_types import BtfKind, BtfType

if TYPE_CHECKING:
    from qpuos.bpf.btf import Btf

__all__ = ["declaration", "format_type"]

_INDENT = "    "
_QUALIFIERS = {BtfKind.CONST: "const", BtfKind.VOLATILE: "volatile",
               BtfKind.RESTRICT: "restrict"}
_TAGGED = {BtfKind.STRUCT: "struct", BtfKind.UNION: "union", BtfKind.ENUM: "enum",
           BtfKind.ENUM64: "enum"}


def _join(base: str, inner: str) -> str:
    if not inner:
        return base
    return base + inner if inner.startswith(("*", "[", "(")) and base.endswith("*") \
        else f"{base} {inner}"


def declaration(btf: Btf, type_id: int, inner: str = "", depth: int = 0) -> str:
    """The C declaration of ``inner`` (a name, or "") having type ``type_id``.

    Anonymous structs, unions and enums are written out in full at ``depth``.
    """
    t = btf.type(type_id)
    k = t.kind
    if k == BtfKind.VOID:
        return _join("void", inner)
    if k == BtfKind.PTR:
        target = btf.type(t.type_id)
        wrapped = f"(*{inner})" if target.kind in (BtfKind.ARRAY, BtfKind.FUNC_PROTO) \
            else f"*{inner}"
        return declaration(btf, t.type_id, wrapped, depth)
    if k == BtfKind.ARRAY:
        return declaration(btf, t.type_id, f"{inner}[{t.nelems}]", depth)
    if k == BtfKind.FUNC_PROTO:
        return declaration(btf, t.type_id, f"{inner}({_params(btf, t)})", depth)
    if k in _QUALIFIERS:
        word = _QUALIFIERS[k]
        if btf.type(t.type_id).kind == BtfKind.PTR:  # char *const p
            return declaration(btf, t.type_id, f"{word} {inner}".rstrip(), depth)
        return f"{word} " + declaration(btf, t.type_id, inner, depth)
    if k in (BtfKind.TYPE_TAG, BtfKind.DECL_TAG):
        return declaration(btf, t.type_id, inner, depth)
    if k == BtfKind.FUNC:
        return declaration(btf, t.type_id, t.name, depth)
    if k == BtfKind.FWD:
        return _join(f"{'union' if t.kind_flag else 'struct'} {t.name}", inner)
    if k in _TAGGED:
        if t.name:
            return _join(f"{_TAGGED[k]} {t.name}", inner)
        return _join(_body(btf, t, depth), inner)
    return _join(t.name, inner)  # INT, FLOAT, TYPEDEF, VAR, DATASEC


def _params(btf: Btf, t: BtfType) -> str:
    if not t.params:
        return "void"
    out = []
    for p in t.params:
        out.append("..." if p.type_id == 0 and not p.name
                   else declaration(btf, p.type_id, p.name))
    return ", ".join(out)


def _body(btf: Btf, t: BtfType, depth: int) -> str:
    head = f"{_TAGGED[t.kind]} {t.name}".rstrip()
    pad = _INDENT * (depth + 1)
    lines = [head + " {"]
    if t.is_composite:
        for m in t.members:
            decl = declaration(btf, m.type_id, m.name, depth + 1)
            bits = f": {m.bitfield_size}" if m.bitfield_size else ""
            lines.append(f"{pad}{decl}{' ' if bits else ''}{bits};")
    else:
        lines.extend(f"{pad}{v.name} = {v.value}," for v in t.enum_values)
    lines.append(_INDENT * depth + "}")
    return "\n".join(lines)


def format_type(btf: Btf, t: BtfType) -> str:
    """A whole declaration: a struct/union/enum with its body, a typedef, a function."""
    if t.kind in _TAGGED:
        return _body(btf, t, 0) + ";"
    if t.kind == BtfKind.TYPEDEF:
        return "typedef " + declaration(btf, t.type_id, t.name) + ";"
    if t.kind == BtfKind.FUNC:
        return declaration(btf, t.id) + ";"
    if t.kind == BtfKind.VAR:
        return declaration(btf, t.type_id, t.name) + ";"
    return declaration(btf, t.id) + ";"
