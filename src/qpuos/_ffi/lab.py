"""Foreign-call entry points the thresholds lab times: one ctypes and two cffi routes.

mirrors <stdlib.h>: ``long labs(long j);`` (cheap, pure, in every libc: a call whose
cost is nearly all crossing the boundary).

- :func:`ctypes_labs`: ``labs`` through ctypes with declared argument and result types.
- :func:`cffi_abi_labs`: ``labs`` through cffi's ABI mode (``dlopen``, no compiler).
- :func:`cffi_api_labs`: ``labs`` through cffi's API mode: a small extension module
  compiled into ``folder`` (needs a C compiler; raises ``OSError`` when the build fails
  or cffi is absent).
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Callable
from pathlib import Path

__all__ = ["cffi_abi_labs", "cffi_api_labs", "ctypes_labs"]

_CDEF = "long labs(long j);"


def ctypes_labs() -> Callable[[int], int]:
    """``labs`` bound through ctypes (argument and result declared ``long``).

    >>> ctypes_labs()(-5)
    5
    """
    fn = ctypes.CDLL(None).labs
    fn.argtypes = [ctypes.c_long]
    fn.restype = ctypes.c_long
    bound: Callable[[int], int] = fn
    return bound


def cffi_abi_labs() -> Callable[[int], int] | None:
    """``labs`` through cffi's ABI mode, or None when cffi is not installed.

    >>> f = cffi_abi_labs()
    >>> f is None or f(-5) == 5
    True
    """
    try:
        import cffi  # type: ignore[import-untyped]
    except ImportError:
        return None
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    lib = ffi.dlopen(None)
    fn: Callable[[int], int] = lib.labs
    return fn


def cffi_api_labs(folder: Path) -> Callable[[int], int]:
    """``labs`` through a cffi API-mode extension compiled into ``folder``.

    Raises:
        OSError: cffi is not installed, or the extension did not build or load.
    """
    try:
        import cffi
    except ImportError as exc:
        raise OSError("cffi is not installed") from exc
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    ffi.set_source("_qpuos_lab_cffi", "#include <stdlib.h>")
    try:
        built = Path(ffi.compile(tmpdir=str(folder), verbose=False))
    except Exception as exc:  # cffi raises VerificationError, distutils errors, ...
        raise OSError(f"cffi API-mode build failed in {folder}: {exc}") from exc
    spec = importlib.util.spec_from_file_location("_qpuos_lab_cffi", built)
    if spec is None or spec.loader is None:
        raise OSError(f"cannot load the cffi extension {built}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn: Callable[[int], int] = module.lib.labs
    return fn
