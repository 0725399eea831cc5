"""The ipc layer's public surface changes only on purpose (STYLE.md)."""

from __future__ import annotations

import qpuos.ipc
import qpuos.ipc.ring

IPC = {"ArenaHook", "MpmcRing", "RecordRing", "SpscRing", "WaitMode", "unlink_ring"}


def test_ipc_layer_exports_exactly_its_public_names() -> None:
    assert set(qpuos.ipc.__all__) ^ IPC == set()
    assert set(qpuos.ipc.ring.__all__) ^ IPC == set()
    missing = {name for name in IPC if not hasattr(qpuos.ipc, name)}
    assert missing == set()


def test_public_rings_are_the_same_objects_in_both_places() -> None:
    for name in IPC:
        assert getattr(qpuos.ipc, name) is getattr(qpuos.ipc.ring, name)
