"""The scenario table from benchmark JSON files."""

from __future__ import annotations

import json
from pathlib import Path

from qpuos.lab.scenarios import SCENARIOS, load_scenarios


def _bench(folder: Path, file: str, name: str, met: list[bool]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / file).write_text(json.dumps({
        "benchmark": name, "command": f"qpuos bench {name}",
        "results": [{"impl": "qpuos", "metric": "m", "value": 1, "unit": "x"},
                    {"impl": "anchor", "metric": "m", "value": 2, "unit": "x"}],
        "targets": [{"name": f"t{i}", "measured": i, "goal": 1, "unit": "x", "met": m}
                    for i, m in enumerate(met)]}))


def test_rows_and_verdicts(tmp_path: Path) -> None:
    _bench(tmp_path, "bench_ring.json", "ring", [True, True])
    _bench(tmp_path, "bench_heap.json", "heap", [True, False])
    _bench(tmp_path, "bench_irq.json", "irq", [False])
    _bench(tmp_path, "bench_route_makespan.json", "route", [False])
    _bench(tmp_path, "bench_route.json", "route", [True])
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"no": "benchmark"}')
    table = {s.name: s for s in load_scenarios(tmp_path)}
    assert [s.name for s in load_scenarios(tmp_path)] == [n for n, _ in SCENARIOS]
    verdicts = {n: s.verdict() for n, s in table.items()}
    assert (verdicts["ring"], verdicts["heap"], verdicts["irq"], verdicts["route"]) == \
        ("yes", "partly", "no", "yes")
    assert table["route"].source == str(tmp_path / "bench_route.json")
    assert table["ring"].anchors == ("qpuos", "anchor")
    assert table["ring"].rows[1].measured == 1.0
    assert table["gc"].source is None
    assert table["gc"].command == f"qpuos bench gc --json {tmp_path / 'bench_gc.json'}"


def test_missing_folder_means_nothing_run(tmp_path: Path) -> None:
    assert {s.verdict() for s in load_scenarios(tmp_path / "absent")} == {"not run"}
