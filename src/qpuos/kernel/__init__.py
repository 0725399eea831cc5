"""Lowest layer: Linux-hosted OS primitives. Imports nothing of qpuos above it."""
