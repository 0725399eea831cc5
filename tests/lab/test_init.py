"""The lab's public face: every exported name resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qpuos import lab


def test_every_exported_name_resolves() -> None:
    missing = {n for n in lab.__all__ if getattr(lab, n, None) is None}
    assert missing == set()
    assert tuple(lab.PROBES) == lab.PROBE_NAMES
    with pytest.raises(AttributeError, match=r"^module 'qpuos.lab' has no attribute 'nope'$"):
        _ = lab.nope


def test_cli_parser_import_stays_light() -> None:
    code = ("import sys, qpuos.lab._cli; "
            "print(sorted(m for m in ('numpy', 'numba', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
