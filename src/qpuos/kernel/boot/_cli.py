"""``qpuos boot``: build the controller's OS image and boot it under QEMU.

For ``qpuos/cli.py`` to mount (``add_boot_parser(sub)``). Thin: parse, call
:func:`~qpuos.kernel.boot.image.build_image` or :func:`~qpuos.kernel.boot.qemu.boot`,
print. Errors propagate to the CLI's one handler (``ClassName: message``, exit 2); a
boot whose stages did not all pass raises :class:`BootFailed` after printing them.

Besides this layer's own steps (:func:`default_steps`), the image carries the self-tests
of the layers above (:data:`PROVIDERS`): the ``circuit`` stage (a program compiled on
the host, executed in the guest) and the ``kprobe`` stage. They are named as
``module:function`` strings, exactly as PID 1 names its steps, so this layer imports
nothing above it; each provider runs on the host at build time and returns its step and
the data files the image must carry for it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from qpuos._argtypes import positive_float
from qpuos.errors import BootFailed, ImageError, UsageError

if TYPE_CHECKING:
    from qpuos.kernel.boot.init import Step

__all__ = ["DEFAULT_IMAGE_DIR", "PROVIDERS", "add_boot_parser", "default_steps",
           "provided_steps"]

DEFAULT_IMAGE_DIR = "out/boot"
_SELFTEST = "qpuos.kernel.boot.selftest"
#: Step providers of the layers above the kernel: ``fn(data_dir=...) -> (Step, files)``.
PROVIDERS = ("qpuos.device.guest_program:boot_step", "qpuos.bpf.guest_checks:boot_step")


def default_steps(*, irqs: int = 20) -> list[tuple[str, str, dict[str, Any]]]:
    """The self-test steps ``qpuos boot build`` puts in the image by default.

    >>> [name for name, _, _ in default_steps()]
    ['edu-registers', 'edu-irqs']
    """
    return [("edu-registers", f"{_SELFTEST}:edu_registers", {}),
            ("edu-irqs", f"{_SELFTEST}:edu_irqs", {"n": irqs})]


def provided_steps(providers: tuple[str, ...] = PROVIDERS
                   ) -> tuple[list[Step], dict[str, bytes]]:
    """Run each step provider on the host: the steps and the data files they need.

    Args:
        providers: ``module:function`` names, each called as ``fn(data_dir=DATA_DIR)``
            and returning ``(Step, {file name: bytes})``.

    Returns:
        The steps in order and all their data files.

    Raises:
        UsageError: a provider name does not resolve, or two providers write the same
            data file.

    >>> provided_steps(())
    ([], {})
    """
    from qpuos.kernel.boot.init import DATA_DIR, _resolve

    steps: list[Step] = []
    files: dict[str, bytes] = {}
    for entry in providers:
        step, data = cast("tuple[Step, dict[str, bytes]]",
                          _resolve(entry)(data_dir=DATA_DIR))
        clash = sorted(set(files) & set(data))
        if clash:
            raise UsageError(f"step provider {entry} writes data file(s) {clash} that "
                             "another provider wrote; give them distinct names")
        steps.append(step)
        files.update(data)
    return steps, files


def _cmd_build(args: argparse.Namespace) -> int:
    from qpuos.kernel.boot.image import build_image, find_kernel
    from qpuos.kernel.boot.init import BootConfig, Step

    kernel = find_kernel(args.cache)
    if kernel is None:
        raise ImageError("no kernel cache (vmlinuz and the uio modules) found; run "
                         "scripts/ci_boot_deps.sh or pass --cache DIR")
    extra = {Path(p).stem: Path(p).read_text() for p in args.extra_module}
    steps = [Step(n, e, a) for n, e, a in default_steps(irqs=args.irqs)]
    above, data = provided_steps(() if args.kernel_only else PROVIDERS)
    steps += above
    steps += [Step(entry.partition(":")[2] or entry, entry) for entry in args.step]
    config = BootConfig(ticks=args.ticks, modules=("/lib/modules/uio.ko",
                                                   "/lib/modules/uio_pci_generic.ko"),
                        steps=tuple(steps))
    report = build_image(args.out, config, kernel=kernel, extra_modules=extra,
                         data_files=data)
    print(report.summary())
    if args.verbose:
        for f in report.files:
            print(f"  {f.size:>9,}  {f.path}  ({f.why})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qpuos.kernel.boot.image import find_kernel
    from qpuos.kernel.boot.qemu import boot

    kernel = find_kernel(args.cache)
    if kernel is None:
        raise ImageError("no kernel cache found; run scripts/ci_boot_deps.sh or pass "
                         "--cache DIR")

    def show(t: float, line: str) -> None:
        at = line.find("QPUOS")
        if args.console or at >= 0:
            print(f"{t:7.2f}s  {line if args.console else line[at:]}", flush=True)

    result = boot(args.image, kernel, timeout_s=args.timeout, on_line=show)
    main_at = (f"{result.boot_to_main_s:.2f} s" if result.boot_to_main_s is not None
               else "never")
    print(f"boot-to-main {main_at}, QEMU ran {result.wall_s:.2f} s")
    if not result.ok:
        failed = [s.name for s in result.stages if not s.ok]
        why = (f"stages failed: {', '.join(failed)}" if failed else
               "timed out" if result.timed_out else "no summary line (did PID 1 die?)")
        tail = " | ".join(result.log.splitlines()[-3:])
        raise BootFailed(f"boot of {args.image} failed: {why}; last console lines: {tail}"
                         "; rerun with --console for the whole log")
    return 0


def add_boot_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``qpuos boot build`` and ``qpuos boot run`` to the CLI's subcommands.

    >>> p = argparse.ArgumentParser(prog="qpuos")
    >>> add_boot_parser(p.add_subparsers(dest="command"))
    >>> p.parse_args(["boot", "run", "--timeout", "30"]).timeout
    30.0
    """
    boot = sub.add_parser("boot", help="build and boot the controller's OS image (QEMU)",
                          description="The controller's OS image: a trimmed Python as "
                                      "PID 1, booted under QEMU with the edu PCI device.")
    bsub = boot.add_subparsers(dest="boot_command", metavar="ACTION", required=True)
    b = bsub.add_parser("build", help="write the initramfs (reproducible)",
                        description="Write DIR/initramfs.cpio.gz: python3.11, its libraries, "
                                    "the stdlib modules PID 1 imports, qpuos, the uio "
                                    "modules and the self-test config.")
    b.add_argument("--out", default=DEFAULT_IMAGE_DIR, metavar="DIR",
                   help=f"output folder (default {DEFAULT_IMAGE_DIR})")
    b.add_argument("--cache", default=None, metavar="DIR",
                   help="kernel cache (default $QPUOS_BOOT_CACHE or .cache/boot)")
    b.add_argument("--irqs", type=int, default=20, help="edu interrupts to count (20)")
    b.add_argument("--ticks", type=int, default=20, help="timer ticks of the loop (20)")
    b.add_argument("--kernel-only", action="store_true",
                   help="leave out the steps of the layers above the kernel (circuit, "
                        "kprobe)")
    b.add_argument("--step", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="an extra self-test step (repeatable)")
    b.add_argument("--extra-module", action="append", default=[], metavar="FILE.py",
                   help="a Python file to carry as a top-level module (repeatable)")
    b.add_argument("-v", "--verbose", action="store_true",
                   help="list every file with its size and why it is included")
    b.set_defaults(func=_cmd_build)
    r = bsub.add_parser("run", help="boot the image and check every stage",
                        description="Boot DIR/initramfs.cpio.gz under QEMU (TCG) with the "
                                    "edu device; exit 0 only if every stage passed.")
    r.add_argument("--image", default=DEFAULT_IMAGE_DIR, metavar="DIR",
                   help=f"image folder (default {DEFAULT_IMAGE_DIR})")
    r.add_argument("--cache", default=None, metavar="DIR", help="kernel cache folder")
    r.add_argument("--timeout", type=positive_float, default=120.0, metavar="S",
                   help="kill QEMU after S seconds (default 120)")
    r.add_argument("--console", action="store_true", help="print the whole console")
    r.set_defaults(func=_cmd_run)
