#!/usr/bin/env bash
# Boot time: the same QEMU VM (TCG) network-boots from netbootd, and from dnsmasq 2.90
# (DHCP + TFTP) with `python3 -m http.server` (HTTP), for BIOS and UEFI, in one run and the same
# namespaces (tests/tools/vmlab.sh). Not a test: it prints the median seconds from QEMU start to
# the initramfs's NETBOOT-OK marker and the ratio netbootd / dnsmasq.
#
#   sudo benches/boot-time.sh          # RUNS=3
#
# Both servers hand out the same reservation, the same iPXE binaries (Debian's undionly.kpxe and
# ipxe.efi) and the same kernel and initramfs; netbootd renders the script from a boot profile,
# dnsmasq's side serves an equivalent static boot.ipxe. The boots take turns (netbootd, dnsmasq,
# netbootd, ...) so drift in the machine's speed hits both alike.
set -euo pipefail
RUNS=${RUNS:-3}
source "$(dirname "$0")/../tests/tools/vmlab.sh"
NS_SRV=nbbench-srv NS_CLI=nbbench-cli
VMLAB_PACKAGES+=(python3)
vmlab_prepare
(cd "$VMLAB_ROOT" && cargo build --release --locked -q)
vmlab_up

# The stand-in's files: iPXE binaries for TFTP, and the script, kernel and initrd for HTTP.
mkdir -p "$VMLAB_WORK/tftp" "$VMLAB_WORK/www"
cp -L /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi "$VMLAB_WORK/tftp/"
cp "$ASSETS/vmlinuz" "$ASSETS/initrd.img" "$VMLAB_WORK/www/"
printf '#!ipxe\nkernel http://%s/vmlinuz initrd=initrd.img console=ttyS0,115200 panic=-1\ninitrd http://%s/initrd.img\nboot\n' \
  "$SRV_IP" "$SRV_IP" > "$VMLAB_WORK/www/boot.ipxe"
cat > "$VMLAB_WORK/dnsmasq.conf" <<CONF
port=0
interface=s0
bind-interfaces
pid-file=
log-facility=-
leasefile-ro
dhcp-authoritative
dhcp-range=10.77.0.0,static,255.255.0.0,1h
dhcp-host=$VM_MAC,$VM_IP,vm
enable-tftp
tftp-root=$VMLAB_WORK/tftp
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:ipxe,http://$SRV_IP/boot.ipxe
dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi
dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe
CONF
chmod -R a+rX "$VMLAB_WORK"

start_dnsmasq() {
  vmlab_start http "tcp:80" python3 -m http.server 80 --bind "$SRV_IP" --directory "$VMLAB_WORK/www"
  vmlab_start dnsmasq "udp:67 udp:69" dnsmasq --keep-in-foreground --conf-file="$VMLAB_WORK/dnsmasq.conf"
}

declare -A T
for run in $(seq "$RUNS"); do
  for fw in bios uefi; do
    for server in netbootd dnsmasq; do
      if [ "$server" = netbootd ]; then vmlab_start_netbootd; else start_dnsmasq; fi
      s=$(vmlab_boot "$fw")
      vmlab_stop_servers
      T[$fw,$server]="${T[$fw,$server]:-} $s"
      vmlab_say "run $run $fw $server: $s s"
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "QEMU start to NETBOOT-OK, TCG, median of $RUNS boots, $(nproc) CPUs"
printf '%-8s %9s %9s %7s   %s\n' firmware netbootd dnsmasq ratio "all runs (netbootd | dnsmasq)"
for fw in bios uefi; do
  n=$(median <<<"${T[$fw,netbootd]}")
  d=$(median <<<"${T[$fw,dnsmasq]}")
  r=$(awk -v n="$n" -v d="$d" 'BEGIN {printf "%.2f", n / d}')
  printf '%-8s %8ss %8ss %6sx   %s |%s\n' "$fw" "$n" "$d" "$r" "${T[$fw,netbootd]}" "${T[$fw,dnsmasq]}"
done
echo "goals: UEFI <= 0.9x, BIOS <= 1.0x"
