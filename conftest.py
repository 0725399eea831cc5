"""Repository-wide pytest setup: doctests of modules whose optional extra is missing."""

from __future__ import annotations

import importlib.util

collect_ignore: list[str] = []
if importlib.util.find_spec("qiskit") is None:  # the `qiskit` extra is optional
    collect_ignore.append("src/qpuos/quantum/_qiskit_pass.py")
