#!/usr/bin/env bash
# busybox-initramfs.sh BUSYBOX OUT - a gzipped initramfs around a static busybox whose /init
# prints "NETBOOT-OK kernel=... machine=... cmdline=... guest_uptime=..." on the console and
# powers the machine off: the marker of the QEMU boot tests (boot-assets.sh for x86-64,
# arm64-boot-assets.sh for ARM64).
set -euo pipefail
BUSYBOX=${1:?usage: busybox-initramfs.sh BUSYBOX OUT}
OUT=${2:?usage: busybox-initramfs.sh BUSYBOX OUT}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys}
cp "$BUSYBOX" "$root/bin/busybox"   # static: no shared libraries needed
mknod -m 600 "$root/dev/console" c 5 1
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
read up _ < /proc/uptime
echo "NETBOOT-OK kernel=$(/bin/busybox uname -r) machine=$(/bin/busybox uname -m) cmdline=$(/bin/busybox cat /proc/cmdline) guest_uptime=${up}s" > /dev/console
/bin/busybox sleep 1
/bin/busybox poweroff -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$OUT.part"
mv "$OUT.part" "$OUT"
