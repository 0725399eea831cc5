"""The emulated QPU's register map: identity, control, status, doorbell, job, counters.

Protocol (the driver is the host, the controller the device):

1. The controller fills ``ID`` and ``VERSION`` at start and moves ``STATUS.STATE`` from
   ``BOOT`` to ``IDLE`` once it is ready (numba kernels loaded, real-time settings
   applied): the driver waits for that before the first job.
2. For a job the host writes the ``JOB_*`` registers, sets ``CTRL.RUN`` (and
   ``IRQ_ENABLE``), then writes ``DOORBELL`` with the job id and streams the
   instruction records into the ring. A write to ``DOORBELL`` before the records keeps
   "job described, then work arrives" in program order (x86 TSO; a barrier elsewhere).
3. The controller sets ``STATE = RUNNING``, issues the records at their dilated
   timestamps, writes results into the DMA arena block at ``JOB_RESULT``, then
   ``STATE = DONE`` (or ``FAULT`` with ``FAULT_CODE`` and ``FAULT_SEQ``), sets the
   matching ``IRQ_STATUS`` bit and, if ``IRQ_ENABLE``, rings the completion eventfd.
4. The host acknowledges by writing 1s to ``IRQ_STATUS`` (W1C).

``CTRL.RESET`` asks the controller to drop a faulted job and return to ``IDLE``;
``CTRL.SHUTDOWN`` asks it to exit.
"""

from __future__ import annotations

import enum

from qpuos.kernel.mmio import Access, Field, Register, RegisterMap

__all__ = ["DEVICE_ID", "QPU_REGISTERS", "REGS_VERSION", "FaultCode", "IrqBit", "QpuState"]

#: ``ID`` register value: "QPU1" in ASCII.
DEVICE_ID = 0x31555051
#: The register map's own revision (``VERSION`` bits 15:0; bits 31:16 hold the ISA).
REGS_VERSION = 1


class QpuState(enum.IntEnum):
    """``STATUS.STATE``: what the controller is doing."""

    BOOT = 0
    IDLE = 1
    RUNNING = 2
    DONE = 3
    FAULT = 4
    HALTED = 5


class FaultCode(enum.IntEnum):
    """``STATUS.FAULT_CODE``: why a job stopped (values shared with the engine)."""

    NONE = 0
    BAD_VERSION = 1      #: a record of another ISA format version
    BAD_OPCODE = 2       #: an opcode the controller does not know
    BAD_QUBIT = 3        #: a qubit beyond the register or outside the job's mask
    NOT_COUPLED = 4      #: a two-qubit gate on a pair that is not an edge
    BAD_CLBIT = 5        #: a measurement into a classical bit >= 64
    BAD_SEQ = 6          #: a record out of sequence (lost or duplicated)
    BAD_JOB = 7          #: job registers that cannot be honoured (too many qubits...)
    INTERNAL = 8         #: the controller failed (see its log)


class IrqBit(enum.IntFlag):
    """``IRQ_STATUS`` bits (write 1 to clear)."""

    DONE = 1
    FAULT = 2


_STATE = Field("STATE", 0, 4, QpuState, "controller state")
_FAULT = Field("FAULT_CODE", 8, 8, FaultCode, "why the last job stopped")

#: The QPU controller's registers (4 KiB window).
QPU_REGISTERS = RegisterMap("qpu", [
    Register("ID", 0x00, access=Access.RO, reset=DEVICE_ID, doc="device identity"),
    Register("VERSION", 0x04, access=Access.RO, doc="ISA version << 16 | map revision"),
    Register("CTRL", 0x08, fields=(
        Field("RUN", 0, doc="accept jobs"), Field("RESET", 1, doc="drop the job, go idle"),
        Field("IRQ_ENABLE", 2, doc="ring the completion eventfd"),
        Field("SHUTDOWN", 3, doc="exit the controller")), doc="control"),
    Register("STATUS", 0x0C, access=Access.RO, fields=(_STATE, _FAULT), doc="state"),
    Register("FAULT_SEQ", 0x10, access=Access.RO, doc="sequence number of the fault"),
    Register("DOORBELL", 0x14, access=Access.WO, doc="write the job id to start it"),
    Register("IRQ_STATUS", 0x18, access=Access.W1C, fields=(
        Field("DONE", 0), Field("FAULT", 1)), doc="pending interrupts"),
    Register("JOB_ID", 0x1C, access=Access.RO, doc="the job the controller last took"),
    Register("JOB_SHOTS", 0x20, doc="shots to sample"),
    Register("JOB_LENGTH", 0x24, doc="records in the job, END included"),
    Register("JOB_QUBITS", 0x28, width=64, doc="bit q set: physical qubit q is used"),
    Register("JOB_DILATION", 0x30, width=64, doc="wall ns per schedule ns, x 2**16"),
    Register("JOB_SEED", 0x38, width=64, doc="random seed of the measurement draws"),
    Register("JOB_RESULT", 0x40, width=64, doc="arena offset of the result block"),
    Register("JOB_T0", 0x48, width=64, access=Access.RO,
             doc="CLOCK_MONOTONIC ns of schedule time 0"),
    Register("INSTR_COUNT", 0x50, width=64, access=Access.RO, doc="records executed"),
    Register("SHOTS_DONE", 0x58, width=64, access=Access.RO, doc="shots sampled"),
    Register("FAULT_COUNT", 0x60, access=Access.RO, doc="faults since start"),
    Register("JOBS_DONE", 0x64, access=Access.RO, doc="jobs completed since start"),
    Register("HEARTBEAT", 0x68, width=64, access=Access.RO,
             doc="CLOCK_MONOTONIC ns of the controller's last idle check"),
])
