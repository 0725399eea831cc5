"""Each ring against a trivial model (``collections.deque``), by hypothesis state machines.

Every operation runs with ``timeout=0``: the model says exactly when the ring must be
full or empty. Each machine also runs on the fenced (``blocking=True``) variant and on
the path machines that are not x86 use (acquire/release intrinsics instead of plain
8-byte stores), so all three hot paths meet the same model.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qpuos.errors import RingEmpty, RingFull, UsageError
from qpuos.ipc import MpmcRing, RecordRing, SpscRing, _base

SLOT = 8
CAP = 8
SETTINGS = settings(max_examples=60, stateful_step_count=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

records = st.binary(min_size=SLOT, max_size=SLOT)


def _open(factory: Any, variant: str) -> Any:
    """Create a ring as ``variant``: "plain" x86 stores, "fenced" or "portable"."""
    saved = _base.TSO
    _base.TSO = variant != "portable"
    try:
        return factory(blocking=variant == "fenced")
    finally:
        _base.TSO = saved


class SpscMachine(RuleBasedStateMachine):
    """SpscRing: FIFO of fixed records; claims and peeks stop at the ring's end."""

    variant = "plain"

    def __init__(self) -> None:
        super().__init__()
        self.ring = _open(lambda **kw: SpscRing.create(slot_size=SLOT, capacity=CAP, **kw),
                          self.variant)
        self.model: deque[bytes] = deque()
        self.sent = 0        # records ever published: the tail
        self.taken = 0       # records ever released: the head

    def teardown(self) -> None:
        self.ring.close()

    def _free(self) -> int:
        return CAP - len(self.model)

    @rule(data=records)
    def send(self, data: bytes) -> None:
        if self._free():
            self.ring.send(data, timeout=0)
            self.model.append(data)
            self.sent += 1
        else:
            with pytest.raises(RingFull, match=r"is full \(8 slots\)"):
                self.ring.send(data, timeout=0)

    @rule(batch=st.lists(records, max_size=12))
    def send_many(self, batch: list[bytes]) -> None:
        n = self.ring.send_many(b"".join(batch), timeout=0)
        assert n == min(len(batch), self._free())
        self.model.extend(batch[:n])
        self.sent += n

    @rule(n=st.integers(1, 10), keep=st.integers(0, 10), fill=st.integers(0, 255))
    def claim_publish(self, n: int, keep: int, fill: int) -> None:
        if not self._free():
            with pytest.raises(RingFull):
                self.ring.claim(n, timeout=0)
            return
        view = self.ring.claim(n, timeout=0)
        k = len(view) // SLOT
        assert k == min(n, self._free(), CAP - self.sent % CAP)
        recs = [bytes([fill, i]) * (SLOT // 2) for i in range(k)]
        view[:] = b"".join(recs)
        keep = min(keep, k)
        self.ring.publish(keep)
        self.model.extend(recs[:keep])
        self.sent += keep

    @rule()
    def recv(self) -> None:
        if self.model:
            assert self.ring.recv(timeout=0) == self.model.popleft()
            self.taken += 1
        else:
            with pytest.raises(RingEmpty, match=r"is empty$"):
                self.ring.recv(timeout=0)

    @rule(n=st.integers(1, 12))
    def recv_into(self, n: int) -> None:
        out = bytearray(n * SLOT)
        if not self.model:
            with pytest.raises(RingEmpty):
                self.ring.recv_into(out, timeout=0)
            return
        got = self.ring.recv_into(out, timeout=0)
        assert got == min(n, len(self.model))
        expected = b"".join(self.model.popleft() for _ in range(got))
        assert bytes(out[:got * SLOT]) == expected
        self.taken += got

    @rule(n=st.integers(1, 10), free=st.integers(0, 10))
    def peek_release(self, n: int, free: int) -> None:
        if not self.model:
            with pytest.raises(RingEmpty):
                self.ring.peek(n, timeout=0)
            return
        view = self.ring.peek(n, timeout=0)
        k = len(view) // SLOT
        assert k == min(n, len(self.model), CAP - self.taken % CAP)
        assert bytes(view) == b"".join(list(self.model)[:k])
        with pytest.raises(UsageError, match=r"^release\(\) the records from peek\(\)"):
            self.ring.recv(timeout=0)
        free = min(free, k)
        self.ring.release(free)
        for _ in range(free):
            self.model.popleft()
        self.taken += free

    @invariant()
    def length_matches(self) -> None:
        assert len(self.ring) == len(self.model)


class FencedSpscMachine(SpscMachine):
    variant = "fenced"


class PortableSpscMachine(SpscMachine):
    variant = "portable"


class RecordMachine(RuleBasedStateMachine):
    """RecordRing: byte accounting with 8-byte headers, 8-byte alignment and pad
    records at the end of the area, modelled independently of the implementation."""

    variant = "plain"
    CAPACITY = 256

    def __init__(self) -> None:
        super().__init__()
        self.ring = _open(lambda **kw: RecordRing.create(capacity=self.CAPACITY, **kw),
                          self.variant)
        self.max = self.CAPACITY // 2 - 8
        self.model: deque[tuple[bytes, int]] = deque()   # (record, bytes it takes)
        self.pending: list[tuple[bytes, int]] = []       # claimed, not published
        self.tail = self.head = 0                        # byte positions

    def teardown(self) -> None:
        self.ring.close()

    def _footprint(self, n: int) -> int | None:
        """Bytes a record of ``n`` takes at the tail (pad included), None if no room."""
        need = 8 + (n + 7) // 8 * 8
        off = self.tail % self.CAPACITY
        pad = self.CAPACITY - off if off + need > self.CAPACITY else 0
        return pad + need if self.tail + pad + need - self.head <= self.CAPACITY else None

    @rule(data=st.binary(max_size=140))
    def send(self, data: bytes) -> None:
        if self.pending:
            with pytest.raises(UsageError, match=r"^publish\(\) the claimed records"):
                self.ring.send(data, timeout=0)
            return
        if len(data) > self.max:
            with pytest.raises(UsageError, match=r"does not fit .* \(max 120\)"):
                self.ring.send(data, timeout=0)
            return
        size = self._footprint(len(data))
        if size is None:
            with pytest.raises(RingFull, match=r"has no room for \d+ bytes"):
                self.ring.send(data, timeout=0)
            return
        self.ring.send(data, timeout=0)
        self.model.append((data, size))
        self.tail += size

    @rule(batch=st.lists(st.binary(max_size=60), max_size=8))
    def send_many(self, batch: list[bytes]) -> None:
        if self.pending:
            return
        n = self.ring.send_many(batch, timeout=0)
        expected = 0
        for data in batch:
            size = self._footprint(len(data))
            if size is None:
                break
            self.model.append((data, size))
            self.tail += size
            expected += 1
        assert n == expected

    @rule(data=st.binary(max_size=120))
    def claim(self, data: bytes) -> None:
        size = self._footprint(len(data))
        if size is None:
            with pytest.raises(RingFull):
                self.ring.claim(len(data), timeout=0)
            return
        view = self.ring.claim(len(data), timeout=0)
        assert len(view) == len(data)
        view[:] = data
        self.pending.append((data, size))
        self.tail += size

    @rule()
    def publish(self) -> None:
        self.ring.publish()
        self.model.extend(self.pending)
        self.pending.clear()

    @rule()
    def recv(self) -> None:
        if self.model:
            data, size = self.model.popleft()
            assert self.ring.recv(timeout=0) == data
            self.head += size
        else:
            with pytest.raises(RingEmpty):
                self.ring.recv(timeout=0)

    @rule(n=st.integers(1, 6))
    def recv_many(self, n: int) -> None:
        if not self.model:
            with pytest.raises(RingEmpty):
                self.ring.recv_many(n, timeout=0)
            return
        got = self.ring.recv_many(n, timeout=0)
        expected = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert got == [d for d, _ in expected]
        self.head += sum(s for _, s in expected)

    @precondition(lambda self: bool(self.model))
    @rule(n=st.integers(1, 6))
    def peek_many_release(self, n: int) -> None:
        views = self.ring.peek_many(n, timeout=0)
        expected = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert [bytes(v) for v in views] == [d for d, _ in expected]
        with pytest.raises(UsageError, match=r"^release\(\) the records from peek\(\)"):
            self.ring.recv(timeout=0)
        self.ring.release()
        self.head += sum(s for _, s in expected)

    @invariant()
    def published_bytes_match(self) -> None:
        assert len(self.ring) == sum(s for _, s in self.model)


class FencedRecordMachine(RecordMachine):
    variant = "fenced"


class PortableRecordMachine(RecordMachine):
    variant = "portable"


class MpmcMachine(RuleBasedStateMachine):
    """MpmcRing from one process: FIFO of fixed records, one claim or peek at a time."""

    variant = "plain"

    def __init__(self) -> None:
        super().__init__()
        self.ring = _open(lambda **kw: MpmcRing.create(slot_size=SLOT, capacity=CAP, **kw),
                          self.variant)
        self.model: deque[bytes] = deque()

    def teardown(self) -> None:
        self.ring.close()

    @rule(data=records)
    def send(self, data: bytes) -> None:
        if len(self.model) < CAP:
            self.ring.send(data, timeout=0)
            self.model.append(data)
        else:
            with pytest.raises(RingFull, match=r"is full \(8 slots\)"):
                self.ring.send(data, timeout=0)

    @rule(batch=st.lists(records, max_size=12))
    def send_many(self, batch: list[bytes]) -> None:
        n = self.ring.send_many(b"".join(batch), timeout=0)
        assert n == min(len(batch), CAP - len(self.model))
        self.model.extend(batch[:n])

    @rule(data=records, publish=st.booleans())
    def claim_publish(self, data: bytes, publish: bool) -> None:
        if len(self.model) == CAP:
            with pytest.raises(RingFull):
                self.ring.claim(timeout=0)
            return
        view = self.ring.claim(timeout=0)
        view[:] = data
        if publish:
            self.ring.publish()
            self.model.append(data)
        else:  # a claim dropped by close/reset is published as a tombstone: skipped
            with pytest.raises(UsageError, match=r"^publish\(\) the outstanding slot"):
                self.ring.send(data, timeout=0)
            self.ring.publish()
            self.model.append(data)

    @rule()
    def recv(self) -> None:
        if self.model:
            assert self.ring.recv(timeout=0) == self.model.popleft()
        else:
            with pytest.raises(RingEmpty, match=r"is empty$"):
                self.ring.recv(timeout=0)

    @rule(n=st.integers(1, 12))
    def recv_into(self, n: int) -> None:
        out = bytearray(n * SLOT)
        if not self.model:
            with pytest.raises(RingEmpty):
                self.ring.recv_into(out, timeout=0)
            return
        got = self.ring.recv_into(out, timeout=0)
        assert got == min(n, len(self.model))
        assert bytes(out[:got * SLOT]) == b"".join(self.model.popleft() for _ in range(got))

    @precondition(lambda self: bool(self.model))
    @rule()
    def peek_release(self) -> None:
        view = self.ring.peek(timeout=0)
        assert bytes(view) == self.model.popleft()
        self.ring.release()

    @invariant()
    def length_matches(self) -> None:
        assert len(self.ring) == len(self.model)


class PortableMpmcMachine(MpmcMachine):
    variant = "portable"


for _machine in (SpscMachine, FencedSpscMachine, PortableSpscMachine, RecordMachine,
                 FencedRecordMachine, PortableRecordMachine, MpmcMachine,
                 PortableMpmcMachine):
    _machine.TestCase.settings = SETTINGS

TestSpsc = SpscMachine.TestCase
TestFencedSpsc = FencedSpscMachine.TestCase
TestPortableSpsc = PortableSpscMachine.TestCase
TestRecords = RecordMachine.TestCase
TestFencedRecords = FencedRecordMachine.TestCase
TestPortableRecords = PortableRecordMachine.TestCase
TestMpmc = MpmcMachine.TestCase
TestPortableMpmc = PortableMpmcMachine.TestCase
