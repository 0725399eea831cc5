"""Many QPUs on Ray: jobs placed on QPU nodes, and registers larger than one node kept
as a sharded state vector with explicit synchronisation modes.

Ray is optional (the ``cluster`` extra): importing this layer does not import it; the
first object that needs a cluster starts a local one, or joins ``address``.
"""

from __future__ import annotations

from qpuos.cluster.calibrate import (
    CalibrationCheck,
    CalibrationReport,
    Correlation,
    bell_circuit,
    calibrate,
    ghz_circuit,
)
from qpuos.cluster.executors import (
    ControllerExecutor,
    Executor,
    SimulatorExecutor,
    default_executor,
)
from qpuos.cluster.jobs import Cluster, JobResult, NodeStatus
from qpuos.cluster.shards import MODES, Drift, Mode, ShardedSimulator, SyncStats
from qpuos.errors import ClusterError, NodeLost, ShardError

__all__ = [
    "MODES",
    "CalibrationCheck",
    "CalibrationReport",
    "Cluster",
    "ClusterError",
    "ControllerExecutor",
    "Correlation",
    "Drift",
    "Executor",
    "JobResult",
    "Mode",
    "NodeLost",
    "NodeStatus",
    "ShardError",
    "ShardedSimulator",
    "SimulatorExecutor",
    "SyncStats",
    "bell_circuit",
    "calibrate",
    "default_executor",
    "ghz_circuit",
]
