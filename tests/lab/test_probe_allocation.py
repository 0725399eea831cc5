"""The allocation probe: a tiny sweep runs end to end and returns a well-formed result."""

from __future__ import annotations

import pytest

from qpuos.errors import UsageError
from qpuos.lab import probe_allocation as probe
from tests.lab._checks import check_result


def test_tiny_sweep_is_well_formed() -> None:
    fractions: list[float] = []
    result = probe.run(size="tiny", progress=fractions.append)
    check_result(result, probe)
    assert fractions and fractions[-1] == pytest.approx(1.0, abs=0.06)
    assert fractions == sorted(fractions), "progress only moves forward"


def test_unknown_size_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^unknown sweep size 'huge'; use one of "
                                         r"tiny, quick, full$"):
        probe.run(size="huge")  # type: ignore[arg-type]
