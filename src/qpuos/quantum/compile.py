"""The compile pipeline: circuit in, verified, routed and timed schedule out.

Steps (``compile_circuit``):

1. decompose gates on three or more qubits into one- and two-qubit gates;
2. check the circuit fits the device;
3. exact peephole optimisation of what will be routed (``optimize.optimize_logical``);
4. layout and routing (``routing.SabreRouter``);
5. exact peephole optimisation of the routed circuit (``optimize.optimize_physical``);
6. duration-aware scheduling (``timing.schedule``, ALAP by default);
7. independent verification (``verify.verify_routed``), timed separately so compile
   time compares fairly with compilers that do not verify.

Steps 3 to 6 are what ``compile_seconds`` measures; parsing is excluded.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Literal

from qpuos.errors import VerificationError
from qpuos.quantum.circuit import Circuit
from qpuos.quantum.decompose import decompose_multiqubit
from qpuos.quantum.device import Device, require_fits
from qpuos.quantum.optimize import optimize_logical, optimize_physical
from qpuos.quantum.routing import RoutedCircuit, RoutingOptions, SabreRouter, warm_up
from qpuos.quantum.timing import Schedule, schedule
from qpuos.quantum.verify import VerifyReport, verify_routed

__all__ = ["CompileResult", "compile_circuit"]


@dataclass(frozen=True, slots=True)
class CompileResult:
    """Everything one compile produced.

    Attributes:
        device: the target.
        logical: the input after multi-qubit decomposition.
        routed: layouts, SWAP count and the physical circuit as routed.
        circuit: the final physical circuit (``routed.circuit`` after optimisation).
        schedule: start times of every instruction of ``circuit``.
        verification: the checker's report, or ``None`` when verification was skipped.
        compile_seconds: layout + routing + timing wall time.
        options: the routing options used.
    """

    device: Device
    logical: Circuit
    routed: RoutedCircuit
    circuit: Circuit
    schedule: Schedule
    verification: VerifyReport | None
    compile_seconds: float
    options: RoutingOptions
    durations_nominal: bool

    def report(self) -> dict[str, Any]:
        """The JSON report ``qpuos compile --report`` writes."""
        c = self.circuit
        v = self.verification
        return {
            "device": self.device.name,
            "num_logical_qubits": self.logical.num_qubits,
            "num_physical_qubits": self.device.num_qubits,
            "swaps": self.routed.swaps,
            "depth": c.depth(),
            "two_qubit_depth": c.depth(two_qubit_only=True),
            "input_depth": self.logical.depth(),
            "input_two_qubit_depth": self.logical.depth(two_qubit_only=True),
            "makespan_ns": self.schedule.makespan_ns,
            "schedule_policy": self.schedule.policy,
            "durations_nominal": self.durations_nominal,
            "initial_layout": list(self.routed.initial_layout),
            "final_layout": list(self.routed.final_layout),
            "layout_method": self.routed.layout_method,
            "num_two_qubit_gates": c.num_two_qubit_gates,
            "input_num_two_qubit_gates": self.logical.num_two_qubit_gates,
            "compile_seconds": self.compile_seconds,
            "verified": bool(v and v.ok),
            "verify_method": v.method if v else None,
            "verify_seconds": v.seconds if v else 0.0,
            "verify_detail": v.detail if v else "verification skipped (--no-verify)",
            "seed": self.options.seed,
            "objective": self.options.objective,
            "layout_trials": self.routed.layout_trials,
        }


def compile_circuit(circuit: Circuit, device: Device, *,
                    options: RoutingOptions | None = None, verify: bool = True,
                    optimize: bool = True, policy: Literal["asap", "alap"] = "alap"
                    ) -> CompileResult:
    """Compile ``circuit`` for ``device``: decompose, route, schedule, verify.

    Args:
        circuit: the logical circuit (any standard gates, measures, conditions).
        device: the target coupling graph with its figures.
        options: routing options (seed, trials, objective...).
        verify: run the independent checker (on by default).
        optimize: run the exact peephole passes before and after routing.
        policy: ``"alap"`` or ``"asap"`` scheduling.

    Raises:
        TopologyError: the circuit is wider than the device or the device is unusable.
        VerificationError: the checker rejected the result (a bug: please report it).

    >>> from qpuos.quantum.device import line_device
    >>> c = Circuit(num_qubits=3)
    >>> c.append("ccx", [0, 1, 2])
    >>> r = compile_circuit(c, line_device(3))
    >>> r.verification.ok, r.routed.swaps >= 0
    (True, True)
    """
    options = options or RoutingOptions()
    logical = decompose_multiqubit(circuit)  # 1.
    require_fits(device, logical.num_qubits)  # 2.
    warm_up()  # numba's one-time compile stays out of the timing
    t0 = time.perf_counter()
    router = SabreRouter(device, options)
    to_route = optimize_logical(logical) if optimize else logical  # 3.
    routed = router.route(to_route)  # 4.
    final = optimize_physical(routed.circuit) if optimize else routed.circuit  # 5.
    timed = schedule(final, router.model, policy=policy)  # 6.
    compile_seconds = time.perf_counter() - t0
    report = _verify(logical, to_route, routed, final, device, options.seed) if verify else None
    if report is not None and not report.ok:  # 7.
        raise VerificationError(f"compiled circuit failed verification: {report.detail}; "
                                "this is a bug in qpuos, please report it with the input")
    return CompileResult(device, logical, routed, final, timed, report, compile_seconds,
                         options, router.model.nominal)


def _verify(logical: Circuit, to_route: Circuit, routed: RoutedCircuit, final: Circuit,
            device: Device, seed: int) -> VerifyReport:
    """Check the router's bookkeeping structurally, then the final output end to end.

    The structural check compares the routed circuit with what was routed, gate for gate;
    the statevector check (up to 20 qubits) compares the final, optimised output with the
    decomposed input, so it also covers the optimiser (whose rewrites are each checked
    locally as they are made).
    """
    init, end = routed.initial_layout, routed.final_layout
    first = verify_routed(to_route, routed.circuit, edges=device.edges, seed=seed,
                          initial_layout=init, final_layout=end, statevector=False)
    if not first.ok:
        return first
    second = verify_routed(logical, final, edges=device.edges, seed=seed, initial_layout=init,
                           final_layout=end, structural=False)
    method = "structural+statevector" if second.method == "statevector" else "structural"
    return dataclasses.replace(
        second, ok=second.ok, method=method,
        detail=f"router: {first.detail}; output: {second.detail}",
        seconds=first.seconds + second.seconds)
