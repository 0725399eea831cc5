"""The public surface changes only on purpose (STYLE.md: one public face per layer)."""

from __future__ import annotations

import importlib

import pytest

import qpuos.errors

QUANTUM = {
    "DAG", "Circuit", "CompileResult", "Condition", "Device", "DurationModel",
    "Instruction", "Register", "RoutedCircuit", "RoutingOptions", "SabreRouter", "Schedule",
    "ScheduledOp", "VerifyReport", "builtin_device_names", "compile_circuit",
    "decompose_multiqubit", "describe_devices", "dump_qasm", "grid_device",
    "heavy_hex_device", "line_device", "load_device", "load_qasm", "parse_qasm",
    "require_fits", "ring_device", "save_qasm", "schedule", "simulate", "verify_routed",
    "IsaRecord", "Opcode",
}

ERRORS = {
    "DeviceError", "DeviceFormatError", "DeviceNotFound", "QasmError", "QasmSemanticError",
    "QasmSyntaxError", "QpuosError", "QpuosInternalError", "RoutingError", "TopologyError",
    "UsageError", "VerificationError", "ClosedResourceError", "WouldBlock", "RingError",
    "RingFull", "RingEmpty", "RingTimeout", "PeerDied", "RingCorrupted", "HeapError",
    "HeapExhausted", "DoubleFree", "InvalidPointer", "HeapCorrupted", "HeapLockError",
    "UnsupportedArchitecture", "IrqError", "InvalidVector", "VectorInUse", "SchedulerError",
    "RealtimeError", "MmioError", "IsaError", "ControllerError", "DeviceLost", "DeviceFault",
    "DeviceTimeout", "BpfError", "BtfError", "CoreRelocationError", "VerifierRejected",
    "ShardError", "ClusterError", "NodeLost", "FirmwareError", "MetadataError",
    "SignatureError", "ExpiredMetadata", "RollbackAttack", "MetadataMismatch", "LengthExceeded",
    "ChunkError", "SlotError", "FirmwareTransportError", "FirmwareTimeout", "RegistryError",
    "BootError", "ImageError", "BootFailed",
}


def test_every_error_derives_from_the_base() -> None:
    assert set(qpuos.errors.__all__) ^ ERRORS == set()
    strays = {name for name in ERRORS
              if not issubclass(getattr(qpuos.errors, name), qpuos.errors.QpuosError)}
    assert strays == set()


IPC = {"ArenaHook", "MpmcRing", "RecordRing", "SpscRing", "WaitMode", "unlink_ring"}


KERNEL = {
    "Event", "EventSource", "FdSource", "IrqSource", "Lock", "Queue", "Scheduler",
    "SignalSource", "Task", "TaskInfo", "TaskState", "TimerSource", "UioSource",
    "VectorStats", "VectorTable", "WatchdogReport", "checkpoint", "current_scheduler",
    "current_task", "doorbell", "sleep", "sleep_until", "spawn", "Arena", "ArenaStats",
    "pool_size_for", "Access", "Field", "MmioWindow", "Register", "RegisterMap",
    "unlink_window",
}


DEVICE = {
    "DEVICE_ID", "QPU_REGISTERS", "FaultCode", "IrqBit", "LatencyStats", "Qpu", "QpuState",
    "RunResult", "format_counts", "pick_dilation", "run_on_device",
}


BPF = {
    "ArrayMap", "BpfError", "BpfMap", "BpfObject", "BpfProgram", "Btf", "BtfError", "BtfKind",
    "BtfMember", "BtfType", "CoreRelocationError", "HashMap", "Link", "PerCpuArrayMap",
    "PerCpuHashMap", "ProgType", "ProgramRun", "RingBuffer", "SocketFilter",
    "SyscallCounter", "VerifierRejected", "attach_raw_tracepoint", "attach_socket_filter",
    "attach_tracepoint", "get_pinned", "load_program", "pin", "trace_syscalls",
    "PerfEventArray", "PerfRecord", "attach_kprobe",
}


CLUSTER = {
    "CalibrationCheck", "CalibrationReport", "Cluster", "ClusterError", "ControllerExecutor",
    "Correlation", "Drift", "Executor", "JobResult", "MODES", "Mode", "NodeLost",
    "NodeStatus", "ShardError", "ShardedSimulator", "SimulatorExecutor", "SyncStats",
    "bell_circuit", "calibrate", "default_executor", "ghz_circuit",
}


FIRMWARE = {
    "BootState", "BootedImage", "CertPaths", "ChunkError", "DeviceRecord", "DirectoryFetcher",
    "Envelope", "ExpiredMetadata", "Fetcher", "FirmwareError", "FirmwareServer",
    "FirmwareTimeout", "FirmwareTransportError", "ImageRecord", "LengthExceeded", "MetaFile",
    "MetadataError", "MetadataMismatch", "Registry", "RegistryError", "RollbackAttack", "Root",
    "ServerStats", "SignatureError", "SlotError", "SlotStore", "Snapshot", "SqliteRegistry",
    "TargetFile", "Targets", "Timestamp", "TlsFetcher", "UpdateAgent", "UpdateResult",
    "client_context", "describe_image", "keygen", "make_certs", "provision_device",
    "refresh_timestamp", "rotate_keys", "serve_in_thread", "server_context", "sign_image",
    "sign_metadata", "update_device", "verify_envelope",
    "PostgresRegistry", "RolloutState", "open_registry", "parse_stages",
}


LAB = {
    "PROBES", "PROBE_NAMES", "Finding", "Knee", "LabReport", "Miss", "Panel", "ProbeResult",
    "Scenario", "Series", "find_crossover", "find_hinge", "find_inverse_crossing", "find_step",
    "load_scenarios", "run_lab", "write_report",
}


RT = {
    "DegradeEvidence", "GCGuard", "GCPhase", "GCStats", "GenerationStats", "RealtimeItem",
    "RealtimeProfile", "RealtimeReport", "cpu_nodes", "numa_topology", "pin_to",
}


LAYERS = {
    "qpuos.quantum": QUANTUM, "qpuos.ipc": IPC, "qpuos.kernel": KERNEL,
    "qpuos.device": DEVICE, "qpuos.bpf": BPF, "qpuos.cluster": CLUSTER,
    "qpuos.firmware": FIRMWARE, "qpuos.lab": LAB, "qpuos.rt": RT,
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_exports_exactly_its_public_names(layer: str) -> None:
    module = importlib.import_module(layer)
    expected = LAYERS[layer]
    assert set(module.__all__) ^ expected == set()
    missing = {name for name in expected if not hasattr(module, name)}
    assert missing == set()
