#!/usr/bin/env bash
# secure-boot-assets.sh DIR - the boot loaders of the Secure Boot QEMU tests (tests/boot.rs),
# from Debian's signed packages (apt-get download and dpkg-deb -x: nothing is installed):
#   DIR/shimx64.efi  shim-signed's shimx64.efi.signed (signed by Microsoft's UEFI CA)
#   DIR/grubx64.efi  grub-efi-amd64-signed's grubnetx64.efi.signed (GRUB's network image,
#                    signed by Debian; shim loads it by this name from where it came from)
#   DIR/ipxe.efi     a link to Debian's unsigned ipxe.efi (the firmware must refuse it)
# Idempotent: a second run with the files present does nothing.
set -euo pipefail
DIR=${1:?usage: secure-boot-assets.sh DIR}
mkdir -p "$DIR"
[ -s "$DIR/shimx64.efi" ] && [ -s "$DIR/grubx64.efi" ] && [ -e "$DIR/ipxe.efi" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
(cd "$work" && apt-get download shim-signed grub-efi-amd64-signed 2>/dev/null) \
  || { apt-get update -qq && (cd "$work" && apt-get download shim-signed grub-efi-amd64-signed); }
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
cp "$work/root/usr/lib/shim/shimx64.efi.signed" "$DIR/shimx64.efi.part"
cp "$work/root/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" "$DIR/grubx64.efi.part"
mv "$DIR/shimx64.efi.part" "$DIR/shimx64.efi"
mv "$DIR/grubx64.efi.part" "$DIR/grubx64.efi"
ln -sfn /usr/lib/ipxe/ipxe.efi "$DIR/ipxe.efi"
ls -l "$DIR"
