"""The image builder: contents, the trimmed stdlib suffices, reproducible bytes."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from qpuos.errors import ImageError, UsageError
from qpuos.kernel.boot._cli import provided_steps
from qpuos.kernel.boot.image import (
    IMAGE_NAME,
    PYTHON,
    ImageReport,
    build_image,
    find_kernel,
    probe_imports,
)
from qpuos.kernel.boot.init import BootConfig, Step
from qpuos.kernel.boot.initramfs import Entry, read_cpio

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason=f"{PYTHON} is absent "
                                "(scripts/ci_boot_deps.sh installs it)")

PROVIDED, DATA = provided_steps()
CONFIG = BootConfig(steps=(Step("loop2", "qpuos.kernel.boot.selftest:timer_loop",
                                {"ticks": 2}), *PROVIDED))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageReport, dict[str, Entry]]:
    report = build_image(tmp_path_factory.mktemp("img"), CONFIG, kernel=find_kernel(),
                         data_files=DATA)
    entries = {e.name: e for e in read_cpio(gzip.decompress(report.path.read_bytes()))}
    return report, entries


def test_image_holds_the_runtime_the_bootstrap_and_the_device_nodes(
        image: tuple[ImageReport, dict[str, Entry]]) -> None:
    report, entries = image
    needed = {"init", "usr/bin/python3.11", "usr/lib/python311.zip", "usr/lib/qpuos.zip",
              "usr/lib/python3.11/os.py", "etc/qpuos/boot.json", "lib64/ld-linux-x86-64.so.2",
              "lib/x86_64-linux-gnu/libc.so.6", "dev/console", "dev/urandom", "proc", "sys"}
    assert needed - set(entries) == set()
    assert entries["init"].data.startswith(b"#!/usr/bin/python3.11 -IS\n")
    assert entries["init"].mode & 0o111 and entries["usr/bin/python3.11"].mode & 0o111
    assert stat.S_ISCHR(entries["dev/console"].mode) and entries["dev/console"].rdev == (5, 1)
    assert entries["dev/urandom"].rdev == (1, 9)
    assert BootConfig.from_json(entries["etc/qpuos/boot.json"].data.decode()) == CONFIG
    assert report.compressed_bytes == report.path.stat().st_size
    assert report.raw_bytes > report.compressed_bytes


def test_trimmed_stdlib_has_what_pid1_imports_and_not_numpy(
        image: tuple[ImageReport, dict[str, Entry]]) -> None:
    _, entries = image
    stdlib = zipfile.ZipFile(BytesIO(entries["usr/lib/python311.zip"].data)).namelist()
    ours = zipfile.ZipFile(BytesIO(entries["usr/lib/qpuos.zip"].data)).namelist()
    assert {"encodings/__init__.pyc", "encodings/utf_8.pyc", "ctypes/__init__.pyc",
            "signal.pyc", "json/__init__.pyc"} - set(stdlib) == set()
    assert {"qpuos/kernel/boot/init.pyc", "qpuos/kernel/irq.pyc", "qpuos/kernel/_epoll.pyc",
            "qpuos/_ffi/libc.pyc", "qpuos/kernel/mmio.pyc", "qpuos/kernel/_mmio_map.pyc",
            "qpuos/kernel/_mmio_file.pyc"} - set(ours) == set()
    # frozen modules live in the interpreter; numpy-bound modules must stay out
    assert {"os.pyc", "io.pyc", "abc.pyc"} & set(stdlib) == set()
    assert {"qpuos/device/guest_exec.pyc", "qpuos/quantum/_isa_layout.pyc",
            "qpuos/bpf/guest_checks.pyc"} - set(ours) == set()
    heavy = ("qpuos/kernel/mheap", "qpuos/kernel/atomics", "qpuos/quantum/isa.",
             "qpuos/quantum/statevector", "qpuos/quantum/compile", "qpuos/bpf/btf",
             "qpuos/device/driver", "numpy")
    assert [n for n in ours if n.startswith(heavy)] == []
    assert [n for n in entries if "numpy" in n or "numba" in n or "llvmlite" in n] == []


def test_every_file_says_why_it_is_there(image: tuple[ImageReport, dict[str, Entry]]) -> None:
    report, _ = image
    kinds = {f.why.split(":")[0] for f in report.files}
    assert kinds >= {"runtime", "library", "stdlib", "qpuos", "extension", "init", "config"}
    ctypes_ext = [f for f in report.files if "_ctypes" in f.path]
    assert [f.why for f in ctypes_ext] == ["extension: _ctypes, imported by ctypes"]
    assert "stdlib" in report.summary() and "MB gzip" in report.summary()


def test_the_zipped_modules_alone_run_the_self_test_under_the_target_python(
        image: tuple[ImageReport, dict[str, Entry]], tmp_path: Path) -> None:
    """The kernel loop and the circuit stage, from the image's zips and data alone."""
    _, entries = image
    for name in ("python311.zip", "qpuos.zip"):
        (tmp_path / name).write_bytes(entries[f"usr/lib/{name}"].data)
    args = dict(next(s for s in CONFIG.steps if s.name == "circuit").args)
    for key in ("records", "expected"):  # the image's data files, moved under tmp_path
        image_path = args[key]
        (tmp_path / Path(image_path).name).write_bytes(entries[image_path.lstrip("/")].data)
        args[key] = str(tmp_path / Path(image_path).name)
    code = (f"import sys, types; sys.path[:] = [{str(tmp_path / 'python311.zip')!r}, "
            f"{str(tmp_path / 'qpuos.zip')!r}, '/usr/lib/python3.11/lib-dynload']\n"
            "import qpuos\n"
            "sys.modules['qpuos.kernel'] = qpuos.kernel = types.ModuleType('qpuos.kernel')\n"
            f"qpuos.kernel.__path__ = [{str(tmp_path / 'qpuos.zip')!r} + '/qpuos/kernel']\n"
            "for layer in ('quantum', 'device', 'bpf'):\n"
            "    m = sys.modules['qpuos.' + layer] = types.ModuleType('qpuos.' + layer)\n"
            f"    m.__path__ = [{str(tmp_path / 'qpuos.zip')!r} + '/qpuos/' + layer]\n"
            "from qpuos.kernel.boot import selftest\n"
            "print(selftest.timer_loop(ticks=3))\n"
            "from qpuos.device.guest_exec import circuit_check\n"
            "import qpuos.bpf.guest_checks\n"
            f"print(circuit_check(**{args!r}))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('numpy', 'numba'))))\n")
    out = subprocess.run([PYTHON, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert out[0].startswith("3 timer interrupts") and out[2] == "[]"
    assert out[1].startswith("GHZ-4 compiled on the host for line:4 (")


def test_data_files_lie_under_the_data_dir(
        image: tuple[ImageReport, dict[str, Entry]]) -> None:
    report, entries = image
    assert {f"etc/qpuos/data/{n}" for n in DATA} <= set(entries)
    assert all(entries[f"etc/qpuos/data/{n}"].data == d for n, d in DATA.items())
    assert {f.why for f in report.files if f.path.startswith("etc/qpuos/data/")} == {
        "data: read by a self-test step"}


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", ".hidden"])
def test_a_data_file_name_must_be_plain(image_dir: Path, name: str) -> None:
    with pytest.raises(UsageError, match=r"^data file name .* is not a plain file name"):
        build_image(image_dir, CONFIG, data_files={name: b"x"})
    assert not image_dir.exists()


def test_two_builds_give_the_same_bytes(image: tuple[ImageReport, dict[str, Entry]],
                                        image_dir: Path) -> None:
    report, _ = image
    again = build_image(image_dir, CONFIG, kernel=find_kernel(), data_files=DATA)
    assert again.path.name == IMAGE_NAME
    assert again.sha256 == report.sha256
    assert again.path.read_bytes() == report.path.read_bytes()


def test_full_stdlib_image_is_larger(image: tuple[ImageReport, dict[str, Entry]],
                                     image_dir: Path) -> None:
    report, _ = image
    full = build_image(image_dir, CONFIG, kernel=find_kernel(), full_stdlib=True,
                       data_files=DATA)
    assert full.compressed_bytes > report.compressed_bytes + 2_000_000


def test_probe_names_the_importer() -> None:
    probed = probe_imports(("json",))
    assert probed["json.decoder"].startswith("imported by json:")
    assert probed["json"].startswith("payload:")


def test_missing_interpreter_is_an_image_error(image_dir: Path) -> None:
    with pytest.raises(ImageError, match=r"^interpreter /nonexistent/python3\.11 not found"):
        probe_imports(("json",), python="/nonexistent/python3.11")
    with pytest.raises(ImageError, match=r"^importing the payload under .* failed"):
        probe_imports(("no_such_module_here",))


def test_build_with_a_missing_interpreter_is_an_image_error(image_dir: Path) -> None:
    with pytest.raises(ImageError, match=r"^interpreter /nonexistent/python3\.11 does not "
                                         r"run \(.*\); install Debian's python3\.11"):
        build_image(image_dir, CONFIG, python="/nonexistent/python3.11")
    assert not image_dir.exists()
