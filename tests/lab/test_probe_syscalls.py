"""The syscalls probe: a tiny sweep runs end to end and returns a well-formed result."""

from __future__ import annotations

import pytest

from qpuos.errors import UsageError
from qpuos.lab import probe_syscalls as probe
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


def test_calls_are_counted_one_per_batch() -> None:
    if probe.read_syscw() is None:
        pytest.skip("/proc/self/io is not readable here: calls cannot be counted")
    result = probe.run(size="tiny")
    counted = {p.title: p for p in result.panels}["system calls per record, counted in "
                                                 "/proc/self/io"]
    for s in counted.series:
        per_record = dict(zip(s.x, s.medians(), strict=True))
        wrong = {b: v for b, v in per_record.items() if not 1 / b <= v <= 1 / b + 0.05}
        assert wrong == {}, f"{s.label}: calls per record off 1/B at {wrong}"
