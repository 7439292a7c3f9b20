# vmlab.sh - a private network-boot lab for the demo (tests/demo/boot-a-vm.sh) and the
# boot-time benchmark (benches/boot-time.sh). Source it; do not run it. Needs root.
#
#   ns $NS_SRV: s0 10.77.0.1/16  <== veth ==>  c0 -- br0 -- tap0 (QEMU)  :ns $NS_CLI
#
# Nothing touches the host's interfaces: the namespaces, the veth pair, the bridge and the tap
# are made here and deleted by vmlab_down (installed as an EXIT trap by vmlab_up). A helper
# dnsmasq in $NS_CLI sends IPv6 router advertisements only (no DNS, no DHCP): without one,
# iPXE waits about 13 s for IPv6 autoconfiguration.
# (tests/boot.rs builds the same topology in Rust for the test suite.)

VMLAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NS_SRV=${NS_SRV:-nbdemo-srv}
NS_CLI=${NS_CLI:-nbdemo-cli}
SRV_IP=10.77.0.1
VM_MAC=52:54:00:12:34:56
VM_IP=10.77.0.51
VMLAB_PACKAGES=(qemu-system-x86 ovmf ipxe ipxe-qemu seabios busybox-static dnsmasq-base cpio
  iproute2 curl)
ASSETS=$VMLAB_ROOT/target/tmp/boot-assets
VMLAB_PIDS=()

vmlab_say() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# Installs what is missing (apt-get), and builds the kernel + initramfs once.
vmlab_prepare() {
  [ "$(id -u)" = 0 ] || { echo "run as root: network namespaces and taps need it" >&2; exit 1; }
  local p missing=()
  for p in "${VMLAB_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    vmlab_say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  "$VMLAB_ROOT/tests/tools/boot-assets.sh" "$ASSETS" >/dev/null
}

vmlab_down() {
  local p
  for p in "${VMLAB_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  VMLAB_PIDS=()
  for ns in "$NS_SRV" "$NS_CLI"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ -n "${VMLAB_WORK:-}" ] && rm -rf "$VMLAB_WORK"
  return 0
}

vmlab_up() {
  VMLAB_WORK=$(mktemp -d /tmp/netbootd-vmlab.XXXXXX)
  chmod 755 "$VMLAB_WORK"
  trap vmlab_down EXIT
  trap 'exit 130' INT TERM
  ip netns del "$NS_SRV" 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true
  ip netns add "$NS_SRV"
  ip netns add "$NS_CLI"
  ip link add s0 netns "$NS_SRV" type veth peer name c0 netns "$NS_CLI"
  ip -n "$NS_SRV" link set lo up
  ip -n "$NS_SRV" addr add "$SRV_IP/16" dev s0
  ip -n "$NS_SRV" link set s0 up
  ip -n "$NS_CLI" link set lo up
  ip -n "$NS_CLI" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$NS_CLI" link set c0 master br0 up
  ip -n "$NS_CLI" link set br0 up
  ip netns exec "$NS_CLI" sysctl -qw net.ipv6.conf.br0.disable_ipv6=0
  ip -n "$NS_CLI" -6 addr add fd77::2/64 dev br0 nodad
  ip netns exec "$NS_CLI" dnsmasq -k --conf-file=/dev/null --port=0 --pid-file= \
    --interface=br0 --bind-interfaces --enable-ra --dhcp-range=::,constructor:br0,ra-only,64 \
    --log-facility=- >"$VMLAB_WORK/ra.log" 2>&1 &
  VMLAB_PIDS+=($!)
}

# vmlab_start NAME PORTS CMD... : runs CMD in $NS_SRV (log $VMLAB_WORK/NAME.log) and waits
# until each of PORTS (udp:67 tcp:80 ...) is open there.
vmlab_start() {
  local name=$1 ports=$2 spec ok flag
  shift 2
  ip netns exec "$NS_SRV" "$@" >"$VMLAB_WORK/$name.log" 2>&1 &
  VMLAB_PIDS+=($!)
  for _ in $(seq 100); do
    ok=1
    for spec in $ports; do
      flag=u; [ "${spec%%:*}" = tcp ] && flag=t
      ip netns exec "$NS_SRV" ss -Hln$flag | awk '{print $4}' | grep -q ":${spec##*:}\$" || ok=0
    done
    [ "$ok" = 1 ] && return 0
    sleep 0.1
  done
  echo "$name did not open $ports:" >&2; cat "$VMLAB_WORK/$name.log" >&2; exit 1
}

# vmlab_stop_servers: stops everything vmlab_start started (the RA helper stays).
vmlab_stop_servers() {
  local p
  for p in "${VMLAB_PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  VMLAB_PIDS=("${VMLAB_PIDS[0]}")
}

# vmlab_boot bios|uefi : boots the VM, prints the seconds from QEMU start to NETBOOT-OK on
# stdout, and leaves the console in $VMLAB_WORK/serial.log. Fails after BOOT_TIMEOUT (300 s).
vmlab_boot() {
  local fw=$1 t0 qpid serial=$VMLAB_WORK/serial.log
  local args=(-accel tcg -m 512 -smp 1 -nodefaults -no-user-config -display none -vga none
              -monitor none -no-reboot -serial "file:$serial"
              -netdev tap,id=n0,ifname=tap0,script=no,downscript=no)
  case $fw in
    bios)
      printf '\xf8\x03' > "$VMLAB_WORK/sercon-port.bin"   # SeaBIOS: mirror iPXE's text to serial
      args+=(-machine pc -boot n -fw_cfg "name=etc/sercon-port,file=$VMLAB_WORK/sercon-port.bin"
             -device "e1000,netdev=n0,mac=$VM_MAC,bootindex=1") ;;
    uefi)
      cp /usr/share/OVMF/OVMF_VARS_4M.fd "$VMLAB_WORK/OVMF_VARS.fd"
      args+=(-machine q35
             -drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
             -drive "if=pflash,format=raw,unit=1,file=$VMLAB_WORK/OVMF_VARS.fd"
             -device "virtio-net-pci,netdev=n0,mac=$VM_MAC,bootindex=1,romfile=") ;;
    *) echo "firmware must be bios or uefi" >&2; return 1 ;;
  esac
  ip -n "$NS_CLI" link del tap0 2>/dev/null || true
  ip -n "$NS_CLI" tuntap add dev tap0 mode tap
  ip -n "$NS_CLI" link set tap0 master br0 up
  rm -f "$serial"
  t0=$(date +%s.%N)
  ip netns exec "$NS_CLI" timeout "${BOOT_TIMEOUT:-300}" qemu-system-x86_64 "${args[@]}" \
    >"$VMLAB_WORK/qemu.log" 2>&1 &
  qpid=$!
  while ! grep -aq NETBOOT-OK "$serial" 2>/dev/null; do
    if ! kill -0 "$qpid" 2>/dev/null; then
      tail -c 2000 "$serial" >&2 2>/dev/null; cat "$VMLAB_WORK/qemu.log" >&2
      echo "the VM stopped without NETBOOT-OK" >&2; return 1
    fi
    sleep 0.05
  done
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f\n", b - a}'
  for _ in $(seq 100); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.1; done  # poweroff -f
  kill "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  ip -n "$NS_CLI" link del tap0 2>/dev/null || true
}

# netbootd in $NS_SRV serving the VM a boot profile (kernel + initrd from $ASSETS).
vmlab_start_netbootd() {
  cat > "$VMLAB_WORK/hardware.yaml" <<EOF
$VM_MAC:
  ipAddress: $VM_IP
  subnetMask: 255.255.0.0
  defaultGateway: $SRV_IP
  hostname: demo-vm
  netboot: {allowPxe: true}
  boot:
    kernel: vmlinuz
    initrd: [initrd.img]
    cmdline: console=ttyS0,115200 panic=-1
EOF
  vmlab_start netbootd "udp:67 udp:69 tcp:80" "$VMLAB_ROOT/target/release/netbootd" \
    --backend-file-path "$VMLAB_WORK/hardware.yaml" --dhcp-iface s0 \
    --ipxe-dir /usr/lib/ipxe --assets-dir "$ASSETS" --tftp-addr "$SRV_IP" --tftp-block-size 1468 \
    --http-addr "$SRV_IP" --http-port 80 --dhcp-http-ipxe-script-port 80 \
    --dhcp-http-ipxe-binary-port 80 --syslog-addr "$SRV_IP"
}
