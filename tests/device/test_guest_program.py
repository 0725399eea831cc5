"""The host side of the guest's circuit self-test: the program and the boot step."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qpuos.device.guest_exec import circuit_check, execute
from qpuos.device.guest_program import boot_step, prepare_program
from qpuos.errors import VerificationError
from qpuos.quantum.isa import RECORD, Opcode


def test_the_ghz_program_needs_a_swap_and_defers_a_measurement() -> None:
    program = prepare_program()
    recs = np.frombuffer(program.records, dtype=RECORD)
    assert int((recs["opcode"] == Opcode.SWAP).sum()) == program.expected["swaps"] >= 1
    got = execute(program.records)
    assert got.swaps >= 1 and got.qubits == (0, 1, 2, 3)
    probs = got.probabilities
    assert math.isclose(probs[0], 0.5) and math.isclose(probs[15], 0.5)
    assert sum(probs) == pytest.approx(1.0) and max(probs[1:15]) < 1e-12


def _step_files(tmp_path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    step, files = boot_step(data_dir=str(tmp_path))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert step.name == "circuit" and step.entry == "qpuos.device.guest_exec:circuit_check"
    return step.args, files


def test_the_boot_step_passes_on_what_the_host_wrote(tmp_path: Path) -> None:
    args, _ = _step_files(tmp_path)
    detail = circuit_check(**args)
    assert detail.startswith("GHZ-4 compiled on the host for line:4 (10 records, 1 swap), "
                             "simulated in the guest: max |dp| ")
    assert float(detail.rsplit(" ", 1)[1]) < 1e-9


def test_a_wrong_expected_table_fails_the_step(tmp_path: Path) -> None:
    args, files = _step_files(tmp_path)
    wrong = json.loads(files["circuit.expected.json"])
    wrong["probabilities"][3] = 0.3   # outcome 0011, which a GHZ state never shows
    Path(args["expected"]).write_text(json.dumps(wrong))
    with pytest.raises(VerificationError, match=r"^outcome 0011: guest probability 0, "
                                                r"host 0\.3 \(\|dp\| 0\.3 > 1e-09\)"):
        circuit_check(**args)

