"""Quantum computation: circuits, devices, layout, routing, timing, verification.

Pure computation: nothing here starts a process or makes a system call.
"""
