#!/usr/bin/env bash
# DHCP answer latency while a 10,000-machine hardware file is reloaded in a loop. Not a test:
# it prints figures. The goal (issue 14): a reload must not delay a DHCP answer by more than
# 5 ms, because parsing runs off the poll loop's thread.
#
#   sudo benches/reload-latency.sh   # SECONDS_PER_PHASE=15 MACHINES=10000 RATE=2000 BASELINE=7cfc215
#
# In one network namespace (created here, deleted on exit), on its loopback: netbootd answers
# DHCP on 127.0.0.1:1067 in reservation mode; a client (Python) sends relayed DISCOVERs
# (giaddr 127.0.0.1) for random reserved MACs at RATE per second, open loop, and times each
# OFFER. Two
# phases per server: quiet, then with the hardware file replaced every 300 ms (atomic rename
# between two versions that differ in every machine's hostname) and a SIGHUP every 5th time.
# The same is measured on BASELINE, the last commit whose reloads parsed on the loop thread,
# built from this repository in a temporary worktree: that is the peer in the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-15}
MACHINES=${MACHINES:-10000}
RATE=${RATE:-2000}
BASELINE=${BASELINE:-7cfc215}
NS=nbb-reload
WORK=$(mktemp -d /tmp/netbootd-reload.XXXXXX)

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
cargo build --release --locked -q
NEW=$PWD/target/release/netbootd
. benches/baseline.sh
baseline_build "$BASELINE" "$WORK"

SERVER_PID= LOOP_PID=
cleanup() {
  if [ -n "$LOOP_PID" ]; then { kill "$LOOP_PID" && wait "$LOOP_PID"; } 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then { kill "$SERVER_PID" && wait "$SERVER_PID"; } 2>/dev/null || true; fi
  ip netns del "$NS" 2>/dev/null || true
  baseline_remove "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up

# Two versions of the inventory: the same MACs and addresses, hostnames differ.
for version in a b; do
  awk -v n="$MACHINES" -v v="$version" 'BEGIN{for(i=0;i<n;i++) printf "02:51:00:00:%02x:%02x:\n  ipAddress: \"10.%d.%d.%d\"\n  subnetMask: \"255.0.0.0\"\n  hostname: \"node%d%s\"\n  leaseTime: 3600\n  netboot:\n    allowPxe: true\n", int(i/256), i%256, 1+int(i/65536), int(i/256)%256, i%256, i, v}' \
    > "$WORK/hardware-$version.yaml"
done
cp "$WORK/hardware-a.yaml" "$WORK/hardware.yaml"

# Prints "p50 p99 p99.9 max count" in microseconds from a line of latencies.
stats() {
  python3 -c '
import sys
v = sorted(int(x) for x in sys.stdin.read().split())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(q(0.50), q(0.99), q(0.999), v[-1], len(v))'
}

# run BIN LABEL: both phases against one server; prints a table row per phase.
run() {
  local bin=$1 label=$2
  cp "$WORK/hardware-a.yaml" "$WORK/hardware.yaml"
  ip netns exec "$NS" "$bin" --dhcp-addr 127.0.0.1:1067 --tftp-enabled=false \
    --http-ipxe-binary-enabled=false --http-ipxe-script-enabled=false --syslog-enabled=false \
    --public-ip-interface lo --backend-file-path "$WORK/hardware.yaml" --user root \
    --log-level info 2> "$WORK/$label.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "SIGHUP reloads" "$WORK/$label.log" && break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/$label.log" >&2; exit 1; }
  local quiet busy
  quiet=$(ip netns exec "$NS" python3 benches/dhcp_latency_client.py "$SECONDS_PER_PHASE" "$MACHINES" "$RATE" 51 | stats)
  (
    n=0
    while :; do
      v=$([ $((n % 2)) = 0 ] && echo b || echo a)
      cp "$WORK/hardware-$v.yaml" "$WORK/hardware.next" && mv "$WORK/hardware.next" "$WORK/hardware.yaml"
      n=$((n + 1))
      [ $((n % 5)) = 0 ] && kill -HUP "$SERVER_PID"
      sleep 0.3
    done
  ) &
  LOOP_PID=$!
  busy=$(ip netns exec "$NS" python3 benches/dhcp_latency_client.py "$SECONDS_PER_PHASE" "$MACHINES" "$RATE" 51 | stats)
  kill "$LOOP_PID"; wait "$LOOP_PID" 2>/dev/null || true; LOOP_PID=
  sleep 1
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  local reloads took
  reloads=$(grep -c "inventory reloaded" "$WORK/$label.log" || true)
  took=$({ grep -o "loaded in [0-9.]*s" "$WORK/$label.log" || true; } | awk '{s+=$3; n++} END{if(n) printf "%.3f s", s/n; else print "-"}')
  printf '| %-30s | quiet | %s |\n' "$label" "$(echo "$quiet" | awk '{printf "%6d | %6d | %6d | %6d | %6d |", $1, $2, $3, $4, $5}') -"
  printf '| %-30s | reloading | %s |\n' "$label" "$(echo "$busy" | awk '{printf "%6d | %6d | %6d | %6d | %6d |", $1, $2, $3, $4, $5}') $reloads reloads, $took each"
  echo "$busy" > "$WORK/$label.busy"
  echo "$quiet" > "$WORK/$label.quiet"
}

echo "DHCP OFFER latency in microseconds, $MACHINES machines, $RATE DISCOVERs/s, $SECONDS_PER_PHASE s per phase ($(date -u +%F))"
echo "| server | phase | p50 | p99 | p99.9 | max | answers | reloads |"
echo "|---|---|---|---|---|---|---|---|"
run "$NEW" "netbootd (this tree)"
[ -n "$OLD" ] && run "$OLD" "netbootd $BASELINE (baseline)"
p99() { awk '{print $2}' "$WORK/$1"; }
new_busy=$(p99 "netbootd (this tree).busy") new_quiet=$(p99 "netbootd (this tree).quiet")
echo
echo "this tree: p99 while reloading $new_busy us, quiet $new_quiet us: $(python3 -c "print(f'{$new_busy/$new_quiet:.2f}')")x; goal: p99 while reloading <= 5000 us"
if [ -n "$OLD" ]; then
  old_busy=$(p99 "netbootd $BASELINE (baseline).busy")
  echo "baseline $BASELINE: p99 while reloading $old_busy us; this tree / baseline: $(python3 -c "print(f'{$new_busy/$old_busy:.3f}')")x"
fi
