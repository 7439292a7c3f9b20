#!/usr/bin/env bash
# boot-a-vm.sh [bios|uefi|both] - the netbootd demo: builds netbootd, makes a private lab in
# network namespaces (nothing touches this machine's own interfaces), network-boots a QEMU VM
# from netbootd alone (DHCP, TFTP, HTTP), shows what happened, and cleans up.
#
#   sudo tests/demo/boot-a-vm.sh          # BIOS: SeaBIOS + iPXE ROM -> script -> kernel
#   sudo tests/demo/boot-a-vm.sh uefi     # OVMF PXE -> TFTP ipxe.efi -> iPXE -> script -> kernel
#
# It installs QEMU, OVMF, iPXE and busybox-static with apt-get when they are missing, and
# downloads Debian's kernel package once (kept in target/tmp/boot-assets).
set -euo pipefail
source "$(dirname "$0")/../tools/vmlab.sh"
case ${1:-bios} in bios) FIRMWARES=(bios) ;; uefi) FIRMWARES=(uefi) ;; both) FIRMWARES=(bios uefi) ;;
  *) echo "usage: $0 [bios|uefi|both]" >&2; exit 2 ;; esac

vmlab_prepare
vmlab_say "building netbootd (cargo build --release)"
(cd "$VMLAB_ROOT" && cargo build --release --locked -q)
vmlab_up
vmlab_start_netbootd
vmlab_say "netbootd runs in namespace $NS_SRV on $SRV_IP; the VM ($VM_MAC) is reserved $VM_IP"
for fw in "${FIRMWARES[@]}"; do
  lines_before=$(wc -l < "$VMLAB_WORK/netbootd.log")
  vmlab_say "booting a $fw VM (QEMU, software emulation: expect 10-25 s)"
  secs=$(vmlab_boot "$fw")
  sleep 0.3
  echo
  echo "== what netbootd did ($fw)"
  tail -n +"$((lines_before + 1))" "$VMLAB_WORK/netbootd.log" \
    | grep -E "dhcp: |tftp |http " | cut -c1-200
  echo
  echo "== the VM's console"
  tr -d '\r' < "$VMLAB_WORK/serial.log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' \
    | grep -aE "Start PXE|Station IP|NBP file|iPXE initialising|Configuring|http://|Linux version|Run /init|NETBOOT-OK" \
    | cut -c1-160 | head -20
  echo
  echo "== $fw: power-on to NETBOOT-OK in $secs s, from netbootd alone"
done
vmlab_say "cleaning up (namespaces, processes, temporary files)"
