#!/usr/bin/env bash
# Bytes of log a DHCP storm costs. Not a test: it prints figures. The goal (issue 15): at most
# 1 MB of log a minute under a storm of 250,000 frames a second.
#
#   sudo benches/log-flood.sh      # RATE=250000 SECONDS_NEW=60 SECONDS_OLD=10 BASELINE=7cfc215
#
# In one network namespace (created here, deleted on exit), on its loopback: netbootd answers
# DHCP on 127.0.0.1:1067 in reservation mode with its log going to a file, and
# examples/dhcp_storm.rs sends relayed DISCOVERs from MACs no inventory knows at RATE a second.
# The peer is netbootd at BASELINE, the last commit without the log budget, built from this
# repository in a temporary worktree and stormed for SECONDS_OLD only (it writes a line per
# packet: a minute of it is hundreds of megabytes); its per-minute figure is scaled from that.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-250000}
SECONDS_NEW=${SECONDS_NEW:-60}
SECONDS_OLD=${SECONDS_OLD:-10}
BASELINE=${BASELINE:-7cfc215}
NS=nbb-flood
WORK=$(mktemp -d /tmp/netbootd-flood.XXXXXX)

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
cargo build --release --locked -q
cargo build --release --locked -q --example dhcp_storm
NEW=$PWD/target/release/netbootd
STORM=$PWD/target/release/examples/dhcp_storm
. benches/baseline.sh
baseline_build "$BASELINE" "$WORK"

SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then { kill "$SERVER_PID" && wait "$SERVER_PID"; } 2>/dev/null || true; fi
  ip netns del "$NS" 2>/dev/null || true
  baseline_remove "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
printf '02:77:00:00:00:50:\n  ipAddress: "127.0.0.50"\n  subnetMask: "255.0.0.0"\n' > "$WORK/hardware.yaml"

# storm BIN LABEL SECONDS: one server under the storm; prints a table row.
storm() {
  local bin=$1 label=$2 seconds=$3 log=$WORK/$2.log
  ip netns exec "$NS" "$bin" --dhcp-addr 127.0.0.1:1067 --tftp-enabled=false \
    --http-ipxe-binary-enabled=false --http-ipxe-script-enabled=false --syslog-enabled=false \
    --public-ip-interface lo --backend-file-path "$WORK/hardware.yaml" --user root \
    --state-dir "$WORK" 2> "$log" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "SIGHUP reloads" "$log" && break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; exit 1; }
  local before cpu0 sent cpu1 after
  before=$(stat -c %s "$log")
  cpu0=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  sent=$(ip netns exec "$NS" "$STORM" 127.0.0.1:1067 "$RATE" "$seconds")
  sleep 1.5   # the last window's summary
  cpu1=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  after=$(stat -c %s "$log")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  local bytes=$((after - before))
  local per_minute
  per_minute=$(python3 -c "print(f'{$bytes * 60 / $seconds / 1e6:.2f}')")
  local lines
  lines=$(tail -c "$bytes" "$log" | wc -l)
  local cpu
  cpu=$(python3 -c "print(f'{($cpu1 - $cpu0) / $(getconf CLK_TCK) / $seconds * 100:.0f}')")
  printf '| %s | %s | %s s | %s | %s | %s MB | %s%% |\n' "$label" "$sent" "$seconds" "$lines" "$bytes" "$per_minute" "$cpu"
  echo "$per_minute" > "$WORK/$label.per-minute"
}

echo "Log written under a DHCP storm of $RATE relayed DISCOVERs/s from unknown MACs ($(date -u +%F))"
echo "| server | storm | for | log lines | log bytes | per minute | server CPU |"
echo "|---|---|---|---|---|---|---|"
storm "$NEW" "netbootd" "$SECONDS_NEW"
[ -n "$OLD" ] && storm "$OLD" "netbootd-$BASELINE" "$SECONDS_OLD"
new=$(cat "$WORK/netbootd.per-minute")
echo
echo "netbootd: $new MB of log a minute (goal: at most 1 MB)"
if [ -n "$OLD" ]; then
  old=$(cat "$WORK/netbootd-$BASELINE.per-minute")
  echo "baseline $BASELINE: $old MB a minute; this tree / baseline: $(python3 -c "print(f'{$new / $old:.4f}')")x"
fi
