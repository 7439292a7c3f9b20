#!/usr/bin/env bash
# Script requests during a slowloris attack. Not a test: it prints figures. The goal (issue
# 15): with 2,000 trickling connections from one address and 2,000 from 100 addresses, script
# requests from another client keep answering 200 with p99 < 50 ms, and RSS stays under 32 MiB.
#
#   sudo benches/http-slowloris.sh      # SECONDS_ATTACK=40 BASELINE=7cfc215
#
# In one network namespace (created here, deleted on exit), on its loopback: netbootd serves
# HTTP on 127.0.0.1:8080. Two tricklers (Python) keep their connections open by sending a
# request head one byte every 5 s, reconnecting whenever the server closes one: 2,000 from
# 127.0.0.2, and 2,000 from 127.0.1.1-100 (20 each). From 127.0.0.1 a client asks for a
# machine's script every 20 ms on a new connection and times each answer; netbootd's RSS is
# sampled every 0.5 s. The peer is netbootd at BASELINE (one thread per connection with a
# per-read timeout), built from this repository in a temporary worktree, under the same attack.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_ATTACK=${SECONDS_ATTACK:-40}
BASELINE=${BASELINE:-7cfc215}
NS=nbb-loris
WORK=$(mktemp -d /tmp/netbootd-loris.XXXXXX)

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"   # 2,000 sockets per trickler
cargo build --release --locked -q
NEW=$PWD/target/release/netbootd
. benches/baseline.sh
baseline_build "$BASELINE" "$WORK"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do { kill "$p" && wait "$p"; } 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  baseline_remove "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
cat > "$WORK/hardware.yaml" <<'EOF'
02:77:00:00:00:50:
  ipAddress: "127.0.0.50"
  subnetMask: "255.0.0.0"
  netboot:
    allowPxe: true
    ipxeScript: "chain http://boot.example/x.ipxe"
EOF

cat > "$WORK/trickle.py" <<'PY'
"""trickle.py COUNT SOURCES SECONDS: COUNT connections to 127.0.0.1:8080 spread over the
source addresses SOURCES (comma-separated), each sending a request head one byte every 5 s and
reconnecting when closed, for SECONDS."""
import socket, sys, time
count, sources, seconds = int(sys.argv[1]), sys.argv[2].split(","), float(sys.argv[3])
head = b"GET /02:77:00:00:00:50/auto.ipxe HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 4096
def connect(i):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind((sources[i % len(sources)], 0))
    try:
        s.connect(("127.0.0.1", 8080))
    except BlockingIOError:
        pass
    return [s, 0]
conns = [connect(i) for i in range(count)]
end, reconnects = time.monotonic() + seconds, 0
while time.monotonic() < end:
    for i, c in enumerate(conns):
        try:
            c[0].send(head[c[1]:c[1] + 1])
            c[1] = min(c[1] + 1, len(head) - 1)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            c[0].close()
            conns[i] = connect(i)
            reconnects += 1
    time.sleep(5)
print(f"reconnects {reconnects}", file=sys.stderr)
PY

cat > "$WORK/scripts.py" <<'PY'
"""scripts.py SECONDS: a script request every 20 ms from 127.0.0.1; prints "status ms" lines."""
import http.client, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    start = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=5, source_address=("127.0.0.1", 0))
        c.request("GET", "/02:77:00:00:00:50/auto.ipxe")
        status = c.getresponse().status
        c.close()
    except OSError:
        status = 0
    print(status, f"{(time.perf_counter() - start) * 1000:.2f}", flush=True)
    time.sleep(0.02)
PY

# attack BIN LABEL: one server under both tricklers; prints a table row.
attack() {
  local bin=$1 label=$2
  ip netns exec "$NS" "$bin" --http-addr 127.0.0.1 --http-port 8080 --dhcp-enabled=false \
    --tftp-enabled=false --syslog-enabled=false --public-ip-interface lo --user root \
    --backend-file-path "$WORK/hardware.yaml" --state-dir "$WORK" 2> "$WORK/$label.log" &
  local server=$!
  PIDS+=("$server")
  for _ in $(seq 100); do grep -q "SIGHUP reloads" "$WORK/$label.log" && break; sleep 0.1; done
  local ones hundred
  ones=127.0.0.2
  hundred=$(seq -s, -f '127.0.1.%g' 1 100)
  ip netns exec "$NS" python3 "$WORK/trickle.py" 2000 "$ones" "$SECONDS_ATTACK" 2> "$WORK/$label.t1" &
  PIDS+=("$!")
  ip netns exec "$NS" python3 "$WORK/trickle.py" 2000 "$hundred" "$SECONDS_ATTACK" 2> "$WORK/$label.t2" &
  PIDS+=("$!")
  sleep 3
  ( while kill -0 "$server" 2>/dev/null; do awk '/VmRSS/{print $2}' "/proc/$server/status"; sleep 0.5; done ) > "$WORK/$label.rss" 2>/dev/null &
  PIDS+=("$!")
  ip netns exec "$NS" python3 "$WORK/scripts.py" $((SECONDS_ATTACK - 5)) > "$WORK/$label.scripts"
  sleep 3
  kill "$server"; wait "$server" 2>/dev/null || true
  python3 - "$WORK/$label.scripts" "$WORK/$label.rss" "$label" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ok = sorted(float(ms) for status, ms in rows if status == "200")
other = len(rows) - len(ok)
rss = max((int(x) for x in open(sys.argv[2]).read().split()), default=0) / 1024
q = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] if ok else float("nan")
print(f"| {sys.argv[3]} | {len(rows)} | {len(ok)} | {other} | {q(0.5):.1f} | {q(0.99):.1f} | {ok[-1] if ok else float('nan'):.1f} | {rss:.1f} MiB |")
PY
}

echo "Script requests during 2,000 + 2,000 trickling connections, ${SECONDS_ATTACK} s ($(date -u +%F))"
echo "| server | script requests | 200 | not 200 | p50 ms | p99 ms | max ms | peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
attack "$NEW" "netbootd"
[ -n "$OLD" ] && attack "$OLD" "netbootd-$BASELINE"
