"""``qpuos bench boot``: the controller's OS image, trimmed against the full stdlib.

Builds the default image (the probed stdlib modules; every stage ``qpuos boot build``
puts in, the circuit and kprobe stages included) and the anchor (the same image
carrying the whole stdlib), then boots each under QEMU TCG, interleaved, ``--boots``
times (median of 3; 1 with ``--quick``). Reports the image sizes, QEMU start ->
Python main on the host's clock, the runtime's start inside the guest (Python main
minus the kernel's ``Run /init``), and each stage's guest time. Targets (issue 11):
initramfs + kernel <= 20 MB, QEMU start -> Python main <= 5 s on TCG, runtime start
<= 300 ms. Needs ``scripts/ci_boot_deps.sh``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

from _common import BenchRecord
from qpuos.kernel.boot._cli import default_steps, provided_steps
from qpuos.kernel.boot.image import ImageReport, build_image, find_kernel
from qpuos.kernel.boot.init import BootConfig, Step
from qpuos.kernel.boot.qemu import BootResult, boot, qemu_binary

_RUNTIME = re.compile(r"(\d+) ms after hand-over")
IMPLS = ("qpuos trimmed stdlib", "anchor: full stdlib")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench boot``."""
    p = argparse.ArgumentParser(prog="qpuos bench boot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_boot.json"),
                   help="where to write the results (default out/bench_boot.json)")
    p.add_argument("--boots", type=int, default=3, help="boots per image (default 3)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per boot")
    p.add_argument("--quick", action="store_true", help="one boot per image")
    args = p.parse_args(argv)
    if args.quick:
        args.boots = 1
    kernel = find_kernel()
    if kernel is None or qemu_binary() is None:
        print("UsageError: QEMU or the kernel cache is missing; run "
              "scripts/ci_boot_deps.sh", file=sys.stderr)
        return 2
    if args.boots < 1:
        print("UsageError: --boots must be >= 1", file=sys.stderr)
        return 2

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rec = BenchRecord("boot")
    above, data = provided_steps()  # circuit (compiled here, on the host) and kprobe
    config = BootConfig(modules=("/lib/modules/uio.ko", "/lib/modules/uio_pci_generic.ko"),
                        steps=(*(Step(*s) for s in default_steps()), *above))
    kernel_bytes = kernel.vmlinuz.stat().st_size
    with tempfile.TemporaryDirectory(prefix="qpuos-bench-boot-") as tmp:
        images: dict[str, tuple[Path, ImageReport]] = {}
        for impl, full in zip(IMPLS, (False, True), strict=True):
            folder = Path(tmp) / ("full" if full else "trimmed")
            images[impl] = (folder, build_image(folder, config, kernel=kernel,
                                                data_files=data, full_stdlib=full))
        results: dict[str, list[BootResult]] = {impl: [] for impl in IMPLS}
        with console.status("") as status:
            for r in range(args.boots):
                for i in range(len(IMPLS)):  # interleaved, rotated each round
                    impl = IMPLS[(i + r) % len(IMPLS)]
                    status.update(f"boot {r + 1}/{args.boots}: {impl}")
                    results[impl].append(boot(images[impl][0], kernel,
                                              timeout_s=args.timeout))

    table = Table(title=f"boot under QEMU TCG, median of {args.boots}")
    for col in ("image", "initramfs MB", "+ kernel MB", "QEMU -> main s",
                "runtime start ms", "all stages ok"):
        table.add_column(col, justify="left" if col == "image" else "right")
    summary: dict[str, tuple[float, float, float]] = {}
    for impl in IMPLS:
        report = images[impl][1]
        runs = results[impl]
        mains = [b.boot_to_main_s for b in runs if b.boot_to_main_s is not None]
        starts = [float(m.group(1)) for b in runs if (s := b.stage("runtime"))
                  and (m := _RUNTIME.search(s.detail))]
        total_mb = (report.compressed_bytes + kernel_bytes) / 1e6
        rec.add(impl, "initramfs_gzip_bytes", report.compressed_bytes, "B")
        rec.add(impl, "initramfs_raw_bytes", report.raw_bytes, "B")
        rec.add(impl, "image_with_kernel_mb", round(total_mb, 2), "MB")
        rec.add(impl, "boot_to_main_s", round(_median(mains), 3), "s", samples=len(mains))
        rec.add(impl, "runtime_start_ms", _median(starts), "ms", samples=len(starts))
        rec.add(impl, "boots_all_ok", sum(b.ok for b in runs), "boots", of=len(runs))
        for name in [s.name for s in runs[0].stages]:
            ts = [s.t_s for b in runs if (s := b.stage(name))]
            dts = [s.dt_s for b in runs if (s := b.stage(name))]
            rec.add(impl, f"stage_{name}_t_s", round(_median(ts), 3), "s")
            rec.add(impl, f"stage_{name}_dt_s", round(_median(dts), 3), "s")
        summary[impl] = (total_mb, _median(mains), _median(starts))
        table.add_row(impl, f"{report.compressed_bytes / 1e6:.2f}", f"{total_mb:.2f}",
                      f"{_median(mains):.2f}", f"{_median(starts):.0f}",
                      f"{sum(b.ok for b in runs)}/{len(runs)}")
    console.print(table)
    stages = Table(title="stages of the trimmed image (guest CLOCK_BOOTTIME, median)")
    for col in ("stage", "t s", "took s", "detail (last boot)"):
        stages.add_column(col)
    for s in results[IMPLS[0]][-1].stages:
        t_med = _median([x.t_s for b in results[IMPLS[0]] if (x := b.stage(s.name))])
        dt_med = _median([x.dt_s for b in results[IMPLS[0]] if (x := b.stage(s.name))])
        stages.add_row(s.name, f"{t_med:.3f}", f"{dt_med:.3f}", s.detail[:70])
    console.print(stages)
    size, main_s, start_ms = summary[IMPLS[0]]
    rec.target("image (initramfs + kernel) <= 20 MB", round(size, 2), 20.0, "MB")
    rec.target("QEMU start -> Python main <= 5 s (TCG)", round(main_s, 3), 5.0, "s")
    rec.target("runtime start in the guest <= 300 ms", start_ms, 300.0, "ms")
    rec.print_targets(console)
    rec.write(args.json, {"boots": args.boots, "kernel": kernel.vmlinuz.name})
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
