"""Every error qpuos raises, in one place.

The tree::

    QpuosError                      base of everything qpuos raises on purpose
    ├── QpuosInternalError          an impossible state: this is a bug, please report it
    ├── UsageError                  a bad argument or option at an API or CLI boundary
    ├── QasmError                   an OpenQASM file qpuos cannot accept
    │   ├── QasmSyntaxError         not valid OpenQASM 2.0 (file, line, column, expected)
    │   └── QasmSemanticError       valid syntax, wrong meaning: unknown or opaque gate,
    │                               undeclared register, index out of range, arity mismatch
    ├── DeviceError                 a device description qpuos cannot use
    │   ├── DeviceNotFound          no built-in device of that name and no such file
    │   └── DeviceFormatError       the JSON does not follow the device schema
    ├── TopologyError               circuit and device do not fit: too wide, disconnected
    ├── RoutingError                the router could not finish (should not happen: a bug
    │                               or an impossible constraint)
    ├── VerificationError           a compiled schedule is not equivalent to its input
    ├── ClosedResourceError         a ring, arena or window was used after close()
    ├── WouldBlock                  the operation cannot proceed now (non-blocking call)
    │   ├── RingFull                no room for the record; the consumer is behind
    │   └── RingEmpty               nothing to read
    ├── RingError                   a shared-memory ring qpuos cannot use
    │   ├── RingTimeout             a blocking wait ran out (also a TimeoutError)
    │   ├── PeerDied                the process on the other side of the ring is gone
    │   └── RingCorrupted           the shared header is not a ring of this layout
    ├── HeapError                   an arena allocator refused a request
    │   ├── HeapExhausted           no free block large enough (size asked, largest free)
    │   ├── DoubleFree              the block was already free
    │   ├── InvalidPointer          the offset is not a live block (or misaligned, or out
    │   │                           of range)
    │   ├── HeapCorrupted           check() found a broken invariant; stop using the arena
    │   └── HeapLockError           the arena lock is held by a dead process, or timed out
    ├── UnsupportedArchitecture     no syscall table for this machine (names it)
    ├── IrqError                    the interrupt vector table refused a request
    │   ├── InvalidVector           not a vector number 0..255
    │   └── VectorInUse             the vector already has a handler
    ├── SchedulerError              the coroutine scheduler cannot do what was asked
    ├── RealtimeError               a real-time setting (pinning, GC policy) was misused
    ├── MmioError                   a register window refused an access: unknown register
    │                               or field, out of range, misaligned, read-only write
    ├── IsaError                    an instruction stream that cannot be encoded or decoded
    ├── BpfError                    the eBPF layer could not do what was asked
    │   ├── BtfError                BTF data that cannot be parsed (names the offset)
    │   ├── CoreRelocationError     a CO-RE relocation the target kernel cannot satisfy
    │   │                           (names the struct, the field and the object)
    │   └── VerifierRejected        the kernel's verifier refused a program (log attached)
    ├── ControllerError             the QPU controller could not complete a run
    │   ├── DeviceLost              the controller process died (names it and its status)
    │   ├── DeviceFault             the controller reported a fault (code, sequence number)
    │   └── DeviceTimeout           the controller did not answer in time (also TimeoutError)
    ├── ShardError                  a sharded state vector could not be built, run or kept
    │                               consistent (e.g. over the per-shard memory limit)
    ├── ClusterError                the Ray cluster or its QPU nodes could not run the jobs
    │   └── NodeLost                a QPU node died and no other node could take its jobs
    ├── BootError                   building or booting the controller's OS image failed
    │   ├── ImageError              the image could not be built or read (names what is
    │   │                           missing: interpreter, library, a bad cpio)
    │   └── BootFailed              the guest booted but a stage failed, or never reported
    └── FirmwareError               a firmware update could not go ahead
        ├── MetadataError           metadata that is not well-formed (names the field)
        │   ├── SignatureError      too few valid signatures from the role's keys
        │   ├── ExpiredMetadata     a role's metadata is past its expiry (freeze attack)
        │   ├── RollbackAttack      a version went back (metadata or image)
        │   ├── MetadataMismatch    the roles disagree: hashes or versions do not match
        │   │                       what the role above recorded (mix-and-match)
        │   └── LengthExceeded      more bytes than the signed length (endless data)
        ├── ChunkError              a downloaded chunk does not match its signed hash
        ├── SlotError               the A/B slots cannot boot or install as asked
        ├── FirmwareTransportError  the TLS connection failed, was refused or timed out
        │   └── FirmwareTimeout     no answer in time (also a TimeoutError)
        └── RegistryError           the fleet registry refused a write or a read

None of the eBPF errors is an ``OSError``: a refusal by ``bpf(2)`` that is not the
verifier's (EPERM, ENOMEM, ...) stays the ``OSError`` subclass the syscall gate raises.

Messages say what was observed and what to do next. The CLI prints
``ClassName: message`` and exits 2 for any of these.
"""

from __future__ import annotations

__all__ = [
    "BootError",
    "BootFailed",
    "BpfError",
    "BtfError",
    "ChunkError",
    "ClosedResourceError",
    "ClusterError",
    "ControllerError",
    "CoreRelocationError",
    "DeviceError",
    "DeviceFault",
    "DeviceFormatError",
    "DeviceLost",
    "DeviceNotFound",
    "DeviceTimeout",
    "DoubleFree",
    "ExpiredMetadata",
    "FirmwareError",
    "FirmwareTimeout",
    "FirmwareTransportError",
    "HeapCorrupted",
    "HeapError",
    "HeapExhausted",
    "HeapLockError",
    "ImageError",
    "InvalidPointer",
    "InvalidVector",
    "IrqError",
    "IsaError",
    "LengthExceeded",
    "MetadataError",
    "MetadataMismatch",
    "MmioError",
    "NodeLost",
    "PeerDied",
    "QasmError",
    "QasmSemanticError",
    "QasmSyntaxError",
    "QpuosError",
    "QpuosInternalError",
    "RealtimeError",
    "RegistryError",
    "RingCorrupted",
    "RingEmpty",
    "RingError",
    "RingFull",
    "RingTimeout",
    "RollbackAttack",
    "RoutingError",
    "SchedulerError",
    "ShardError",
    "SignatureError",
    "SlotError",
    "TopologyError",
    "UnsupportedArchitecture",
    "UsageError",
    "VectorInUse",
    "VerificationError",
    "VerifierRejected",
    "WouldBlock",
]


class QpuosError(Exception):
    """Base class of every error qpuos raises on purpose."""


class QpuosInternalError(QpuosError):
    """An impossible state was reached; this is a bug in qpuos."""


class UsageError(QpuosError):
    """A bad argument or option was given to an API or CLI entry point."""


class QasmError(QpuosError):
    """An OpenQASM source qpuos cannot accept.

    Attributes:
        filename: where the source came from ("<string>" for text).
        line: 1-based line of the problem, or 0 when it has no position.
        column: 1-based column of the problem, or 0 when it has no position.
        detail: the message without the position prefix.
    """

    def __init__(self, detail: str, *, filename: str = "<string>", line: int = 0,
                 column: int = 0) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        self.detail = detail
        where = f"{filename}:{line}:{column}: " if line else f"{filename}: "
        super().__init__(where + detail)


class QasmSyntaxError(QasmError):
    """The source is not valid OpenQASM 2.0; the message says what was expected."""


class QasmSemanticError(QasmError):
    """Valid syntax with a wrong meaning: unknown or opaque gate, bad register, bad arity."""


class DeviceError(QpuosError):
    """A device description qpuos cannot use."""


class DeviceNotFound(DeviceError):
    """No built-in device has that name and no file exists at that path."""


class DeviceFormatError(DeviceError):
    """A device JSON file does not follow the schema (see ``qpuos devices --help``)."""


class TopologyError(QpuosError):
    """A circuit and a device do not fit: the circuit is too wide or the graph is unusable."""


class RoutingError(QpuosError):
    """The router could not produce a schedule."""


class VerificationError(QpuosError):
    """A compiled schedule failed its independent check (coupling or equivalence)."""


class ClosedResourceError(QpuosError):
    """A resource (ring, arena, register window) was used after ``close()``."""


class WouldBlock(QpuosError):
    """A non-blocking operation cannot proceed now; retry later or use a blocking call."""


class RingError(QpuosError):
    """A shared-memory ring qpuos cannot use as asked."""


class RingFull(RingError, WouldBlock):
    """No room for the record now: the consumer is behind (backpressure)."""


class RingEmpty(RingError, WouldBlock):
    """Nothing to read now."""


class RingTimeout(RingError, TimeoutError):
    """A blocking send or receive waited longer than its timeout."""


class PeerDied(RingError):
    """The process on the other side of the ring has exited; reset or drain the ring."""


class RingCorrupted(RingError):
    """The shared header does not describe a ring of this kind and layout."""


class HeapError(QpuosError):
    """An arena allocator refused a request."""


class HeapExhausted(HeapError):
    """No free block is large enough.

    Attributes:
        size: the bytes asked for.
        largest: the largest free block at the time, in bytes.
    """

    def __init__(self, message: str, *, size: int = 0, largest: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.largest = largest


class DoubleFree(HeapError):
    """The block at that offset is already free."""


class InvalidPointer(HeapError):
    """The offset is not the start of a live block (or is misaligned or out of range)."""


class HeapCorrupted(HeapError):
    """The arena's own bookkeeping is broken; stop using it and rebuild it."""


class HeapLockError(HeapError):
    """The arena lock is held by a process that died, or could not be taken in time."""


class UnsupportedArchitecture(QpuosError):
    """qpuos has no syscall-number table for this machine's architecture."""


class IrqError(QpuosError):
    """The interrupt vector table refused a request."""


class InvalidVector(IrqError):
    """The vector number is outside 0..255."""


class VectorInUse(IrqError):
    """The vector already has a handler; unregister it first."""


class SchedulerError(QpuosError):
    """The coroutine scheduler cannot do what was asked."""


class RealtimeError(QpuosError):
    """A real-time setting (CPU pinning, scheduling policy, GC policy) was misused."""


class MmioError(QpuosError):
    """A register window refused an access: unknown register or field, an offset out of
    range or misaligned, or a write to a read-only register."""


class IsaError(QpuosError):
    """An instruction stream that cannot be encoded or decoded (unknown operation, qubit
    out of range, wrong format version)."""


class ControllerError(QpuosError):
    """The QPU controller could not complete a run."""


class DeviceLost(ControllerError):
    """The controller process died or vanished; its shared memory has been released."""


class DeviceFault(ControllerError):
    """The controller reported a fault while executing the instruction stream.

    Attributes:
        code: the fault code from the STATUS register.
        seq: the sequence number of the faulting instruction, or -1 if none.
    """

    def __init__(self, message: str, *, code: int = 0, seq: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.seq = seq


class DeviceTimeout(ControllerError, TimeoutError):
    """The controller did not answer within the timeout."""


class BpfError(QpuosError):
    """The eBPF layer could not do what was asked."""


class BtfError(BpfError):
    """BTF data that cannot be parsed: bad magic, a truncated section, an unknown kind."""


class VerifierRejected(BpfError):
    """The kernel's verifier refused a program.

    Attributes:
        program: the program's name.
        errno: the errno ``BPF_PROG_LOAD`` returned (EACCES or EINVAL, usually).
        log: the verifier log, as text (may be truncated at the log buffer's size).
    """

    def __init__(self, message: str, *, program: str = "", errno: int = 0,
                 log: str = "") -> None:
        super().__init__(message)
        self.program = program
        self.errno = errno
        self.log = log


class CoreRelocationError(BpfError):
    """A CO-RE relocation of an object cannot be satisfied by the target kernel's BTF:
    the type or field does not exist there (never skipped silently).

    Attributes:
        obj: the object file (or name) the relocation comes from.
        program: the program (section) holding the instruction.
        type_name: the struct, union or enum the program refers to.
        field: the missing member or enumerator ("" for a whole missing type).
    """

    def __init__(self, message: str, *, obj: str = "", program: str = "",
                 type_name: str = "", field: str = "") -> None:
        super().__init__(message)
        self.obj = obj
        self.program = program
        self.type_name = type_name
        self.field = field


class ShardError(QpuosError):
    """A sharded state vector could not be built, run, or kept consistent."""


class ClusterError(QpuosError):
    """The Ray cluster or its QPU nodes could not run what was asked."""


class NodeLost(ClusterError):
    """A QPU node died and no other node could take over its jobs."""


class FirmwareError(QpuosError):
    """A firmware update could not go ahead."""


class MetadataError(FirmwareError):
    """Update metadata that is not well-formed: a missing or mistyped field."""


class SignatureError(MetadataError):
    """A role's metadata lacks a threshold of valid signatures from its trusted keys."""


class ExpiredMetadata(MetadataError):
    """A role's metadata is past its expiry: the server may be replaying old state."""


class RollbackAttack(MetadataError):
    """A metadata or image version is lower than one already trusted or installed."""


class MetadataMismatch(MetadataError):
    """A role's metadata does not match the hash, length or version the role above it
    signed: roles from different moments were mixed."""


class LengthExceeded(MetadataError):
    """A download sent more bytes than its signed (or configured) bound."""


class ChunkError(FirmwareError):
    """A downloaded chunk does not match its signed hash; it is discarded and re-fetched.

    Attributes:
        index: the chunk's index in the image.
    """

    def __init__(self, message: str, *, index: int = -1) -> None:
        super().__init__(message)
        self.index = index


class SlotError(FirmwareError):
    """The A/B slots cannot boot or install as asked (no verified image, bad state)."""


class FirmwareTransportError(FirmwareError):
    """The update connection failed: TLS refused, peer closed, protocol violated."""


class FirmwareTimeout(FirmwareTransportError, TimeoutError):
    """The peer did not answer within the timeout."""


class RegistryError(FirmwareError):
    """The fleet registry could not complete a read or a write."""


class BootError(QpuosError):
    """Base of the boot errors: building or booting the controller's OS image."""


class ImageError(BootError):
    """The image could not be built or read (missing interpreter, library, bad cpio)."""


class BootFailed(BootError):
    """The guest booted but a stage failed, or no summary line arrived in time."""
