"""Rings between real processes: stress with checksums, SIGKILL mid-write, dead peers.

Every record carries (producer, sequence, checksum). The consumers check that nothing
is torn (checksum), lost or duplicated (each producer's sequence seen is exactly
0, 1, 2, ...) and that order holds (SPSC: total; MPMC: per producer at each consumer).
Children start with the "spawn" context (a clean interpreter; the module-level workers
below are what they run). Every wait is bounded; no assertion is about time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import select
import signal
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qpuos.errors import PeerDied, RingEmpty, RingTimeout, UsageError
from qpuos.ipc import MpmcRing, RecordRing, SpscRing

CTX = mp.get_context("spawn")
REC = 64                  # fixed records: producer u32, pad u32, seq u64, body 40, crc u64
DEADLINE_S = 60.0         # hard cap on any loop here; reaching it fails the test
_HEAD = struct.Struct("<IIQ")

# -- record format ------------------------------------------------------------------


def make_record(producer: int, seq: int, size: int = REC) -> bytes:
    """A record of ``size`` bytes (>= 24) whose last 8 bytes check the rest."""
    head = _HEAD.pack(producer, size, seq)
    body = (seq.to_bytes(8, "little") * (size // 8 + 1))[:size - 24]
    crc = zlib.crc32(head + body)
    return head + body + crc.to_bytes(8, "little")


def check_record(rec: bytes | memoryview) -> tuple[int, int]:
    """(producer, seq) of a record; AssertionError if it is torn."""
    rec = bytes(rec)
    assert len(rec) >= 24, f"record of {len(rec)} bytes is shorter than a header"
    producer, size, seq = _HEAD.unpack_from(rec)
    assert size == len(rec), f"record says {size} bytes, has {len(rec)}: torn"
    crc = int.from_bytes(rec[-8:], "little")
    assert crc == zlib.crc32(rec[:-8]), f"bad checksum: producer {producer} seq {seq}"
    return producer, seq


def var_size(seq: int) -> int:
    """Variable record sizes for RecordRing: 24..535 bytes, every residue mod 8."""
    return 24 + (seq * 37) % 512


# -- workers (run in spawned children) -------------------------------------------------


def _produce(name: str, kind: str, producer: int, n: int, *, batched: bool = False,
             start: int = 0, wait: str = "yield", signal_fd: int = -1) -> None:
    cls: Any = {"spsc": SpscRing, "records": RecordRing, "mpmc": MpmcRing}[kind]
    ring = cls.attach(name, wait=wait)
    seq = start
    end = start + n if n >= 0 else 1 << 62
    while seq < end:
        if signal_fd >= 0 and seq > start:   # the first record is out: say so, once
            os.write(signal_fd, b"1")
            signal_fd = -1
        if kind == "records":
            if batched and seq % 3 == 0:
                recs = [make_record(producer, s, var_size(s))
                        for s in range(seq, min(end, seq + 16))]
                seq += ring.send_many(recs, timeout=DEADLINE_S)
            else:
                size = var_size(seq)
                view = ring.claim(size, timeout=DEADLINE_S)
                rec = make_record(producer, seq, size)
                view[:24] = rec[:24]           # written in parts: a kill can land between
                view[24:] = rec[24:]
                ring.publish()
                seq += 1
        elif batched and seq % 5 == 0:
            k = min(end - seq, 64)
            data = b"".join(make_record(producer, s) for s in range(seq, seq + k))
            seq += ring.send_many(data, timeout=DEADLINE_S)
        elif kind == "spsc":
            view = ring.claim(1, timeout=DEADLINE_S)
            rec = make_record(producer, seq)
            view[:16] = rec[:16]
            view[16:] = rec[16:]
            ring.publish()
            seq += 1
        else:
            view = ring.claim(timeout=DEADLINE_S)
            rec = make_record(producer, seq)
            view[:16] = rec[:16]
            view[16:] = rec[16:]
            ring.publish()
            seq += 1
    ring.close()


def producer_main(name: str, kind: str, producer: int, n: int, batched: bool) -> None:
    """Child: send ``n`` records as ``producer``."""
    _produce(name, kind, producer, n, batched=batched)


def consumer_main(name: str, out: str) -> None:
    """Child (MPMC): take records until the ring is empty and ``out.stop`` exists; save
    the (producer, seq) pairs in arrival order to ``out``."""
    ring = MpmcRing.attach(name, wait="yield")
    seen: list[tuple[int, int]] = []
    buf = bytearray(REC * 32)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if len(seen) % 2:
                got = ring.recv_into(buf, timeout=0.05)
                seen.extend(check_record(buf[i * REC:(i + 1) * REC]) for i in range(got))
            else:
                seen.append(check_record(ring.recv(timeout=0.05)))
        except (RingTimeout, RingEmpty):
            if Path(out + ".stop").exists():
                break
    np.save(out, np.array(seen, dtype=np.int64).reshape(-1, 2))
    ring.close()


def kill_loop_main(name: str, kind: str, kills: int, seed: int) -> None:
    """Child: fork a producer, SIGKILL it at a random moment, reap it; ``kills`` times.

    Incarnation ``i`` produces as producer ``i`` from sequence 0. Forking from this
    single-threaded helper is cheap and safe; the kernels are warm before the loop.
    """
    rng = random.Random(seed)
    cls: Any = {"spsc": SpscRing, "records": RecordRing, "mpmc": MpmcRing}[kind]
    warm = cls.create(anonymous=True, **({} if kind == "records" else {"slot_size": REC}))
    _produce(warm.name, kind, 0, 8, batched=True)
    warm.close()
    for inc in range(1, kills + 1):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the victim
            try:
                os.close(r)
                _produce(name, kind, inc, -1, batched=True, signal_fd=w)
            finally:
                os._exit(0)
        os.close(w)
        ready, _, _ = select.select([r], [], [], DEADLINE_S / 2)
        os.close(r)
        # killed at a random moment after its first record: often mid-write
        time.sleep(rng.uniform(0.0, 0.004))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if not ready:
            raise RuntimeError(f"incarnation {inc} published nothing")


def echo_main(kind: str, inbound: str, outbound: str, n: int) -> None:
    """Child: send back each of ``n`` records, sleeping on the doorbell between them."""
    cls: Any = {"spsc": SpscRing, "records": RecordRing, "mpmc": MpmcRing}[kind]
    rx = _sleepy(cls.attach(inbound, wait="block", spin_s=0.0))
    tx = _sleepy(cls.attach(outbound, wait="block", spin_s=0.0))
    for _ in range(n):
        tx.send(rx.recv(timeout=DEADLINE_S), timeout=DEADLINE_S)
    rx.close()
    tx.close()


def _sleepy(ring: Any) -> Any:
    """No periodic wake-ups: a sleeper wakes only by its doorbell (or its timeout)."""
    ring._rx_wait.stall_every = ring._tx_wait.stall_every = 1e9
    return ring


def hold_producer_main(name: str, stop: str) -> None:
    """Child: register as the producer, then stay alive until ``stop`` exists."""
    ring = SpscRing.attach(name)
    ring.send(make_record(5, 0))
    deadline = time.monotonic() + DEADLINE_S
    while not Path(stop).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    ring.close()


def suicide_main(name: str, kind: str, where: str) -> None:
    """Child: send two records, then die by SIGKILL holding a half-written claim
    (``where="claim"``) or, as consumer, a peeked record (``where="peek"``)."""
    if where == "claim":
        _produce(name, kind, 7, 2)
        cls: Any = {"spsc": SpscRing, "records": RecordRing, "mpmc": MpmcRing}[kind]
        ring = cls.attach(name)
        view = ring.claim(REC) if kind == "records" else (
            ring.claim(1) if kind == "spsc" else ring.claim())
        view[:16] = make_record(7, 2)[:16]
    else:
        ring = MpmcRing.attach(name) if kind == "mpmc" else SpscRing.attach(name)
        ring.peek()
    os.kill(os.getpid(), signal.SIGKILL)


# -- helpers ---------------------------------------------------------------------------


def _start(target: Any, *args: Any) -> Any:
    proc = CTX.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _join(*procs: Any) -> None:
    for p in procs:
        p.join(DEADLINE_S)
        if p.is_alive():
            p.kill()
            p.join(5)
            pytest.fail(f"child {p.name} did not finish within {DEADLINE_S} s")
        assert p.exitcode == 0, f"child {p.name} exited with {p.exitcode}"


def _assert_sequences(seen: dict[int, list[int]]) -> None:
    """Each producer's sequence is exactly 0..k-1: nothing lost, duplicated or reordered."""
    broken = {p: s[:10] for p, s in seen.items() if s != list(range(len(s)))}
    assert broken == {}


def _recv_any(ring: Any, i: int, timeout: float) -> list[bytes]:
    """Records from ``ring`` by a method that varies with ``i``: recv, peek, batch."""
    if isinstance(ring, RecordRing):
        if i % 3 == 0:
            views = ring.peek_many(8, timeout=timeout)
            out = [bytes(v) for v in views]
            ring.release()
            return out
        if i % 3 == 1:
            return ring.recv_many(8, timeout=timeout)
        return [ring.recv(timeout=timeout)]
    if i % 3 == 0:
        view = ring.peek(4, timeout=timeout)
        out = [bytes(view[j:j + REC]) for j in range(0, len(view), REC)]
        ring.release()
        return out
    if i % 3 == 1:
        buf = bytearray(REC * 16)
        got = ring.recv_into(buf, timeout=timeout)
        return [bytes(buf[j * REC:(j + 1) * REC]) for j in range(got)]
    return [ring.recv(timeout=timeout)]


# -- stress ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["spsc", "records"])
def test_two_processes_deliver_everything_in_order(kind: str) -> None:
    n = 60_000 if kind == "spsc" else 20_000
    ring: Any = (SpscRing.create(slot_size=REC, capacity=256, wait="yield") if kind == "spsc"
                 else RecordRing.create(capacity=1 << 14, wait="yield"))
    with ring:
        proc = _start(producer_main, ring.name, kind, 1, n, True)
        seen: list[int] = []
        deadline = time.monotonic() + DEADLINE_S
        i = 0
        while len(seen) < n and time.monotonic() < deadline:
            try:
                recs = _recv_any(ring, i, 1.0)
            except RingTimeout:
                continue
            for r in recs:
                producer, seq = check_record(r)
                assert producer == 1
                seen.append(seq)
            i += 1
        _join(proc)
        _assert_sequences({1: seen})
        assert len(seen) == n


def test_four_processes_mpmc_no_loss_no_duplicate_per_producer_order(tmp_path: Path
                                                                      ) -> None:
    n = 15_000
    with MpmcRing.create(slot_size=REC, capacity=128, wait="yield") as ring:
        outs = [str(tmp_path / f"c{i}.npy") for i in range(2)]
        consumers = [_start(consumer_main, ring.name, o) for o in outs]
        producers = [_start(producer_main, ring.name, "mpmc", p, n, p == 2)
                     for p in (1, 2)]
        _join(*producers)
        deadline = time.monotonic() + DEADLINE_S
        while len(ring) and time.monotonic() < deadline:
            time.sleep(0.01)
        for o in outs:
            Path(o + ".stop").write_bytes(b"\x01")
        _join(*consumers)
    seen = [np.load(o) for o in outs]
    everything = np.concatenate(seen)
    pairs = {(int(p), int(s)) for p, s in everything}
    assert len(pairs) == len(everything), "a record was delivered twice"
    expected = {(p, s) for p in (1, 2) for s in range(n)}
    assert expected - pairs == set()
    assert pairs - expected == set()
    for arr in seen:  # per producer, each consumer saw increasing sequences
        for p in (1, 2):
            s = arr[arr[:, 0] == p, 1]
            assert bool(np.all(np.diff(s) > 0)), f"producer {p} reordered at a consumer"
    assert min(len(a) for a in seen) > 0, "one consumer got nothing: not a 4-process test"


# -- crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["spsc", "records", "mpmc"])
def test_sigkill_producer_mid_write_never_exposes_a_torn_record(kind: str) -> None:
    kills = 50
    ring: Any = {"spsc": lambda: SpscRing.create(slot_size=REC, capacity=64, wait="yield"),
                 "records": lambda: RecordRing.create(capacity=4096, wait="yield"),
                 "mpmc": lambda: MpmcRing.create(slot_size=REC, capacity=64, wait="yield"),
                 }[kind]()
    with ring:
        helper = _start(kill_loop_main, ring.name, kind, kills, 1234)
        seen: dict[int, list[int]] = {}
        deadline = time.monotonic() + DEADLINE_S
        i = 0
        while time.monotonic() < deadline:
            try:
                recs = _recv_any(ring, i, 0.02) if kind != "mpmc" else [
                    ring.recv(timeout=0.02)]
            except (RingTimeout, PeerDied):
                if not helper.is_alive() and not len(ring):
                    break
                continue
            for r in recs:
                producer, seq = check_record(r)
                seen.setdefault(producer, []).append(seq)
            i += 1
        _join(helper)
        assert set(range(1, kills + 1)) - set(seen) == set()
        _assert_sequences(seen)
        # the last producer was killed: an empty ring says so, then reset and reuse it
        if kind != "mpmc":
            with pytest.raises(PeerDied, match=r"^the producer of .* died; drain"):
                ring.recv(timeout=2.0)
        else:
            with pytest.raises(PeerDied, match=r"^every other participant of .*empty$"):
                ring.recv(timeout=2.0)
        ring.reset()
        rec = make_record(99, 0, REC)
        ring.send(rec, timeout=1.0)
        assert ring.recv(timeout=1.0) == rec


def _join_killed(proc: Any) -> None:
    proc.join(DEADLINE_S)
    assert proc.exitcode == -signal.SIGKILL, f"child exit {proc.exitcode}, not SIGKILL"


@pytest.mark.parametrize("kind", ["spsc", "records", "mpmc"])
def test_half_written_record_of_a_dead_producer_is_never_delivered(kind: str) -> None:
    ring: Any = {"spsc": lambda: SpscRing.create(slot_size=REC, capacity=8),
                 "records": lambda: RecordRing.create(capacity=1024),
                 "mpmc": lambda: MpmcRing.create(slot_size=REC, capacity=8)}[kind]()
    with ring:
        _join_killed(_start(suicide_main, ring.name, kind, "claim"))
        got = [check_record(ring.recv(timeout=5.0)) for _ in range(2)]
        assert got == [(7, 0), (7, 1)]
        if kind == "mpmc":  # the dead claim is repaired into a tombstone and skipped
            with pytest.raises(PeerDied):
                ring.recv(timeout=5.0)
            assert ring.recovered == 1
        else:
            with pytest.raises(PeerDied, match=r"pid \d+\) died"):
                ring.recv(timeout=5.0)
        # a new producer (this process) takes over where the dead one published
        rec = make_record(8, 0, REC)
        ring.send(rec, timeout=1.0)
        assert ring.recv(timeout=1.0) == rec


@pytest.mark.parametrize("kind", ["spsc", "mpmc"])
def test_consumer_dead_holding_a_peek(kind: str) -> None:
    ring: Any = (SpscRing.create(slot_size=REC, capacity=2) if kind == "spsc"
                 else MpmcRing.create(slot_size=REC, capacity=2))
    with ring:
        ring.send(make_record(1, 0), timeout=1.0)
        ring.send(make_record(1, 1), timeout=1.0)
        _join_killed(_start(suicide_main, ring.name, kind, "peek"))
        if kind == "spsc":
            # the full ring's consumer is gone: a waiting producer is told so
            with pytest.raises(PeerDied, match=r"^the consumer of .* died"):
                ring.send(make_record(1, 2), timeout=5.0)
            # a new consumer gets the unreleased record again (at-least-once for peeks)
            assert check_record(ring.recv(timeout=1.0)) == (1, 0)
        else:
            # the record the dead consumer held is lost; its slot comes back
            ring.send(make_record(1, 2), timeout=5.0)
            assert ring.recovered == 1
            assert [check_record(ring.recv(timeout=1.0)) for _ in range(2)] == [
                (1, 1), (1, 2)]


def test_peer_death_is_seen_by_a_sleeping_consumer() -> None:
    with SpscRing.create(slot_size=REC, capacity=8, wait="block") as ring:
        proc = _start(producer_main, ring.name, "spsc", 3, 1, False)
        _join(proc)   # produced one record and exited (closing its end)
        assert check_record(ring.recv(timeout=5.0)) == (3, 0)
        with pytest.raises(PeerDied, match=r"^the producer of .* closed its end"):
            ring.recv(timeout=5.0)


@pytest.mark.parametrize("kind", ["spsc", "records", "mpmc"])
def test_no_wake_up_is_lost_when_both_sides_sleep_every_time(kind: str) -> None:
    """spin_s=0: every wait goes to sleep on the doorbell, and no sleep is cut into
    slices, so a lost wake-up would leave one side asleep until its 60 s timeout
    (RingTimeout), failing the test."""
    n = 1000
    make: Any = {"spsc": lambda: SpscRing.create(slot_size=8, capacity=2, wait="block",
                                                 spin_s=0.0),
                 "records": lambda: RecordRing.create(capacity=64, wait="block",
                                                      spin_s=0.0),
                 "mpmc": lambda: MpmcRing.create(slot_size=8, capacity=2, wait="block",
                                                 spin_s=0.0)}[kind]
    with _sleepy(make()) as out, _sleepy(make()) as back:
        proc = _start(echo_main, kind, out.name, back.name, n)
        for i in range(n):
            out.send(i.to_bytes(8, "little"), timeout=DEADLINE_S)
            assert back.recv(timeout=DEADLINE_S) == i.to_bytes(8, "little")
        _join(proc)


def test_a_second_live_producer_is_refused(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    with SpscRing.create(slot_size=REC, capacity=8) as ring:
        proc = _start(hold_producer_main, ring.name, str(stop))
        try:
            assert check_record(ring.recv(timeout=DEADLINE_S)) == (5, 0)
            with pytest.raises(UsageError, match=r"already has a live producer \(pid \d+\); "
                                                 r"an SPSC ring takes one producer at a time"):
                ring.send(make_record(6, 0))
        finally:
            stop.touch()
            _join(proc)
        ring.send(make_record(6, 0))   # that producer closed its end: now we may
        assert check_record(ring.recv(timeout=1.0)) == (6, 0)


# -- large payloads through a real shared arena ([heap] + [ring]) ---------------------


def arena_producer_main(ring_name: str, arena_path: str, n: int) -> None:
    """Send ``n`` records of 1-40 KiB; the large ones travel as arena blocks."""
    import mmap

    from qpuos.kernel import Arena

    fd = os.open(arena_path, os.O_RDWR)
    try:
        buf = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    with Arena.attach(buf) as arena, RecordRing.attach(ring_name, arena=arena,
                                                       inline_max=256) as ring:
        rng = random.Random(7)
        for seq in range(n):
            ring.send(make_record(3, seq, rng.randrange(1024, 40 * 1024) & -8), timeout=30.0)


def test_large_records_travel_through_a_shared_arena_between_processes() -> None:
    import mmap
    import tempfile

    from qpuos.kernel import Arena

    n = 300
    with tempfile.NamedTemporaryFile(dir="/dev/shm", prefix="qpuos-test-arena-") as f:
        f.truncate(8 << 20)
        f.flush()
        buf = mmap.mmap(f.fileno(), 0)
        with Arena.create(buf, strategy="tlsf") as arena, \
                RecordRing.create(capacity=1 << 12, arena=arena, inline_max=256,
                                  wait="yield") as ring:
            proc = _start(arena_producer_main, ring.name, f.name, n)
            seen: list[int] = []
            deadline = time.monotonic() + DEADLINE_S
            while len(seen) < n and time.monotonic() < deadline:
                try:
                    producer, seq = check_record(ring.recv(timeout=1.0))
                except RingTimeout:
                    continue
                assert producer == 3
                seen.append(seq)
            _join(proc)
            _assert_sequences({3: seen})
            assert len(seen) == n
            assert arena.stats().used_blocks == 0  # every block freed by the consumer
            arena.check()
