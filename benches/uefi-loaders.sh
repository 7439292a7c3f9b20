#!/usr/bin/env bash
# uefi-loaders.sh - ipxe.efi (iPXE's own NIC drivers) against snponly.efi (iPXE on the
# firmware's network driver) for UEFI x86-64 machines (DHCP arch 7): the same QEMU VM (TCG,
# OVMF, virtio-net) boots the same profile from netbootd with each, taking turns, through the
# boot tests of tests/boot.rs. Not a test: it prints, per binary, the median of
#   tftp: the binary's TFTP transfer (netbootd's log),
#   ipxe: from "iPXE initialising" on the console to the machine's script served,
#   total: from QEMU start to the initramfs's NETBOOT-OK marker,
# and the ratios snponly / ipxe.
#   sudo benches/uefi-loaders.sh          # RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
OUT=$(mktemp -d /tmp/netbootd-uefi-loaders.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
cargo test --test boot --no-run -q 2>/dev/null
declare -A TEST=(
  [ipxe]=uefi_pxe_fetches_ipxe_efi_over_tftp_then_boots_the_profile
  [snponly]=uefi_pxe_fetches_snponly_efi_over_tftp_then_boots_the_profile
)
for run in $(seq "$RUNS"); do
  for b in ipxe snponly; do
    cargo test -q --test boot -- --ignored --exact --nocapture "${TEST[$b]}" >"$OUT/$b-$run.log" 2>&1 \
      || { cat "$OUT/$b-$run.log" >&2; exit 1; }
  done
done
# One figure from a boot's timeline (the test prints it).
figures() {  # LOG -> "tftp ipxe total"
  awk '
    /NETBOOT-OK after/ { for (i = 1; i <= NF; i++) if ($i == "after") total = $(i + 1) }
    /console: iPXE initialising/ { init = $1 + 0 }
    /netbootd: script served/ && !script { script = $1 + 0 }
    /netbootd: TFTP done/ { for (i = 1; i <= NF; i++) if ($i == "in") tftp = $(i + 1) + 0 }
    END { printf "%.3f %.2f %.1f\n", tftp, script - init, total }' "$1"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A MED
for b in ipxe snponly; do
  for run in $(seq "$RUNS"); do figures "$OUT/$b-$run.log"; done >"$OUT/$b.fig"
  for col in 1 2 3; do MED[$b,$col]=$(cut -d' ' -f"$col" "$OUT/$b.fig" | median); done
done
echo "UEFI x86-64 (arch 7), QEMU TCG + OVMF + virtio-net, $RUNS boots each, medians, $(date -u +%F), $(nproc) cores"
printf '%-12s %10s %14s %10s\n' binary "tftp (s)" "iPXE→script (s)" "total (s)"
for b in ipxe snponly; do
  printf '%-12s %10s %14s %10s\n' "$b.efi" "${MED[$b,1]}" "${MED[$b,2]}" "${MED[$b,3]}"
done
for col in 1 2 3; do
  printf 'snponly/ipxe %s: %.2fx\n' "$(echo "tftp ipxe-to-script total" | cut -d' ' -f"$col")" \
    "$(echo "${MED[snponly,$col]} / ${MED[ipxe,$col]}" | bc -l)"
done
