"""Maps as mappings: hash and array, per-CPU values, flags, full maps, closed maps, and a
state machine holding a hash map to a dict."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from qpuos._ffi import bpf as ffi
from qpuos.bpf.maps import ArrayMap, HashMap, PerCpuArrayMap, PerCpuHashMap, possible_cpus
from qpuos.errors import ClosedResourceError, UsageError

pytestmark = pytest.mark.needs_bpf


def test_hash_map_is_a_mutable_mapping() -> None:
    with HashMap.create(key="I", value="Q", max_entries=8, name="h") as m:
        m[7] = 42
        m[8] = 1
        m[7] += 1
        assert dict(m) == {7: 43, 8: 1}
        assert (len(m), 8 in m, 9 in m, m.get(9)) == (2, True, False, None)
        del m[8]
        with pytest.raises(KeyError):
            del m[8]
        with pytest.raises(KeyError):
            _ = m[8]
        assert list(m.items()) == [(7, 43)]


def test_struct_formats_and_raw_bytes() -> None:
    with HashMap.create(key="II", value="qd", max_entries=4) as m:
        m[1, 2] = (-5, 0.5)
        assert m[1, 2] == (-5, 0.5)
    with HashMap.create(key_size=3, value_size=2, max_entries=4) as raw:
        raw[b"abc"] = b"xy"
        assert dict(raw) == {b"abc": b"xy"}
        with pytest.raises(UsageError, match=r"^expected 3 bytes, got 2$"):
            raw[b"ab"] = b"zz"


def test_update_flags_and_a_full_map() -> None:
    with HashMap.create(key="I", value="I", max_entries=2) as m:
        m.update_raw(1, b"\1\0\0\0", flags=ffi.BPF_NOEXIST)
        with pytest.raises(FileExistsError):
            m.update_raw(1, b"\2\0\0\0", flags=ffi.BPF_NOEXIST)
        with pytest.raises(FileNotFoundError):
            m.update_raw(2, b"\2\0\0\0", flags=ffi.BPF_EXIST)
        m[2] = 2
        with pytest.raises(UsageError, match=r"^HashMap\('', 2 entries, fd=\d+\) is full "
                                             r"\(2 entries\); delete some or create it "
                                             r"larger$"):
            m[3] = 3
        assert m.lookup_raw(1) == b"\1\0\0\0"
        assert m.lookup_raw(5) is None


def test_array_map_has_every_index_and_no_deletes() -> None:
    with ArrayMap.create(value="Q", max_entries=4) as a:
        a[2] = 5
        assert list(a.items()) == [(0, 0), (1, 0), (2, 5), (3, 0)]
        assert len(a) == 4
        with pytest.raises(KeyError):
            _ = a[4]
        with pytest.raises(UsageError, match=r"^array map elements cannot be deleted"):
            del a[0]


def test_per_cpu_maps_hold_one_value_per_possible_cpu() -> None:
    n = possible_cpus()
    with PerCpuArrayMap.create(value="I", max_entries=2) as a:
        a[1] = tuple(range(10, 10 + n))
        assert a[1] == tuple(range(10, 10 + n))
        assert a.total(1) == sum(range(10, 10 + n))
        assert a[0] == (0,) * n
        with pytest.raises(UsageError, match=rf"^a per-CPU value is a sequence of {n} "):
            a[0] = 5
    with PerCpuHashMap.create(key="Q", value="Q", max_entries=4) as h:
        h[9] = (1,) * n
        assert dict(h) == {9: (1,) * n}


def test_bad_arguments_and_closed_maps() -> None:
    with pytest.raises(UsageError, match=r"^map name 'bad name' must be at most 15 "):
        HashMap.create(key="I", value="I", max_entries=1, name="bad name")
    with pytest.raises(UsageError, match=r"^max_entries must be at least 1, got 0$"):
        ArrayMap.create(value="I", max_entries=0)
    with pytest.raises(UsageError, match=r"^key format 'I' is 4 bytes but key_size is 8$"):
        HashMap.create(key="I", key_size=8, value="I", max_entries=1)
    m = HashMap.create(key="I", value="I", max_entries=1, name="gone")
    m.close()
    m.close()
    with pytest.raises(ClosedResourceError, match=r"^eBPF map 'gone' is closed$"):
        m[1] = 1
    assert repr(m) == "HashMap('gone', 1 entries, closed)"


class HashMapAgainstDict(RuleBasedStateMachine):
    """A hash map of 8 entries behaves as a dict capped at 8 keys."""

    def __init__(self) -> None:
        super().__init__()
        self.map = HashMap.create(key="H", value="q", max_entries=8)
        self.model: dict[int, int] = {}

    keys = st.integers(0, 20)

    @rule(key=keys, value=st.integers(-(2**63), 2**63 - 1))
    def put(self, key: int, value: int) -> None:
        if key not in self.model and len(self.model) == 8:
            with pytest.raises(UsageError):
                self.map[key] = value
            return
        self.map[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: int) -> None:
        if key in self.model:
            del self.map[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.map[key]

    @rule(key=keys)
    def get(self, key: int) -> None:
        assert self.map.get(key) == self.model.get(key)

    @invariant()
    def same_contents(self) -> None:
        assert dict(self.map) == self.model

    def teardown(self) -> None:
        self.map.close()


HashMapAgainstDict.TestCase.settings = settings(max_examples=30, stateful_step_count=20,
                                                deadline=None)
TestHashMapAgainstDict = HashMapAgainstDict.TestCase
TestHashMapAgainstDict.pytestmark = [pytest.mark.needs_bpf]  # type: ignore[attr-defined]
