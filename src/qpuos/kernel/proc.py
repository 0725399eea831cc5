"""Process identity and liveness, as shared structures see the processes using them.

A pid alone is a weak identity: the kernel reuses pids, and a peer killed with SIGKILL
stays a zombie (``kill(pid, 0)`` succeeds) until its parent reaps it. So a ring records
each participant as ``(pid, start)`` (an arena's lock word, with room for a pid only,
checks the pid alone), where ``start`` is the process start time in clock
ticks since boot (field 22 of ``/proc/PID/stat``), and calls a participant alive only
when ``/proc/PID/stat`` exists, its state is not zombie or dead, and its start time is
the recorded one.
"""

from __future__ import annotations

import os

__all__ = ["is_alive", "self_identity", "start_time"]

_SELF: dict[int, tuple[int, int]] = {}   # pid -> (pid, start): refreshed after a fork


def start_time(pid: int) -> int | None:
    """Start time of a running ``pid`` in clock ticks, or None if it is gone or a zombie.

    >>> start_time(os.getpid()) is not None
    True
    """
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:  # hidepid or similar: fall back to kill(pid, 0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X", b"x"):
        return None
    return int(fields[19])


def self_identity() -> tuple[int, int]:
    """``(pid, start)`` of this process (recomputed after a fork)."""
    pid = os.getpid()
    me = _SELF.get(pid)
    if me is None:
        _SELF.clear()
        me = _SELF[pid] = (pid, start_time(pid) or 0)
    return me


def is_alive(pid: int, start: int = 0) -> bool:
    """Whether ``pid`` runs and, when ``start`` is non-zero, is the process that had it.

    >>> is_alive(os.getpid()), is_alive(0)
    (True, False)
    """
    now = start_time(pid)
    if now is None:
        return False
    return start == 0 or now in (0, start)
