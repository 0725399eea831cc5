"""Repository-wide pytest setup: optional extras, and Ray kept on loopback."""

from __future__ import annotations

import importlib.util
import os

collect_ignore: list[str] = []
if importlib.util.find_spec("qiskit") is None:  # the `qiskit` extra is optional
    collect_ignore.append("src/qpuos/quantum/_qiskit_pass.py")

# Ray's local test clusters stay on loopback: unless told the cluster is single-machine,
# Ray binds to the machine's outward address (set before anything imports ray).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
