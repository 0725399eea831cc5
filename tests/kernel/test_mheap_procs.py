"""Arenas shared by processes through a file in /dev/shm: concurrent use, and SIGKILL.

Children are forked (``multiprocessing`` "fork" context) and attach the arena by path as
an unrelated process would; one test starts a fresh interpreter to be sure nothing is
inherited. Every test ends with ``check()`` clean and every byte accounted for.
"""

from __future__ import annotations

import logging
import mmap
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qpuos.kernel.mheap import Arena

SIZE = 4 << 20
FORK = mp.get_context("fork")


@pytest.fixture
def shm_path() -> Iterator[Path]:
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
    path = folder / f"qpuos-test-{uuid.uuid4().hex}"
    with open(path, "wb") as f:
        f.truncate(SIZE)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def open_arena(path: Path, *, create: str | None = None) -> tuple[Arena, mmap.mmap]:
    with open(path, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
    arena = Arena.create(m, strategy=create) if create else Arena.attach(m)
    return arena, m


def close_arena(arena: Arena, m: mmap.mmap) -> None:
    arena.close()
    m.close()


def churn(path: Path, seed: int, ops: int) -> None:
    """Child: allocate and free at random, writing a pattern into every block and checking
    it before freeing; exits 0 when every pattern survived, 1 otherwise."""
    arena, m = open_arena(path)
    rng = random.Random(seed)
    live: list[tuple[int, int]] = []
    ok = True
    for i in range(ops):
        if live and (len(live) > 40 or rng.random() < 0.45):
            off, tag = live.pop(rng.randrange(len(live)))
            data = np.frombuffer(arena.view(off), dtype=np.uint8)
            ok &= bool((data == tag).all())
            del data
            arena.free(off)
        else:
            off = arena.alloc(rng.randint(1, 20_000), align=rng.choice((16, 16, 64, 4096)))
            tag = (seed * 7 + i) % 251 + 1
            np.frombuffer(arena.view(off), dtype=np.uint8)[:] = tag
            live.append((off, tag))
    for off, tag in live:
        ok &= bool((np.frombuffer(arena.view(off), dtype=np.uint8) == tag).all())
        arena.free(off)
    close_arena(arena, m)
    os._exit(0 if ok else 1)


@pytest.mark.parametrize("strategy", ["tlsf", "first_fit"])
def test_two_processes_share_one_arena(shm_path: Path, strategy: str) -> None:
    arena, m = open_arena(shm_path, create=strategy)
    kids = [FORK.Process(target=churn, args=(shm_path, seed, 3000)) for seed in (1, 2)]
    for k in kids:
        k.start()
    for k in kids:
        k.join(120)
    assert [k.exitcode for k in kids] == [0, 0], "a child saw a block change under it"
    arena.check()
    st = arena.stats()
    assert (st.used_blocks, st.free_blocks, st.free_bytes) == (0, 1, st.heap_bytes)
    assert st.recoveries == 0
    close_arena(arena, m)


def test_a_fresh_interpreter_attaches_by_path(shm_path: Path) -> None:
    arena, m = open_arena(shm_path, create="tlsf")
    keep = arena.alloc(64)
    code = (
        "import mmap, sys\n"
        "from qpuos.kernel.mheap import Arena\n"
        f"f = open({str(shm_path)!r}, 'r+b'); m = mmap.mmap(f.fileno(), 0)\n"
        "a = Arena.attach(m)\n"
        "o = a.alloc(1000, align=4096)\n"
        "a.view(o)[:6] = b'hello!'\n"
        "a.free(a.alloc(50))\n"
        "print(o)\n"
        "a.close(); m.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    o = int(out.stdout)
    assert o % 4096 == 0 and bytes(arena.view(o)[:6]) == b"hello!"
    arena.free(o)
    arena.free(keep)
    arena.check()
    assert arena.stats().used_blocks == 0
    close_arena(arena, m)


def die_holding_the_lock(path: Path, crash_at: int, ready: Any) -> None:
    """Child: two committed allocations, then one cut short after ``crash_at`` writes,
    then wait to be killed with the lock held."""
    arena, _ = open_arena(path)
    arena.alloc(3000)
    arena.alloc(100)
    arena._inject_crash(crash_at)
    try:
        arena.alloc(5000, align=256)
    except RuntimeError:
        ready.set()
        signal.pause()
    os._exit(3)  # the operation finished: crash_at was past its last write


@pytest.mark.parametrize("strategy", ["tlsf", "first_fit"])
@pytest.mark.parametrize("crash_at", [1, 4, 9])
def test_killed_while_holding_the_lock(shm_path: Path, strategy: str, crash_at: int,
                                       caplog: pytest.LogCaptureFixture) -> None:
    arena, m = open_arena(shm_path, create=strategy)
    mine = arena.alloc(700)
    ready = FORK.Event()
    kid = FORK.Process(target=die_holding_the_lock, args=(shm_path, crash_at, ready))
    kid.start()
    assert ready.wait(60), "the child never reached the crash point"
    assert kid.pid is not None
    os.kill(kid.pid, signal.SIGKILL)  # not reaped yet: a zombie counts as dead
    with caplog.at_level(logging.WARNING, logger="qpuos.kernel.mheap"):
        other = arena.alloc(200)
    kid.join()
    assert f"process {kid.pid} died holding the lock" in caplog.text
    arena.check()
    st = arena.stats()
    # the child's two committed blocks leak (the arena has no owners); its third is gone
    assert (st.used_blocks, st.recoveries) == (4, 1)
    arena.free(mine)
    arena.free(other)
    arena.check()
    close_arena(arena, m)


def hammer(path: Path, seed: int, started: Any) -> None:
    arena, _ = open_arena(path)
    rng = random.Random(seed)
    live: list[int] = []
    started.set()
    while True:
        if live and (len(live) > 20 or rng.random() < 0.5):
            arena.free(live.pop(rng.randrange(len(live))))
        else:
            live.append(arena.alloc(rng.randint(1, 10_000), align=rng.choice((16, 512))))


@pytest.mark.parametrize("strategy", ["tlsf", "first_fit"])
def test_sigkill_at_random_moments_never_corrupts(shm_path: Path, strategy: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Kill a busy child at random moments; whatever it was doing, the survivor finds a
    consistent heap (rolled back when the kill landed inside an operation)."""
    caplog.set_level(logging.ERROR, logger="qpuos.kernel.mheap")
    arena, m = open_arena(shm_path, create=strategy)
    rng = random.Random(5)
    for round_ in range(12):
        started = FORK.Event()
        kid = FORK.Process(target=hammer, args=(shm_path, round_, started))
        kid.start()
        assert started.wait(60)
        # let it run between 0 and 20 ms, doing our own operations meanwhile
        for _ in range(rng.randint(0, 200)):
            arena.free(arena.alloc(rng.randint(1, 5000)))
        assert kid.pid is not None
        os.kill(kid.pid, signal.SIGKILL)
        kid.join()
        arena.check()
    st = arena.stats()
    assert st.used_bytes + st.free_bytes == st.heap_bytes
    close_arena(arena, m)
