"""A/B slots: trial boot, confirm, rollback, disk full, and a power cut at every write."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qpuos.errors import ChunkError, ClosedResourceError, SlotError
from qpuos.firmware.client import DirectoryFetcher, UpdateAgent
from qpuos.firmware.image import TargetFile, describe_image
from qpuos.firmware.slots import SlotStore, Staging
from tests.firmware._fw_world import World

CRASHED = 77


def _install(store: SlotStore, data: bytes, target: TargetFile) -> str:
    with store.stage(target) as staging:
        for i in range(staging.next_chunk, len(target.chunks)):
            offset, length = target.chunk_range(i)
            staging.write_chunk(i, data[offset:offset + length])
        return store.install(staging)


def _booted_bytes(store: SlotStore) -> tuple[str, bytes]:
    booted = store.boot()
    data = (store.root / f"slot-{booted.slot}.img").read_bytes()
    assert hashlib.sha256(data).hexdigest() == booted.record.sha256
    return booted.record.version, data


def test_trial_boot_then_confirm(tmp_path: Path) -> None:
    t1 = describe_image(b"one" * 100, name="c", version="1", chunk_size=64)
    t2 = describe_image(b"two" * 100, name="c", version="2", chunk_size=64)
    store = SlotStore.provision(tmp_path, b"one" * 100, t1)
    assert _install(store, b"two" * 100, t2) == "b"
    booted = store.boot()
    assert (booted.slot, booted.mode) == ("b", "trial")
    assert store.confirm().version == "2"
    assert store.boot().mode == "confirmed"
    with pytest.raises(SlotError, match=r"^no trial image is running; nothing to confirm$"):
        store.confirm()


def test_a_trial_that_never_confirms_rolls_back_on_the_next_boot(tmp_path: Path) -> None:
    t1 = describe_image(b"one", name="c", version="1")
    t2 = describe_image(b"two", name="c", version="2")
    store = SlotStore.provision(tmp_path, b"one", t1)
    _install(store, b"two", t2)
    assert store.boot().mode == "trial"
    booted = store.boot()  # the trial hung: the watchdog reset the device
    assert (booted.slot, booted.mode, booted.record.version) == ("a", "confirmed", "1")
    assert store.state().trial is None


def test_corrupt_slot_falls_back_to_the_other(tmp_path: Path) -> None:
    t1 = describe_image(b"one", name="c", version="1")
    t2 = describe_image(b"two", name="c", version="2")
    store = SlotStore.provision(tmp_path, b"one", t1)
    _install(store, b"two", t2)
    store.boot()
    store.confirm()
    (tmp_path / "slot-b.img").write_bytes(b"tw0")
    booted = store.boot()
    assert (booted.slot, booted.mode, booted.record.version) == ("a", "fallback", "1")
    (tmp_path / "slot-a.img").write_bytes(b"0ne")
    with pytest.raises(SlotError, match=r"^neither slot in .* holds a verified image"):
        store.boot()


def test_staging_refuses_bad_chunks_and_use_after_close(tmp_path: Path) -> None:
    t1 = describe_image(b"one", name="c", version="1")
    t2 = describe_image(b"abcdefgh", name="c", version="2", chunk_size=4)
    store = SlotStore.provision(tmp_path, b"one", t1)
    staging = store.stage(t2)
    with pytest.raises(ChunkError, match=r"^chunk 1 arrived but 0 is next"):
        staging.write_chunk(1, b"efgh")
    with pytest.raises(ChunkError, match=r"^chunk 0 of c 2 \(4 bytes, sha256 "):
        staging.write_chunk(0, b"abcX")
    staging.write_chunk(0, b"abcd")
    with pytest.raises(SlotError, match=r"^c 2: 1 of 2 chunks staged; finish the download$"):
        store.install(staging)
    staging.close()
    staging.close()
    with pytest.raises(ClosedResourceError):
        staging.write_chunk(1, b"efgh")
    assert store.stage(t2).next_chunk == 1


def _enospc_at(k: int) -> object:
    calls = [0]

    def hook(point: str) -> None:
        calls[0] += 1
        if calls[0] == k:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return hook


def test_disk_full_at_any_write_leaves_the_old_image_untouched(world: World) -> None:
    """ENOSPC injected at each write point of an update in turn."""
    slots = world.device / "slots"
    pristine = world.device.with_name("pristine")
    shutil.copytree(world.device, pristine)
    k = 1
    while True:
        shutil.rmtree(world.device)
        shutil.copytree(pristine, world.device)
        agent = UpdateAgent(world.device, DirectoryFetcher(world.repo),
                            write_hook=_enospc_at(k))  # type: ignore[arg-type]
        try:
            result = agent.update()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        else:
            assert result.status == "updated"
            break
        assert (slots / "slot-a.img").read_bytes() == world.v1, f"write point {k}"
        assert list(slots.glob(".*.tmp")) == [], f"temporary file left at point {k}"
        assert _booted_bytes(SlotStore(slots))[1] in (world.v1, world.v2)
        k += 1
    assert k > 20


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_on_a_real_tiny_tmpfs(world: World, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.system(f"mount -t tmpfs -o size=64k tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("this container refuses mount(2) even as root")
    try:
        shutil.copytree(world.device, mnt / "device")
        with pytest.raises(OSError) as info:  # 2 x 20 KiB images + a 20 KiB part > 64 KiB
            UpdateAgent(mnt / "device", DirectoryFetcher(world.repo)).update()
        assert info.value.errno == errno.ENOSPC
        assert (mnt / "device/slots/slot-a.img").read_bytes() == world.v1
        assert SlotStore(mnt / "device/slots").boot().record.version == "1.0.0"
    finally:
        os.system(f"umount {mnt}")


def _run_until_cut(world: World, k: int) -> int:
    """Run an update in a forked child that dies by os._exit at write point ``k``
    (0: never); return the child's exit status (the number of points when it finished)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            count = [0]

            def hook(point: str) -> None:
                count[0] += 1
                if count[0] == k:
                    os._exit(CRASHED)

            UpdateAgent(world.device, DirectoryFetcher(world.repo), write_hook=hook).update()
            code = min(count[0], 255) if k == 0 else 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_power_cut_at_every_write_point_always_boots_a_verified_image(world: World) -> None:
    pristine = world.device.with_name("pristine")
    shutil.copytree(world.device, pristine)
    points = _run_until_cut(world, 0)
    assert 20 < points < 255
    outcomes = set()
    for k in range(1, points + 1):
        shutil.rmtree(world.device)
        shutil.copytree(pristine, world.device)
        assert _run_until_cut(world, k) == CRASHED, f"write point {k}"
        store = SlotStore(world.device / "slots")
        version, data = _booted_bytes(store)  # power back on
        assert data == {"1.0.0": world.v1, "1.1.0": world.v2}[version], f"point {k}"
        outcomes.add(version)
        result = UpdateAgent(world.device, DirectoryFetcher(world.repo)).update()
        assert result.status in ("updated", "current"), f"point {k}"
        assert _booted_bytes(SlotStore(world.device / "slots")) == ("1.1.0", world.v2)
    assert outcomes == {"1.0.0", "1.1.0"}


class SlotMachine(RuleBasedStateMachine):
    """The slots against a model: the confirmed version, and the trial's if any."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.next_version = 2
        self.images = {"1": b"image-1" * 40}
        t = describe_image(self.images["1"], name="c", version="1", chunk_size=64)
        self.store = SlotStore.provision(self._tmp.name, self.images["1"], t)
        self.confirmed, self.trial, self.started = "1", None, False
        self.staging: Staging | None = None

    def teardown(self) -> None:
        if self.staging is not None:
            self.staging.close()
        self._tmp.cleanup()

    @precondition(lambda self: self.trial is None)
    @rule(chunks=st.integers(0, 6), finish=st.booleans())
    def download(self, chunks: int, finish: bool) -> None:
        version = str(self.next_version)
        data = self.images.get(version) or (f"image-{version}".encode() * 37)
        self.images[version] = data
        target = describe_image(data, name="c", version=version, chunk_size=64)
        with self.store.stage(target) as staging:
            stop = len(target.chunks) if finish else min(chunks, len(target.chunks))
            for i in range(staging.next_chunk, stop):
                offset, length = target.chunk_range(i)
                staging.write_chunk(i, data[offset:offset + length])
            if staging.complete:
                self.store.install(staging)
                self.trial, self.started = version, False
                self.next_version += 1

    @rule()
    def boot(self) -> None:
        booted = self.store.boot()
        if self.trial is not None and not self.started:
            assert (booted.mode, booted.record.version) == ("trial", self.trial)
            self.started = True
        else:
            self.trial, self.started = None, False
            assert (booted.mode, booted.record.version) == ("confirmed", self.confirmed)

    @precondition(lambda self: self.trial is not None and self.started)
    @rule(healthy=st.booleans())
    def health(self, healthy: bool) -> None:
        if healthy:
            assert self.store.confirm().version == self.trial
            self.confirmed = str(self.trial)
        else:
            assert self.store.rollback().version == self.confirmed
        self.trial, self.started = None, False

    @invariant()
    def confirmed_slot_is_intact(self) -> None:
        state = self.store.state()
        rec = state.slots[state.confirmed]
        assert rec is not None and rec.version == self.confirmed
        path = self.store.root / f"slot-{state.confirmed}.img"
        assert path.read_bytes() == self.images[self.confirmed]
        assert (state.trial is None) == (self.trial is None)
        assert state.trial_started == self.started


TestSlotMachine = SlotMachine.TestCase
TestSlotMachine.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
