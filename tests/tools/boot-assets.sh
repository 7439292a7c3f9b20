#!/usr/bin/env bash
# boot-assets.sh DIR - what the QEMU boot tests (tests/boot.rs) serve, built once into DIR:
#   DIR/vmlinuz     the kernel of Debian's linux-image-amd64 (apt-get download, cached in DIR)
#   DIR/initrd.img  a busybox-static initramfs whose /init prints "NETBOOT-OK ..." on the serial
#                   console and powers the VM off
# Idempotent: a second run with both files present does nothing. Needs apt-get, dpkg-deb, cpio,
# gzip and /bin/busybox (busybox-static); tests/run.sh installs them.
set -euo pipefail
DIR=${1:?usage: boot-assets.sh DIR}
mkdir -p "$DIR"
[ -s "$DIR/vmlinuz" ] && [ -s "$DIR/initrd.img" ] && exit 0

if [ ! -s "$DIR/vmlinuz" ]; then
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  [ -n "$pkg" ] || { echo "cannot resolve linux-image-amd64" >&2; exit 1; }
  if ! ls "$DIR/$pkg"_*.deb >/dev/null 2>&1; then
    (cd "$DIR" && apt-get download "$pkg" 2>/dev/null) \
      || { apt-get update -qq && (cd "$DIR" && apt-get download "$pkg"); }
  fi
  dpkg-deb --fsys-tarfile "$DIR/$pkg"_*.deb | tar -xO --wildcards './boot/vmlinuz-*' > "$DIR/vmlinuz.part"
  mv "$DIR/vmlinuz.part" "$DIR/vmlinuz"
  rm -f "$DIR/$pkg"_*.deb
fi

"$(dirname "$0")/busybox-initramfs.sh" /bin/busybox "$DIR/initrd.img"
ls -l "$DIR"
