"""Ray, imported on demand and started on demand.

``import qpuos.cluster`` must stay cheap and work without Ray installed (Ray is the
``cluster`` extra), so every use goes through :func:`require_ray`, which imports it or
says how to install it, and :func:`ensure_ray`, which starts a local Ray (or connects
to ``address``) the first time a cluster object needs one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from qpuos.errors import ClusterError, UsageError

__all__ = ["ensure_ray", "ray_available", "require_ray"]


def ray_available() -> bool:
    """Whether Ray can be imported here (found without importing it: importing decides
    which address a local Ray binds to, see :func:`ensure_ray`)."""
    import importlib.util

    if "ray" in sys.modules:  # imported already, or blocked (None)
        return sys.modules["ray"] is not None
    return importlib.util.find_spec("ray") is not None


def require_ray() -> Any:
    """The ``ray`` module, or a ``UsageError`` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("the cluster layer needs Ray, which is not installed; "
                         "install it with: pip install 'qpuos[cluster]'") from exc
    return ray


_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ensure_ray(*, address: str | None = None, num_cpus: int | None = None) -> Any:
    """Start (or join) Ray once per process; returns the ``ray`` module.

    With no ``address`` a local Ray starts on this machine with ``num_cpus`` CPUs (the
    machine's count when omitted). An already initialised Ray is used as it is.

    Raises:
        UsageError: Ray is not installed.
        ClusterError: Ray could not start, or nothing answered at ``address``.
    """
    if address is None and "ray" not in sys.modules:
        # Ray binds a local cluster to the machine's outward address unless told it
        # is a single-machine one; this keeps its traffic on loopback.
        os.environ.setdefault(_SINGLE_MACHINE_ENV, "0")
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING",
                              "log_to_driver": False}
    if address is None:
        kwargs["num_cpus"] = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address!r}" if address else "locally"
        raise ClusterError(f"could not start or reach Ray {where}: {exc}; check the "
                           "address (`ray status` on the head node) or start Ray "
                           "with `ray start --head`") from exc
    return ray
