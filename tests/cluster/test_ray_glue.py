"""Ray on demand: a clear message when it is missing."""

from __future__ import annotations

import sys

import pytest

from qpuos.cluster._ray import ray_available, require_ray
from qpuos.cluster.shards import ShardedSimulator
from qpuos.errors import UsageError


def test_missing_ray_is_a_usage_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    assert not ray_available()
    with pytest.raises(UsageError, match=r"^the cluster layer needs Ray, which is not "
                                         r"installed; install it with: pip install "
                                         r"'qpuos\[cluster\]'$"):
        require_ray()
    with pytest.raises(UsageError, match=r"^the cluster layer needs Ray"):
        ShardedSimulator(shards=2)
    with ShardedSimulator(shards=2, backend="inline") as sim:  # no Ray needed
        assert sim.shards == 2
