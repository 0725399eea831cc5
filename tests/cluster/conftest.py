"""One local Ray session per test module (``ray.init`` takes seconds): 2 CPUs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """A local Ray with two CPUs for this module's tests, shut down after them."""
    ray = pytest.importorskip(
        "ray", reason="ray is not installed (pip install 'qpuos[cluster]'); the Ray-backed "
                      "cluster tests need it")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield ray
    ray.shutdown()
