"""Regenerate ``src/qpuos/_ffi/sysnames.py`` (every syscall's name, by number) from the
kernel's UAPI headers, as Debian's ``linux-libc-dev`` installs them.

    python scripts/gen_sysnames.py > src/qpuos/_ffi/sysnames.py

x86_64 comes from ``<asm/unistd_64.h>``; aarch64 from ``<asm-generic/unistd.h>`` read
the way arm64 compiles it (64-bit, so ``__NR3264_*`` names the 64-bit call, and no
``__ARCH_WANT_SYNC_FILE_RANGE2``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

X86_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
GENERIC = Path("/usr/include/asm-generic/unistd.h")
_DEFINE = re.compile(r"^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$")
_SKIP = {"syscalls", "arch_specific_syscall"}


def parse(path: Path, *, skip_ifdef: frozenset[str] = frozenset()) -> dict[int, str]:
    """Number -> name for every ``#define __NR_name N`` outside a skipped ``#ifdef``."""
    names: dict[int, str] = {}
    stack: list[bool] = []  # True while inside a skipped branch
    for line in path.read_text().splitlines():
        if line.startswith("#if"):
            word = line.split()[-1]
            stack.append(line.startswith("#ifdef") and word in skip_ifdef)
        elif line.startswith("#else") and stack:
            stack[-1] = not stack[-1] if stack[-1] else False
        elif line.startswith("#endif") and stack:
            stack.pop()
        elif not any(stack) and (m := _DEFINE.match(line)) and m[1] not in _SKIP:
            names.setdefault(int(m[2]), m[1])
    return names


def render(tables: dict[str, dict[int, str]]) -> str:
    """The module's text."""
    out = ['"""Every syscall\'s name by number, per architecture (generated: do not edit).',
           "", "Made by ``scripts/gen_sysnames.py`` from the kernel's UAPI headers; used to",
           "name calls in reports (``qpuos trace syscalls``, errors). The numbers qpuos",
           'calls live in ``sysnr.py``; a test checks both agree.', '"""', "",
           "from __future__ import annotations", "", '__all__ = ["NAMES"]', "",
           "NAMES: dict[str, dict[int, str]] = {"]
    for arch, names in tables.items():
        out.append(f'    "{arch}": {{')
        for nr in sorted(names):
            out.append(f'        {nr}: "{names[nr]}",')
        out.append("    },")
    out.append("}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render({
        "x86_64": parse(X86_64),
        "aarch64": parse(GENERIC, skip_ifdef=frozenset({"__ARCH_WANT_SYNC_FILE_RANGE2"})),
    }))
