"""qpuos: a quantum-processor operating layer written in Python.

A circuit goes in; a routed, timed and verified schedule comes out. See DESIGN.md in the
shared folder for how the layers fit together.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
