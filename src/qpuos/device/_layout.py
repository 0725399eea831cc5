"""The result block both sides share: where the controller writes a job's results.

The driver allocates one block per job in the DMA arena and passes its offset in
``JOB_RESULT``. Layout (little-endian int64 words, then bytes)::

    words 0..7            header: job id, ns the controller saw the job, ns it ended,
                          records executed, trajectory flag, info length, 2 spare
    words 8..8+L          issue lateness of record i (ns, actual - due), L = JOB_LENGTH
    next S words          outcome word of each shot (bit c = classical bit c), S = shots
    INFO_BYTES bytes      JSON: the controller's real-time grant and GC statistics
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qpuos.errors import UsageError
from qpuos.kernel.mheap import Arena

__all__ = ["HEADER_WORDS", "INFO_BYTES", "result_bytes", "result_views"]

HEADER_WORDS = 8
H_JOB, H_SEEN_NS, H_END_NS, H_EXECUTED, H_TRAJECTORY, H_INFO_LEN = range(6)
INFO_BYTES = 4096


def result_bytes(length: int, shots: int) -> int:
    """Bytes of the result block of a job of ``length`` records and ``shots`` shots."""
    return 8 * (HEADER_WORDS + length + shots) + INFO_BYTES


def result_views(arena: Arena, offset: int, length: int, shots: int
                 ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any],
                            np.ndarray[Any, Any], memoryview]:
    """Views of the header, lateness, outcomes and info parts of a result block.

    Raises:
        UsageError: the block is smaller than the job needs.
        HeapError: ``offset`` is not a live block of the arena.
    """
    view = arena.view(offset)
    need = result_bytes(length, shots)
    if len(view) < need:
        raise UsageError(f"result block at {offset} holds {len(view)} bytes, the job "
                         f"needs {need}")
    words = np.frombuffer(view, dtype=np.int64, count=HEADER_WORDS + length + shots)
    a, b = HEADER_WORDS, HEADER_WORDS + length
    info = view[8 * (b + shots):need]
    return words[:a], words[a:b], words[b:], info
