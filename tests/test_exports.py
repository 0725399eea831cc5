"""The public surface changes only on purpose (STYLE.md: one public face per layer)."""

from __future__ import annotations

import qpuos.errors
import qpuos.quantum

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


def test_quantum_layer_exports_exactly_its_public_names() -> None:
    assert set(qpuos.quantum.__all__) ^ QUANTUM == set()
    missing = {name for name in QUANTUM if not hasattr(qpuos.quantum, name)}
    assert missing == set()


def test_every_error_derives_from_the_base() -> None:
    assert set(qpuos.errors.__all__) ^ ERRORS == set()
    strays = {name for name in ERRORS
              if not issubclass(getattr(qpuos.errors, name), qpuos.errors.QpuosError)}
    assert strays == set()


IPC = {"ArenaHook", "MpmcRing", "RecordRing", "SpscRing", "WaitMode", "unlink_ring"}


def test_ipc_layer_exports_exactly_its_public_names() -> None:
    import qpuos.ipc

    assert set(qpuos.ipc.__all__) ^ IPC == set()
    missing = {name for name in IPC if not hasattr(qpuos.ipc, name)}
    assert missing == set()


KERNEL = {
    "Event", "EventSource", "FdSource", "IrqSource", "Lock", "Queue", "Scheduler",
    "SignalSource", "Task", "TaskInfo", "TaskState", "TimerSource", "UioSource",
    "VectorStats", "VectorTable", "WatchdogReport", "checkpoint", "current_scheduler",
    "current_task", "doorbell", "sleep", "sleep_until", "spawn", "Arena", "ArenaStats",
    "pool_size_for", "Access", "Field", "MmioWindow", "Register", "RegisterMap",
    "unlink_window",
}


def test_kernel_layer_exports_exactly_its_public_names() -> None:
    import qpuos.kernel

    assert set(qpuos.kernel.__all__) ^ KERNEL == set()
    missing = {name for name in KERNEL if not hasattr(qpuos.kernel, name)}
    assert missing == set()


DEVICE = {
    "DEVICE_ID", "QPU_REGISTERS", "FaultCode", "IrqBit", "LatencyStats", "Qpu", "QpuState",
    "RunResult", "format_counts", "pick_dilation", "run_on_device",
}


def test_device_layer_exports_exactly_its_public_names() -> None:
    import qpuos.device

    assert set(qpuos.device.__all__) ^ DEVICE == set()
    missing = {name for name in DEVICE if not hasattr(qpuos.device, name)}
    assert missing == set()


BPF = {
    "ArrayMap", "BpfError", "BpfMap", "BpfObject", "BpfProgram", "Btf", "BtfError", "BtfKind",
    "BtfMember", "BtfType", "CoreRelocationError", "HashMap", "Link", "PerCpuArrayMap",
    "PerCpuHashMap", "ProgType", "ProgramRun", "RingBuffer", "SocketFilter",
    "SyscallCounter", "VerifierRejected", "attach_raw_tracepoint", "attach_socket_filter",
    "attach_tracepoint", "get_pinned", "load_program", "pin", "trace_syscalls",
    "PerfEventArray", "PerfRecord", "attach_kprobe",
}


def test_bpf_layer_exports_exactly_its_public_names() -> None:
    import qpuos.bpf

    assert set(qpuos.bpf.__all__) ^ BPF == set()
    missing = {name for name in BPF if not hasattr(qpuos.bpf, name)}
    assert missing == set()


CLUSTER = {
    "CalibrationCheck", "CalibrationReport", "Cluster", "ClusterError", "ControllerExecutor",
    "Correlation", "Drift", "Executor", "JobResult", "MODES", "Mode", "NodeLost",
    "NodeStatus", "ShardError", "ShardedSimulator", "SimulatorExecutor", "SyncStats",
    "bell_circuit", "calibrate", "default_executor", "ghz_circuit",
}


def test_cluster_layer_exports_exactly_its_public_names() -> None:
    import qpuos.cluster

    assert set(qpuos.cluster.__all__) ^ CLUSTER == set()
    missing = {name for name in CLUSTER if not hasattr(qpuos.cluster, name)}
    assert missing == set()


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


def test_firmware_layer_exports_exactly_its_public_names() -> None:
    import qpuos.firmware

    assert set(qpuos.firmware.__all__) ^ FIRMWARE == set()
    missing = {name for name in FIRMWARE if not hasattr(qpuos.firmware, name)}
    assert missing == set()


LAB = {
    "PROBES", "PROBE_NAMES", "Finding", "Knee", "LabReport", "Miss", "Panel", "ProbeResult",
    "Scenario", "Series", "find_crossover", "find_hinge", "find_inverse_crossing", "find_step",
    "load_scenarios", "run_lab", "write_report",
}


def test_lab_layer_exports_exactly_its_public_names() -> None:
    import qpuos.lab

    assert set(qpuos.lab.__all__) ^ LAB == set()
    missing = {name for name in LAB if not hasattr(qpuos.lab, name)}
    assert missing == set()


RT = {
    "DegradeEvidence", "GCGuard", "GCPhase", "GCStats", "GenerationStats", "RealtimeItem",
    "RealtimeProfile", "RealtimeReport", "cpu_nodes", "numa_topology", "pin_to",
}


def test_rt_layer_exports_exactly_its_public_names() -> None:
    import qpuos.rt

    assert set(qpuos.rt.__all__) ^ RT == set()
    missing = {name for name in RT if not hasattr(qpuos.rt, name)}
    assert missing == set()
