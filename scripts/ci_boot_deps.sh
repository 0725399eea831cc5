#!/usr/bin/env bash
# Install what the boot-image tests and `qpuos boot` need; idempotent, prints what it did.
#  - qemu-system-x86 (without recommends), Debian's python3.11 if missing;
#  - Debian's cloud kernel package downloaded (not installed) and vmlinuz plus the uio
#    modules extracted into the cache folder (default .cache/boot, or $1 or
#    $QPUOS_BOOT_CACHE), where qpuos.kernel.boot.image.find_kernel() looks.
set -euo pipefail
cache="${1:-${QPUOS_BOOT_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache/boot}}"
updated=0
apt_install() {
    if [ "$updated" = 0 ]; then apt-get update -qq; updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    echo "installed: $*"
}
if command -v qemu-system-x86_64 >/dev/null; then
    echo "qemu-system-x86_64: present ($(qemu-system-x86_64 --version | head -1))"
else
    apt_install qemu-system-x86
fi
if [ -x /usr/bin/python3.11 ]; then
    echo "python3.11: present (/usr/bin/python3.11)"
else
    apt_install python3.11
fi
mkdir -p "$cache"
if ls "$cache"/boot/vmlinuz-* >/dev/null 2>&1 \
        && ls "$cache"/lib/modules/*/kernel/drivers/uio/uio_pci_generic.ko >/dev/null 2>&1; then
    echo "kernel cache: present in $cache ($(basename "$cache"/boot/vmlinuz-*))"
    exit 0
fi
if [ "$updated" = 0 ]; then apt-get update -qq; updated=1; fi
pkg=$(apt-cache depends linux-image-cloud-amd64 | grep -o 'linux-image-[0-9][^ ]*-cloud-amd64' | head -1)
if [ -z "$pkg" ]; then
    echo "cannot resolve linux-image-cloud-amd64 to a versioned package" >&2
    exit 1
fi
(cd "$cache" && rm -f linux-image-*.deb && apt-get download -qq "$pkg")
deb=$(ls "$cache"/linux-image-*.deb | head -1)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$cache" --wildcards \
    './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/uio/uio.ko' \
    './lib/modules/*/kernel/drivers/uio/uio_pci_generic.ko'
rm -f "$deb"
echo "kernel cache: extracted $pkg into $cache ($(basename "$cache"/boot/vmlinuz-*))"
