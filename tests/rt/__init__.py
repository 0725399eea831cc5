"""Tests of qpuos (a package, so test and conftest module names may repeat across folders)."""
