#!/usr/bin/env bash
# arm64-boot-assets.sh ASSETS LOADERS - what the ARM64 QEMU boot (tests/boot.rs) serves, from
# Debian's arm64 packages, downloaded with apt-get (arm64 indexes of the machine's own source
# list, kept in a private directory: nothing is installed, the system's apt state is untouched):
#   ASSETS/arm64/vmlinuz     the kernel of Debian's linux-image-arm64 (signed)
#   ASSETS/arm64/initrd.img  a busybox-static (arm64) initramfs whose /init prints
#                            "NETBOOT-OK ..." on the console and powers the VM off
#   LOADERS/shimaa64.efi     shim-signed:arm64's shimaa64.efi.signed
#   LOADERS/grubaa64.efi     grub-efi-arm64-signed's grubnetaa64.efi.signed (GRUB's network
#                            image; shim starts it by this name from where it came from)
# Idempotent: a second run with every file present does nothing.
set -euo pipefail
ASSETS=${1:?usage: arm64-boot-assets.sh ASSETS LOADERS}
LOADERS=${2:?usage: arm64-boot-assets.sh ASSETS LOADERS}
mkdir -p "$ASSETS/arm64" "$LOADERS"
[ -s "$ASSETS/arm64/vmlinuz" ] && [ -s "$ASSETS/arm64/initrd.img" ] \
  && [ -s "$LOADERS/shimaa64.efi" ] && [ -s "$LOADERS/grubaa64.efi" ] && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
apt_arm64=(-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Dir::State::Status=/dev/null)
apt-get "${apt_arm64[@]}" update -qq
kernel=$(apt-cache "${apt_arm64[@]}" depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kernel" ] || { echo "cannot resolve linux-image-arm64" >&2; exit 1; }
(cd "$work" && apt-get "${apt_arm64[@]}" download "$kernel" shim-signed grub-efi-arm64-signed busybox-static)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

cp "$work/root/usr/lib/shim/shimaa64.efi.signed" "$LOADERS/shimaa64.efi.part"
cp "$work/root/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed" "$LOADERS/grubaa64.efi.part"
cp "$work"/root/boot/vmlinuz-* "$ASSETS/arm64/vmlinuz.part"

"$(dirname "$0")/busybox-initramfs.sh" "$work/root/bin/busybox" "$ASSETS/arm64/initrd.img"

mv "$LOADERS/shimaa64.efi.part" "$LOADERS/shimaa64.efi"
mv "$LOADERS/grubaa64.efi.part" "$LOADERS/grubaa64.efi"
mv "$ASSETS/arm64/vmlinuz.part" "$ASSETS/arm64/vmlinuz"
ls -l "$ASSETS/arm64" "$LOADERS"
