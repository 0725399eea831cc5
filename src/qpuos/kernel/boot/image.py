"""Build the controller's OS image: a reproducible initramfs with Python as ``/init``.

What goes in, and why (:class:`ImageReport` lists every file):

1. the interpreter (Debian's ``/usr/bin/python3.11``: libpython is static in it, zlib
   builtin, and it starts 2-3x faster in the guest than a pyenv build) and the shared
   libraries ``ldd`` names for it and for the extension modules it will load;
2. a trimmed stdlib, zipped at ``/usr/lib/python311.zip`` (the interpreter's default
   ``sys.path`` entry): exactly the modules PID 1 imports, found by running the payload's
   imports under the target interpreter with ``-X importtime``; the importtime tree
   says which module pulled each one in (the "why" column). Extension modules go to
   ``lib-dynload``; an empty ``os.py`` there is getpath's landmark for ``prefix=/usr``;
3. qpuos's own modules (those the payload imports) zipped at ``/usr/lib/qpuos.zip``;
4. ``/init``: a bootstrap that stands in bare package objects for ``qpuos.kernel``,
   ``qpuos.quantum``, ``qpuos.device`` and ``qpuos.bpf`` (their ``__init__`` files
   re-export modules that import numpy and numba: ~250 MB and seconds under TCG; the
   image loads only the numpy-free modules its steps name) and calls
   :func:`qpuos.kernel.boot.init.main`;
5. ``/etc/qpuos/boot.json`` (:class:`~qpuos.kernel.boot.init.BootConfig`), the steps'
   data files under ``/etc/qpuos/data`` (e.g. a program compiled on the host), the uio
   kernel modules, and the device nodes the kernel and Python need before devtmpfs is
   mounted (``/dev/console``, ``/dev/null``, ``/dev/urandom``: Python's hash seed).

Reproducible: entries sorted, fixed mtimes and owners (``initramfs``), zip members in
order with a fixed date, ``.pyc`` files hash-based (no source mtime), gzip with mtime 0.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import marshal
import os
import re
import subprocess
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qpuos.errors import ImageError, UsageError
from qpuos.kernel.boot.init import DATA_DIR, BootConfig
from qpuos.kernel.boot.initramfs import Entry, write_cpio

__all__ = ["BARE_PACKAGES", "IMAGE_NAME", "ImageReport", "Included", "KernelFiles",
           "build_image", "find_kernel", "probe_imports"]

IMAGE_NAME = "initramfs.cpio.gz"
PYTHON = "/usr/bin/python3.11"
_STDLIB = "/usr/lib/python3.11"
_SRC = Path(__file__).resolve().parents[3]          # .../src (qpuos's parent)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_PAYLOAD = ("qpuos.kernel.boot.init", "qpuos.kernel.boot.selftest",
            # imported inside VectorTable() on first use, so an import-only probe misses it
            "qpuos.kernel._epoll")

# Imported when present, with a fallback when not: left out to keep the image small.
_LEFT_OUT = {"_hashlib": "hashlib falls back to the builtin _sha256/_blake2; "
                         "_hashlib needs libcrypto (4.6 MB)"}

# Layers whose __init__ imports numpy/numba: a bare package object loads their modules.
BARE_PACKAGES = ("kernel", "quantum", "device", "bpf")
_BARE = """import types
for _layer in {layers!r}:
    _pkg = sys.modules["qpuos." + _layer] = types.ModuleType("qpuos." + _layer)
    _pkg.__path__ = [{root!r} + "/qpuos/" + _layer]
    setattr(qpuos, _layer, _pkg)
"""

_BOOTSTRAP = """#!/usr/bin/python3.11 -IS
import time; T0 = time.clock_gettime(time.CLOCK_BOOTTIME); print("QPUOS MAIN", flush=True)
import sys
sys.path.append("/usr/lib/qpuos.zip")
import qpuos
""" + _BARE.format(layers=BARE_PACKAGES, root="/usr/lib/qpuos.zip") + """\
from qpuos.kernel.boot.init import main
main(T0)
"""

_PROBE = """
import json, sys
sys.path[:0] = [{src!r}]
import qpuos
{bare}
for name in {modules!r}:
    __import__(name)
def origin(m):
    spec = getattr(m, "__spec__", None)
    where = getattr(spec, "origin", None)
    return None if where in (None, "frozen", "built-in") else getattr(m, "__file__", None)
print(json.dumps({{n: origin(m) for n, m in sys.modules.items()}}))
"""


@dataclass(frozen=True, slots=True)
class KernelFiles:
    """The guest kernel and the uio modules, extracted from Debian's cloud kernel."""

    vmlinuz: Path
    uio: Path
    uio_pci_generic: Path


def find_kernel(cache: str | os.PathLike[str] | None = None) -> KernelFiles | None:
    """The kernel files under ``cache`` (default ``$QPUOS_BOOT_CACHE`` or the checkout's
    ``.cache/boot``, filled by ``scripts/ci_boot_deps.sh``), or None if absent.

    >>> find_kernel("/nonexistent") is None
    True
    """
    root = Path(cache if cache is not None else os.environ.get(
        "QPUOS_BOOT_CACHE", _SRC.parent / ".cache" / "boot"))
    kernels = sorted(root.glob("boot/vmlinuz-*"))
    uio = sorted(root.glob("lib/modules/*/kernel/drivers/uio/uio.ko"))
    generic = sorted(root.glob("lib/modules/*/kernel/drivers/uio/uio_pci_generic.ko"))
    if not (kernels and uio and generic):
        return None
    return KernelFiles(kernels[-1], uio[-1], generic[-1])


@dataclass(frozen=True, slots=True)
class Included:
    """One file of the image: where it lies, its size, and why it is there."""

    path: str
    size: int
    why: str


@dataclass(frozen=True, slots=True)
class ImageReport:
    """The built image: its path, sizes, digest and every file included."""

    path: Path
    compressed_bytes: int
    raw_bytes: int
    sha256: str
    files: tuple[Included, ...]

    def summary(self) -> str:
        """A short multi-line account: sizes, then the files grouped by kind."""
        groups: dict[str, list[Included]] = {}
        for f in self.files:
            groups.setdefault(f.why.split(":")[0], []).append(f)
        lines = [f"image {self.path}: {self.compressed_bytes / 1e6:.2f} MB gzip "
                 f"({self.raw_bytes / 1e6:.2f} MB cpio), sha256 {self.sha256[:16]}"]
        for kind, items in sorted(groups.items()):
            size = sum(f.size for f in items)
            lines.append(f"  {kind}: {len(items)} files, {size / 1e3:.0f} KB")
        return "\n".join(lines)


def probe_imports(modules: tuple[str, ...], *, python: str = PYTHON) -> dict[str, str]:
    """Module name -> why it is needed, for every module the payload imports.

    Runs ``python -X importtime -I -S`` importing ``modules`` from qpuos's source tree;
    a module's reason is the module whose import pulled it in (from the importtime tree).
    Frozen and builtin modules are in the interpreter and are left out, as are the
    optional extensions of ``_LEFT_OUT``.

    Raises:
        ImageError: the interpreter is missing or an import fails.
    """
    bare = _BARE.format(layers=BARE_PACKAGES, root=str(_SRC))
    code = _PROBE.format(src=str(_SRC), modules=list(modules), bare=bare)
    try:
        proc = subprocess.run([python, "-X", "importtime", "-I", "-S", "-c", code],
                              capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        raise ImageError(f"interpreter {python} not found; install Debian's python3.11 "
                         "(scripts/ci_boot_deps.sh)") from None
    if proc.returncode:
        raise ImageError(f"importing the payload under {python} failed: "
                         f"{proc.stderr.strip().splitlines()[-1:]}")
    files = json.loads(proc.stdout)
    parents = _importtime_parents(proc.stderr)
    return {name: parents.get(name, "payload") + ":" + path
            for name, path in sorted(files.items()) if path and name not in _LEFT_OUT}


def _importtime_parents(log: str) -> dict[str, str]:
    rows = []
    for line in log.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)", line)
        if m:
            rows.append((len(m.group(1)) // 2, m.group(2)))
    parents: dict[str, str] = {}
    for i, (depth, name) in enumerate(rows):
        parent = next((n for d, n in rows[i + 1:] if d < depth), None)
        parents.setdefault(name, f"imported by {parent}" if parent else "payload")
    return parents


def _pyc(source: bytes, filename: str) -> bytes:
    # hash-based, unchecked (PEP 552 flags 0b01): no source mtime in the image
    code = compile(source, filename, "exec", dont_inherit=True)
    return (importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))


def _zip(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, _ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, members[name])
    return buf.getvalue()


def _ldd(path: str) -> list[str]:
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    return sorted({m.group(1) for m in re.finditer(r"(/\S+) \(0x", out)})


def _target_magic(python: str) -> bytes:
    try:
        return subprocess.run([python, "-I", "-S", "-c", "import importlib.util,sys;"
                               "sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)"],
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ImageError(f"interpreter {python} does not run ({exc}); install Debian's "
                         "python3.11 (scripts/ci_boot_deps.sh)") from None


def _whole_stdlib() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    skip = ("test", "idlelib", "tkinter", "site-packages", "dist-packages", "lib2to3",
            "turtledemo")
    for path in sorted(Path(_STDLIB).rglob("*.py")):
        rel = str(path.relative_to(_STDLIB))
        if rel.split("/", maxsplit=1)[0] in skip:
            continue
        try:
            out[rel[:-3] + ".pyc"] = _pyc(path.read_bytes(), rel)
        except SyntaxError:  # a few data files in the tree are not Python 3.11 source
            continue
    return out


def _tree(files: Mapping[str, object]) -> list[Entry]:
    """The directories above ``files``, the mount points and the early device nodes."""
    dirs = {"dev", "proc", "sys", "tmp", "run"}
    for name in files:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [*(Entry.directory(d) for d in dirs), Entry.device("dev/console", 5, 1),
            Entry.device("dev/null", 1, 3, mode=0o666),
            Entry.device("dev/urandom", 1, 9, mode=0o666)]


def build_image(out: str | os.PathLike[str], config: BootConfig, *,
                kernel: KernelFiles | None = None, python: str = PYTHON,
                extra_modules: Mapping[str, str] | None = None,
                data_files: Mapping[str, bytes] | None = None,
                full_stdlib: bool = False) -> ImageReport:
    """Write ``out/initramfs.cpio.gz`` running ``config`` as PID 1; report what is in it.

    Args:
        out: the output directory (created; the image is replaced atomically).
        config: what PID 1 runs; its step modules are probed and included.
        kernel: where the uio modules come from (None: no modules in the image; the
            config must then not load any).
        python: the interpreter to carry (must be a CPython 3.11 with this magic).
        extra_modules: module name -> source of extra top-level modules, zipped with
            qpuos (self-test steps that live outside the package, e.g. in tests).
        data_files: file name -> bytes, written under ``init.DATA_DIR`` for the
            steps to read (e.g. a program compiled on the host); plain names only.
        full_stdlib: carry the whole stdlib instead of the probed modules (the
            benchmark's comparison).

    Returns:
        The report: sizes, sha256 and every file with its reason.

    Raises:
        ImageError: the interpreter is missing or of another bytecode version, or an
            import of the payload fails.
        UsageError: a data file's name is not a plain file name.
    """
    data = dict(data_files or {})
    for name in data:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise UsageError(f"data file name {name!r} is not a plain file name; use "
                             "letters, digits, '_', '.' and '-' (no '/')")
    if _target_magic(python) != importlib.util.MAGIC_NUMBER:
        raise ImageError(f"{python} uses another bytecode version than this Python; run "
                         "the build under a Python 3.11")
    extra = dict(extra_modules or {})
    steps = tuple(s.entry.partition(":")[0] for s in config.steps)
    probed = probe_imports(_PAYLOAD + tuple(m for m in steps if m not in extra),
                           python=python)
    files: dict[str, tuple[bytes, str]] = {}
    stdlib: dict[str, bytes] = {}
    ours: dict[str, bytes] = {name + ".pyc": _pyc(src.encode(), name + ".py")
                              for name, src in extra.items()}
    why_of: dict[str, str] = {name + ".pyc": "qpuos: extra self-test module" for name in extra}
    dynload: list[str] = []
    for name, why_path in probed.items():
        why, _, path = why_path.partition(":")
        if path.endswith(".so"):
            files[path.lstrip("/")] = (Path(path).read_bytes(), f"extension: {name}, {why}")
            dynload.append(path)
            continue
        src_root = str(_SRC) if path.startswith(str(_SRC)) else _STDLIB
        rel = os.path.relpath(path, src_root)
        member = rel[:-3] + ".pyc"
        code = _pyc(Path(path).read_bytes(), rel)
        (ours if src_root == str(_SRC) else stdlib)[member] = code
        why_of[member] = ("qpuos: " if src_root == str(_SRC) else "stdlib: ") + why
    if full_stdlib:
        for member, code in _whole_stdlib().items():
            stdlib.setdefault(member, code)
            why_of.setdefault(member, "stdlib: full stdlib")
    stdlib_zip, qpuos_zip = _zip(stdlib), _zip(ours)
    files["usr/lib/python311.zip"] = (stdlib_zip, f"stdlib: {len(stdlib)} modules zipped")
    files["usr/lib/qpuos.zip"] = (qpuos_zip, f"qpuos: {len(ours)} modules zipped")
    files["usr/lib/python3.11/os.py"] = (b"", "runtime: getpath landmark (prefix=/usr)")
    files[python.lstrip("/")] = (Path(python).read_bytes(), "runtime: the interpreter")
    for obj in [python, *dynload]:
        for lib in _ldd(obj):
            files.setdefault(lib.lstrip("/"), (Path(lib).read_bytes(),
                                               f"library: needed by {Path(obj).name}"))
    if kernel is not None:
        for ko in (kernel.uio, kernel.uio_pci_generic):
            files[f"lib/modules/{ko.name}"] = (ko.read_bytes(), "module: edu interrupts")
    files["etc/qpuos/boot.json"] = (config.to_json().encode(), "config: PID 1's steps")
    for name, blob in data.items():
        files[f"{DATA_DIR.lstrip('/')}/{name}"] = (blob, "data: read by a self-test step")
    files["init"] = (_BOOTSTRAP.encode(), "init: the bootstrap of PID 1")
    executable = ("init", python.lstrip("/"))
    entries = [Entry.file(name, data, mode=0o755 if name in executable or ".so" in name
                          else 0o644) for name, (data, _) in files.items()]
    raw = write_cpio(entries + _tree(files))
    packed = gzip.compress(raw, compresslevel=6, mtime=0)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / IMAGE_NAME
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(packed)
    os.replace(tmp, target)
    listed = [Included(p, len(d), w) for p, (d, w) in files.items()]
    listed += [Included(f"usr/lib/python311.zip/{m}", len(c), why_of[m])
               for m, c in stdlib.items()]
    listed += [Included(f"usr/lib/qpuos.zip/{m}", len(c), why_of[m]) for m, c in ours.items()]
    return ImageReport(target, len(packed), len(raw), hashlib.sha256(packed).hexdigest(),
                       tuple(sorted(listed, key=lambda f: f.path)))
