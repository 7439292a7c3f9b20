#!/usr/bin/env bash
# footprint.sh - the size and memory budget of the static builds, checked: prints each figure
# with its budget and exits 1 when one is over.
#   stripped aarch64 musl binary <= 1.8 MiB with every feature (remote sources included)
#   stripped aarch64 musl router build (--no-default-features: no remote sources) <= 1.1 MiB
#   idle RSS <= 4 MiB, RSS with 10,000 machines in the inventory <= 12 MiB (x86_64 musl binary,
#   every service on, in a network namespace made here), and the thread count at idle.
# Run by tests/run.sh. Builds with .ci/static-builds.sh when the binaries are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 1; }
X86=target/x86_64-unknown-linux-musl/release/netbootd
ARM=target/aarch64-unknown-linux-musl/release/netbootd
[ -x "$X86" ] && [ -x "$ARM" ] || .ci/static-builds.sh >/dev/null
NS=nbt-footprint
WORK=$(mktemp -d /tmp/netbootd-footprint.XXXXXX)
chmod 755 "$WORK"
PID=
cleanup() {
  [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add s0 type veth peer name s1
ip -n "$NS" link set s1 up
ip -n "$NS" addr add 10.77.0.1/16 dev s0
ip -n "$NS" link set s0 up

python3 - "$WORK/hw-10000.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(10000):
        f.write(f"02:77:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:\n"
                f"  ipAddress: 10.77.{1 + i // 250}.{1 + i % 250}\n  subnetMask: 255.255.0.0\n"
                f"  defaultGateway: 10.77.0.1\n  nameServers: [10.77.0.1]\n"
                f"  hostname: node-{i:05d}\n  netboot: {{allowPxe: true}}\n"
                f"  boot: {{kernel: vmlinuz, initrd: [initrd.img], cmdline: console=ttyS0}}\n")
PY
echo '{}' > "$WORK/hw-0.yaml"

fail=0
check() {  # check NAME VALUE BUDGET UNIT
  local verdict=ok
  awk -v v="$2" -v b="$3" 'BEGIN {exit !(v <= b)}' || { verdict=OVER; fail=1; }
  printf '%-44s %10s %-4s (budget %s %s) %s\n' "$1" "$2" "$4" "$3" "$4" "$verdict"
}

# measure HARDWARE: starts the x86_64 binary with every service on, waits for it to settle,
# prints "RSS_KiB THREADS".
measure() {
  ip netns exec "$NS" "$X86" --backend-file-path "$1" --dhcp-iface s0 --tftp-addr 10.77.0.1 \
    --http-addr 10.77.0.1 --http-port 80 --syslog-addr 10.77.0.1 --ipxe-dir "$WORK" \
    --user root 2>"$WORK/log" &
  PID=$!
  for _ in $(seq 100); do grep -q "SIGTERM/SIGINT stop" "$WORK/log" && break; sleep 0.1; done
  grep -q "SIGTERM/SIGINT stop" "$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
  sleep 1
  awk '/^VmRSS:/ {r = $2} /^Threads:/ {t = $2} END {print r, t}' "/proc/$PID/status"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

size=$(stat -c %s "$ARM")
file -b "$ARM" | grep -q "statically linked" || { echo "$ARM is not static" >&2; fail=1; }
check "aarch64 musl binary, stripped" "$(awk -v s="$size" 'BEGIN {printf "%.3f", s / 1048576}')" 1.8 MiB
# The router build: every feature off (no remote sources), in a target directory of its own.
ROUTER=target/router/aarch64-unknown-linux-musl/release/netbootd
CARGO_TARGET_DIR=target/router .ci/static-builds.sh --router aarch64-unknown-linux-musl >/dev/null
check "aarch64 musl router build (no remote), stripped" \
  "$(awk -v s="$(stat -c %s "$ROUTER")" 'BEGIN {printf "%.3f", s / 1048576}')" 1.1 MiB
printf '(aarch64 binaries: %s bytes with every feature, %s bytes for routers)\n' "$size" "$(stat -c %s "$ROUTER")"
read -r rss threads < <(measure "$WORK/hw-0.yaml")
check "idle RSS (x86_64 musl, all services)" "$(awk -v r="$rss" 'BEGIN {printf "%.2f", r / 1024}')" 4 MiB
check "threads at idle" "$threads" 1 ""
read -r rss threads < <(measure "$WORK/hw-10000.yaml")
check "RSS with 10,000 machines" "$(awk -v r="$rss" 'BEGIN {printf "%.2f", r / 1024}')" 12 MiB
printf '(x86_64 musl binary: %s bytes)\n' "$(stat -c %s "$X86")"
# The router builds (.ci/cross-check.sh), when they are there: reported, not budgeted.
for t in armv7-unknown-linux-musleabihf mips-unknown-linux-musl mipsel-unknown-linux-musl; do
  bin=target/$t/release/netbootd
  [ -x "$bin" ] && printf '(%s binary: %s bytes, %s MiB)\n' "$t" "$(stat -c %s "$bin")" \
    "$(awk -v s="$(stat -c %s "$bin")" 'BEGIN {printf "%.2f", s / 1048576}')"
done
exit "$fail"
