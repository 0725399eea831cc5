"""The QPU register map, exercised through a real emulated window (host and device)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from qpuos.device import _kernels as k
from qpuos.device.registers import (
    DEVICE_ID,
    QPU_REGISTERS,
    FaultCode,
    IrqBit,
    QpuState,
)
from qpuos.errors import MmioError
from qpuos.kernel.mmio import Access, MmioWindow


@pytest.fixture
def pair() -> Iterator[tuple[MmioWindow, MmioWindow]]:
    host = MmioWindow.create(QPU_REGISTERS, name=f"qpuos-test-qpu-{uuid.uuid4().hex[:8]}",
                             role="host")
    dev = MmioWindow.attach(QPU_REGISTERS, host.name, role="device")
    try:
        yield host, dev
    finally:
        dev.close()
        host.unlink()
        host.close()


def test_map_layout() -> None:
    text = QPU_REGISTERS.describe()
    for name in ("ID", "VERSION", "CTRL", "STATUS", "FAULT_SEQ", "DOORBELL", "IRQ_STATUS",
                 "INSTR_COUNT", "SHOTS_DONE", "FAULT_COUNT"):
        assert name in QPU_REGISTERS and name in text
    assert QPU_REGISTERS["IRQ_STATUS"].access is Access.W1C
    assert QPU_REGISTERS["DOORBELL"].access is Access.WO
    assert {r.name for r in QPU_REGISTERS if r.width == 64} >= {"JOB_QUBITS", "INSTR_COUNT"}


def test_fault_codes_match_the_engine() -> None:
    assert [FaultCode.NONE, FaultCode.BAD_VERSION, FaultCode.BAD_OPCODE, FaultCode.BAD_QUBIT,
            FaultCode.NOT_COUPLED, FaultCode.BAD_CLBIT, FaultCode.BAD_SEQ] == [
        k.F_NONE, k.F_BAD_VERSION, k.F_BAD_OPCODE, k.F_BAD_QUBIT, k.F_NOT_COUPLED,
        k.F_BAD_CLBIT, k.F_BAD_SEQ]


def test_host_cannot_write_what_the_device_owns(pair: tuple[MmioWindow, MmioWindow]) -> None:
    host, dev = pair
    dev.write("ID", DEVICE_ID)
    for reg in ("ID", "STATUS", "FAULT_SEQ", "INSTR_COUNT"):
        with pytest.raises(MmioError):
            host.write(reg, 1)
    with pytest.raises(MmioError):
        host.read("DOORBELL")
    assert host.read("ID") == DEVICE_ID


def test_status_fields_and_enums(pair: tuple[MmioWindow, MmioWindow]) -> None:
    host, dev = pair
    dev.write("STATUS", QpuState.FAULT | FaultCode.NOT_COUPLED << 8)
    assert host.read_field("STATUS", "STATE") == QpuState.FAULT
    assert host.read_field("STATUS", "FAULT_CODE") == FaultCode.NOT_COUPLED
    host.write_field("CTRL", "IRQ_ENABLE", 1)
    host.write_field("CTRL", "RUN", 1)
    assert dev.read("CTRL") == 0b101


def test_irq_status_is_write_one_to_clear(pair: tuple[MmioWindow, MmioWindow]) -> None:
    host, dev = pair
    dev.set_bits("IRQ_STATUS", IrqBit.DONE | IrqBit.FAULT)
    host.write("IRQ_STATUS", IrqBit.DONE)
    assert host.read("IRQ_STATUS") == IrqBit.FAULT
    host.write("IRQ_STATUS", 0)
    assert host.read("IRQ_STATUS") == IrqBit.FAULT
    host.write("IRQ_STATUS", IrqBit.FAULT)
    assert host.read("IRQ_STATUS") == 0


def test_doorbell_and_job_registers_reach_the_device(
        pair: tuple[MmioWindow, MmioWindow]) -> None:
    host, dev = pair
    host.write("JOB_QUBITS", 1 << 63 | 1)
    host.write("DOORBELL", 7)
    assert (dev.read("JOB_QUBITS"), dev.read("DOORBELL")) == (1 << 63 | 1, 7)
