"""The edu register map (QEMU's docs/specs/edu.rst), its BAR through MmioWindow, sysfs
discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from qpuos.errors import ClosedResourceError, MmioError
from qpuos.kernel.boot.edu import EDU_DEVICE, EDU_REGISTERS, EDU_VENDOR, find_edu
from qpuos.kernel.mmio import Access, MmioWindow


def test_register_offsets_follow_the_edu_spec() -> None:
    layout = {r.name: (r.offset, r.width, r.access) for r in EDU_REGISTERS.registers}
    assert layout == {
        "ID": (0x00, 32, Access.RO), "LIVENESS": (0x04, 32, Access.RW),
        "FACTORIAL": (0x08, 32, Access.RW), "STATUS": (0x20, 32, Access.RW),
        "IRQ_STATUS": (0x24, 32, Access.RO), "IRQ_RAISE": (0x60, 32, Access.WO),
        "IRQ_ACK": (0x64, 32, Access.WO), "DMA_SRC": (0x80, 64, Access.RW),
        "DMA_DST": (0x88, 64, Access.RW), "DMA_COUNT": (0x90, 64, Access.RW),
        "DMA_CMD": (0x98, 64, Access.RW)}
    assert (EDU_VENDOR, EDU_DEVICE) == (0x1234, 0x11E8)


@pytest.fixture
def bar_file(tmp_path: Path) -> Path:
    path = tmp_path / "resource0"
    path.write_bytes(bytes(EDU_REGISTERS.size))
    return path


def test_bar_window_accesses_are_width_exact_and_little_endian(bar_file: Path) -> None:
    with MmioWindow.open_path(EDU_REGISTERS, bar_file) as bar:
        bar.write("DMA_SRC", 0x0102030405060708)
        bar.write("FACTORIAL", 0xAABBCCDD)
        raw = bar_file.read_bytes()
        assert raw[0x80:0x88] == bytes.fromhex("0807060504030201")
        assert raw[0x08:0x0C] == bytes.fromhex("ddccbbaa")
        assert raw[0x0C:0x20] == bytes(0x14)
        assert bar.read("DMA_SRC") == 0x0102030405060708


def test_bar_window_keeps_the_access_rules(bar_file: Path) -> None:
    with MmioWindow.open_path(EDU_REGISTERS, bar_file) as bar:
        assert not bar.emulated and bar.role == "host"
        with pytest.raises(MmioError, match=r"^register 'ID' of map 'edu' is read-only"):
            bar.write("ID", 1)
        with pytest.raises(MmioError, match=r"^register 'IRQ_RAISE' of map 'edu' is "
                                            r"write-only"):
            bar.read("IRQ_RAISE")
        with pytest.raises(MmioError, match=r"^value 4294967296 does not fit 32-bit "
                                            r"register 'LIVENESS' of map 'edu'"):
            bar.write("LIVENESS", 1 << 32)
        with pytest.raises(MmioError, match=r"^no register 'NOPE' in register map 'edu'"):
            bar.read("NOPE")
    bar.close()
    with pytest.raises(ClosedResourceError, match=r"^register window .* is closed"):
        bar.read("ID")


def test_find_edu_matches_vendor_and_device(tmp_path: Path) -> None:
    for name, vendor, device in [("0000:00:01.0", "0x8086", "0x7000"),
                                 ("0000:00:04.0", "0x1234", "0x11e8"),
                                 ("0000:00:02.0", "0x1234", "0x1111")]:
        d = tmp_path / "devices" / name
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "device").write_text(device + "\n")
    assert find_edu(str(tmp_path)) == str(tmp_path / "devices" / "0000:00:04.0")
    assert find_edu(str(tmp_path / "empty")) is None
