"""The image's PID 1: mounts, signals, the staged boot report, self-tests, power-off.

Linux runs ``/init`` from the initramfs as process 1. Ours is a five-line bootstrap
(written by :mod:`qpuos.kernel.boot.image`) that reads the clock, prints
``QPUOS MAIN`` and calls :func:`main`, which:

1. mounts proc, sysfs and devtmpfs (``/dev/uioN`` appears there);
2. reports the kernel's hand-over (the ``Run /init`` record of ``/dev/kmsg``) and the
   runtime's start (Python main minus hand-over);
3. installs its signal handlers: SIGCHLD reaps every exited child (PID 1 inherits all
   orphans), SIGTERM/SIGINT/SIGHUP are recorded (PID 1 gets only the signals it
   handles); a forked child and a self-sent SIGTERM prove both;
4. brings up the qpuos interrupt loop (a timer in a vector table);
5. runs the configured self-test steps (``module:function`` with keyword arguments);
6. prints ``QPUOS SUMMARY ALLOK k/k`` or ``FAILED``, syncs and powers off through
   ``reboot(2)``. QEMU's exit status cannot tell a power-off from a panic, so the
   summary line is the result.

Each stage prints ``QPUOS STAGE <name> OK|FAIL t=<s> dt=<s> <detail>`` on the console,
``t`` being CLOCK_BOOTTIME (seconds since the kernel started).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qpuos._ffi.consts import LINUX_REBOOT_CMD_POWER_OFF
from qpuos.errors import UsageError
from qpuos.kernel._sys_admin import mount, reboot
from qpuos.kernel.boot import selftest

__all__ = ["CONFIG_PATH", "DATA_DIR", "BootConfig", "Step", "format_stage", "main",
           "run_steps"]

CONFIG_PATH = "/etc/qpuos/boot.json"
#: Where the image keeps the data files of its self-test steps (``build_image``'s
#: ``data_files``); steps get their paths in their arguments.
DATA_DIR = "/etc/qpuos/data"
_MOUNTS = (("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"),
           ("devtmpfs", "/dev", "devtmpfs"))


@dataclass(frozen=True, slots=True)
class Step:
    """One self-test step: ``entry`` is ``"module:function"``, called with ``args``."""

    name: str
    entry: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BootConfig:
    """What PID 1 runs: the timer ticks of the loop stage, modules, self-test steps."""

    ticks: int = 20
    modules: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()

    def to_json(self) -> str:
        """The config file's text (sorted keys: part of a reproducible image)."""
        return json.dumps({"ticks": self.ticks, "modules": list(self.modules),
                           "steps": [{"name": s.name, "entry": s.entry, "args": s.args}
                                     for s in self.steps]}, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> BootConfig:
        """Parse a config file written by :meth:`to_json`.

        >>> c = BootConfig(steps=(Step("t", "qpuos.kernel.boot.selftest:timer_loop"),))
        >>> BootConfig.from_json(c.to_json()) == c
        True
        """
        raw = json.loads(text)
        return cls(ticks=int(raw["ticks"]), modules=tuple(raw["modules"]),
                   steps=tuple(Step(s["name"], s["entry"], dict(s["args"]))
                               for s in raw["steps"]))


def format_stage(name: str, ok: bool, t_s: float, dt_s: float, detail: str) -> str:
    """One report line (no newlines in it), as the host's parser reads it.

    >>> format_stage("loop", True, 1.5, 0.25, "20 ticks")
    'QPUOS STAGE loop OK t=1.500 dt=0.250 20 ticks'
    """
    flat = " ".join(detail.split())
    return f"QPUOS STAGE {name} {'OK' if ok else 'FAIL'} t={t_s:.3f} dt={dt_s:.3f} {flat}"


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _resolve(entry: str) -> Callable[..., object]:
    module, sep, func = entry.partition(":")
    if not sep or not module or not func:
        raise UsageError(f"self-test entry {entry!r} is not 'module:function'")
    fn = getattr(importlib.import_module(module), func)
    if not callable(fn):
        raise UsageError(f"self-test entry {entry!r} is not callable")
    return fn  # type: ignore[no-any-return]


def run_steps(steps: tuple[Step, ...], emit: Callable[[str], None]) -> int:
    """Run each step, emitting its stage line; return how many passed.

    A step passes when it returns (its value is the detail) and fails when it raises
    (the detail is ``ExcType: message``); later steps still run.

    >>> lines = []
    >>> run_steps((Step("ok", "os:getcwd"), Step("bad", "os:no_such")), lines.append)
    1
    >>> [line.split()[2:4] for line in lines]
    [['ok', 'OK'], ['bad', 'FAIL']]
    """
    passed = 0
    for step in steps:
        t0 = _boottime()
        try:
            detail, ok = str(_resolve(step.entry)(**step.args)), True
        except Exception as exc:  # a failing step is a report line, not a dead PID 1
            detail, ok = f"{type(exc).__name__}: {exc}", False
        t1 = _boottime()
        emit(format_stage(step.name, ok, t1, t1 - t0, detail))
        passed += ok
    return passed


class _Pid1:
    """The signal and child bookkeeping of process 1."""

    def __init__(self) -> None:
        self.reaped: dict[int, int] = {}
        self.caught: list[str] = []

    def on_child(self, _signo: int, _frame: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.reaped[pid] = os.waitstatus_to_exitcode(status)

    def on_term(self, signo: int, _frame: object) -> None:
        self.caught.append(signal.Signals(signo).name)

    def install(self) -> None:
        signal.signal(signal.SIGCHLD, self.on_child)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_term)

    def prove(self) -> str:
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while (pid not in self.reaped or not self.caught) and time.monotonic() < deadline:
            time.sleep(0.001)
        if self.reaped.get(pid) != 7 or "SIGTERM" not in self.caught:
            raise UsageError(f"child {pid} reaped as {self.reaped.get(pid)} (want 7), "
                             f"signals caught {self.caught} (want SIGTERM)")
        return f"child {pid} reaped with status 7; SIGTERM caught"


def _mount_all() -> str:
    for source, target, fstype in _MOUNTS:
        os.makedirs(target, exist_ok=True)
        try:
            mount(source, target, fstype)
        except OSError as exc:
            if exc.errno != 16:  # EBUSY: already mounted (the kernel may automount /dev)
                raise
    return "mounted " + ", ".join(t for _, t, _ in _MOUNTS)


def _handover_s() -> float | None:
    """The printk time of ``Run /init as init process`` (quiet keeps it in the log)."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                rec = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return None
            except BrokenPipeError:  # a record was overwritten: skip on
                continue
            head, _, msg = rec.partition(";")
            if msg.startswith("Run /init"):
                return int(head.split(",")[2]) / 1e6
    finally:
        os.close(fd)


def main(t_main: float, config_path: str = CONFIG_PATH) -> None:
    """PID 1's body: the stages, the self-tests, the summary, then power-off.

    Args:
        t_main: CLOCK_BOOTTIME when Python's main began (the bootstrap's first line).
        config_path: the image's :class:`BootConfig` file.
    """
    def emit(line: str) -> None:
        print(line, flush=True)

    total = passed = 0

    def stage(name: str, fn: Callable[[], str]) -> None:
        nonlocal total, passed
        t0 = _boottime()
        try:
            detail, ok = fn(), True
        except Exception as exc:  # reported on the console; PID 1 must not die
            detail, ok = f"{type(exc).__name__}: {exc}", False
        t1 = _boottime()
        emit(format_stage(name, ok, t1, t1 - t0, detail))
        total += 1
        passed += ok

    pid1 = _Pid1()
    try:
        stage("mounts", _mount_all)
        handover = _handover_s()
        stage("kernel", lambda: f"handed over to /init at {handover:.3f} s"
              if handover is not None else "handed over (no Run /init record in kmsg)")
        start_ms = (t_main - handover) * 1e3 if handover is not None else float("nan")
        stage("runtime", lambda: f"python main at {t_main:.3f} s, {start_ms:.0f} ms "
              "after hand-over")
        pid1.install()
        stage("signals", pid1.prove)
        with open(config_path) as f:
            config = BootConfig.from_json(f.read())
        if config.modules:
            stage("modules", lambda: selftest.load_modules(paths=list(config.modules)))
        stage("loop", lambda: selftest.timer_loop(ticks=config.ticks))
        passed += run_steps(config.steps, emit)
        total += len(config.steps)
    except BaseException as exc:  # the summary must still come out, then power-off
        emit(f"QPUOS ERROR {type(exc).__name__}: {exc}")
        total += 1
    verdict = "ALLOK" if passed == total else "FAILED"
    emit(f"QPUOS SUMMARY {verdict} {passed}/{total} t={_boottime():.3f}")
    os.sync()
    reboot(LINUX_REBOOT_CMD_POWER_OFF)
