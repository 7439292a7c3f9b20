#!/usr/bin/env bash
# DHCP throughput: Kea's perfdhcp (DORA through the relay path) against netbootd and against
# dnsmasq, one after the other in one run, with the same 5000 reservations, in the same
# network namespaces (created here, deleted on exit). Not a test: it prints figures.
#
#   sudo benches/dhcp-perfdhcp.sh            # RATES="1000 2000 4000 8000 16000 32000" PERIOD=5
#   sudo benches/dhcp-perfdhcp.sh pool       # unknown MACs from an address pool, leases on disk
#
# Pool mode: 5000 unknown MACs (perfdhcp -R) against netbootd's [[pool]] (leases in its journal,
# synced before each ACK batch; new addresses ARP-probed for 200 ms), Kea's kea-dhcp4 2.2 from
# Debian (memfile, lease file on disk; unpacked from its package, never installed as a service)
# and dnsmasq (lease file on disk, no-ping: dnsmasq's ping check would make it wait); each
# server starts with no leases and keeps them from one rate to the next. The summary adds CPU
# per 1,000 ACKs over the whole sweep.
#
# For each server: the highest target rate finished with 0 % drops, the highest completed
# rate (ACKs per second), the average DORA delay at the highest lossless rate, and at the end
# the ratio netbootd/dnsmasq. server_cpu% is the server's CPU use during the run (100 = one
# core) and perfdhcp_cpu% the load generator's, over the run including its 1 s exit wait: a
# server well below 100 while perfdhcp is near its own (one-core) limit means perfdhcp is the limit. Both servers log only warnings (dnsmasq: quiet-dhcp), keep
# leases in memory (dnsmasq: leasefile-ro) and answer only the reserved MACs.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-reservation}
RATES=${RATES:-1000 2000 4000 8000 16000 32000}
PERIOD=${PERIOD:-5}
CLIENTS=${CLIENTS:-5000}
NS_SRV=nbb-srv NS_CLI=nbb-cli
WORK=$(mktemp -d /tmp/netbootd-bench.XXXXXX)
chmod 755 "$WORK"   # dnsmasq reads its hosts file as nobody

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
need=()
for p in kea-admin dnsmasq-base iproute2; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cargo build --release --locked -q
BIN=$PWD/target/release/netbootd
KEA=
if [ "$MODE" = pool ]; then
  # Kea's DHCPv4 server from its Debian package, unpacked (its package would start a service).
  tests/tools/unpack-dhcp-servers.sh "$PWD/target/peers"
  KEA=$PWD/target/peers/kea/usr/sbin/kea-dhcp4
fi

SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  ip netns del "$NS_SRV" 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then echo "outputs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- topology: srv s0 10.77.0.1/16 <-> c0 10.77.0.2/16 cli (perfdhcp acts as relay) -------
ip netns del "$NS_SRV" 2>/dev/null || true
ip netns del "$NS_CLI" 2>/dev/null || true
ip netns add "$NS_SRV"; ip netns add "$NS_CLI"
ip link add s0 netns "$NS_SRV" type veth peer name c0 netns "$NS_CLI"
ip -n "$NS_SRV" addr add 10.77.0.1/16 dev s0; ip -n "$NS_SRV" link set s0 up; ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" addr add 10.77.0.2/16 dev c0; ip -n "$NS_CLI" link set c0 up; ip -n "$NS_CLI" link set lo up

# --- the same reservations for both servers ----------------------------------------------
awk -v n="$CLIENTS" 'BEGIN{for(i=0;i<n;i++) printf "02:50:00:00:%02x:%02x,10.77.%d.%d\n",
   int(i/256), i%256, 100+int(i/250), 1+i%250}' > "$WORK/reservations.csv"
cut -d, -f1 "$WORK/reservations.csv" > "$WORK/macs.txt"
awk -F, '{printf "%s:\n  ipAddress: \"%s\"\n  subnetMask: \"255.255.0.0\"\n  defaultGateway: \"10.77.0.1\"\n  leaseTime: 3600\n", $1, $2}' \
  "$WORK/reservations.csv" > "$WORK/hardware.yaml"
cat > "$WORK/dnsmasq.conf" <<EOF
port=0
interface=s0
bind-interfaces
pid-file=
log-facility=-
leasefile-ro
quiet-dhcp
dhcp-authoritative
dhcp-lease-max=100000
dhcp-range=10.77.0.0,static,255.255.0.0,1h
dhcp-hostsfile=$WORK/reservations.csv
EOF

start() {  # start NAME CMD... ; waits for UDP 67
  ip netns exec "$NS_SRV" "${@:2}" >"$WORK/$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    ip netns exec "$NS_SRV" ss -Hlun 'sport = :67' | grep -q . && return 0
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$WORK/$1.log" >&2; exit 1
}
stop() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }
KEEP=${KEEP:-0}   # KEEP=1 keeps the work directory (server logs, perfdhcp outputs)

# CPU time (user + system, clock ticks) the server has used so far
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }

# sweep NAME: one perfdhcp run per rate; prints a row each and sets BEST_* for the summary
sweep() {
  local name=$1 r out rate acks d1 d2 avg
  BEST_LOSSLESS=0 BEST_ACKS=0 BEST_DELAY=- SUM_TICKS=0 SUM_ACKS=0
  printf '%-9s %-7s %-8s %-9s %-9s %-7s %-11s %s\n' server target acks/s drop_DO% drop_RA% avg_ms server_cpu% perfdhcp_cpu%
  for r in $RATES; do
    out=$WORK/$name-$r.out
    local t0 c0 cpu
    t0=$(date +%s%N) c0=$(cpu_ticks)
    local gen
    gen=$( { TIMEFORMAT=%P; time timeout $((PERIOD + 30)) ip netns exec "$NS_CLI" perfdhcp -4 -l c0 \
      -r "$r" "${CLIENT_ARGS[@]}" -p "$PERIOD" -W 1000000 10.77.0.1 >"$out" 2>&1 || true; } 2>&1 )
    SUM_TICKS=$((SUM_TICKS + $(cpu_ticks) - c0))
    cpu=$(awk -v c="$(( $(cpu_ticks) - c0 ))" -v t="$(( $(date +%s%N) - t0 ))" -v hz="$(getconf CLK_TCK)" \
      'BEGIN{printf "%.0f", 100 * c / hz / (t / 1e9)}')
    read -r d1 d2 <<<"$(awk '/^drops ratio/{printf "%s ", $3}' "$out")"
    avg=$(awk '/^avg delay:/{print $3; exit}' "$out")
    acks=$(awk -v p="$PERIOD" '/^received packets/{n++; if(n==2){printf "%.0f", $3/p; exit}}' "$out")
    printf '%-9s %-7s %-8s %-9s %-9s %-7s %-11s %s\n' "$name" "$r" "${acks:-0}" "${d1:--}" "${d2:--}" "${avg:--}" "$cpu" "${gen%.*}"
    if awk -v a="${d1:-100}" -v b="${d2:-100}" 'BEGIN{exit !(a+0==0 && b+0==0)}'; then
      BEST_LOSSLESS=$r BEST_DELAY=$avg
    fi
    if [ "${acks:-0}" -gt "$BEST_ACKS" ]; then BEST_ACKS=$acks; fi
    SUM_ACKS=$((SUM_ACKS + ${acks:-0} * PERIOD))
  done
  CPU_PER_1000=$(awk -v t="$SUM_TICKS" -v a="$SUM_ACKS" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.0f", (a ? 1000 * 1000 * t / hz / a : 0)}')
}

if [ "$MODE" = pool ]; then
  CLIENT_ARGS=(-R "$CLIENTS")
  echo "perfdhcp $(perfdhcp -v 2>&1 | head -1), $CLIENTS unknown MACs from a pool of 8188, leases on disk, ${PERIOD}s per rate, relay path"
  printf '[[pool]]\nname = "bench"\nrange = "10.77.16.1-10.77.47.252"\nsubnet = "10.77.0.0/16"\ngateway = "10.77.0.1"\nlease-time = "1h"\n' > "$WORK/pool.toml"
  echo '{}' > "$WORK/empty.yaml"
  mkdir -p "$WORK/state" "$WORK/kea"
  start netbootd "$BIN" --config "$WORK/pool.toml" --backend-file-path "$WORK/empty.yaml" \
    --state-dir "$WORK/state" --dhcp-iface s0 --ipxe-dir "$WORK" --tftp-enabled=false \
    --syslog-enabled=false --http-ipxe-binary-enabled=false --http-ipxe-script-enabled=false \
    --log-level warn
  sweep netbootd
  NB_LOSSLESS=$BEST_LOSSLESS NB_ACKS=$BEST_ACKS NB_DELAY=$BEST_DELAY NB_CPU=$CPU_PER_1000
  stop
  echo "netbootd journal: $(wc -l < "$WORK/state/pool.journal") records, $(du -k "$WORK/state/pool.journal" | cut -f1) KiB"
  printf '%s\n' '{"Dhcp4": {' \
    '  "interfaces-config": {"interfaces": ["s0"], "dhcp-socket-type": "udp"},' \
    "  \"lease-database\": {\"type\": \"memfile\", \"persist\": true, \"name\": \"$WORK/kea/leases4.csv\", \"lfc-interval\": 0}," \
    '  "valid-lifetime": 3600,' \
    '  "subnet4": [{"id": 1, "subnet": "10.77.0.0/16", "pools": [{"pool": "10.77.16.1 - 10.77.47.252"}],' \
    '               "option-data": [{"name": "routers", "data": "10.77.0.1"}]}],' \
    '  "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "stderr"}]}]' \
    '}}' > "$WORK/kea.json"
  start kea env KEA_PIDFILE_DIR="$WORK/kea" KEA_LOCKFILE_DIR="$WORK/kea" "$KEA" -c "$WORK/kea.json"
  sweep kea
  KEA_LOSSLESS=$BEST_LOSSLESS KEA_ACKS=$BEST_ACKS KEA_DELAY=$BEST_DELAY KEA_CPU=$CPU_PER_1000
  stop
  printf '%s\n' port=0 interface=s0 bind-interfaces pid-file= log-facility=- \
    "dhcp-leasefile=$WORK/dnsmasq.leases" quiet-dhcp no-ping dhcp-authoritative \
    dhcp-lease-max=100000 dhcp-range=10.77.16.1,10.77.47.252,255.255.0.0,1h > "$WORK/dnsmasq-pool.conf"
  start dnsmasq dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq-pool.conf"
  sweep dnsmasq
  DM_LOSSLESS=$BEST_LOSSLESS DM_ACKS=$BEST_ACKS DM_DELAY=$BEST_DELAY DM_CPU=$CPU_PER_1000
  stop
  echo
  printf '%-9s %-22s %-20s %-20s %s\n' server highest_lossless/s highest_completed/s avg_ms_at_lossless cpu_ms_per_1000_acks
  printf '%-9s %-22s %-20s %-20s %s\n' netbootd "$NB_LOSSLESS" "$NB_ACKS" "$NB_DELAY" "$NB_CPU"
  printf '%-9s %-22s %-20s %-20s %s\n' kea "$KEA_LOSSLESS" "$KEA_ACKS" "$KEA_DELAY" "$KEA_CPU"
  printf '%-9s %-22s %-20s %-20s %s\n' dnsmasq "$DM_LOSSLESS" "$DM_ACKS" "$DM_DELAY" "$DM_CPU"
  awk -v a="$NB_LOSSLESS" -v b="$KEA_LOSSLESS" -v c="$NB_ACKS" -v d="$KEA_ACKS" -v e="$DM_LOSSLESS" -v f="$DM_ACKS" 'BEGIN{
    printf "ratio netbootd/kea: lossless %.1fx, completed %.1fx; netbootd/dnsmasq: lossless %.1fx, completed %.1fx\n",
      (b ? a/b : 0), (d ? c/d : 0), (e ? a/e : 0), (f ? c/f : 0)}'
  exit 0
fi
CLIENT_ARGS=(-M "$WORK/macs.txt")

echo "perfdhcp $(perfdhcp -v 2>&1 | head -1), $CLIENTS reserved MACs, ${PERIOD}s per rate, relay path"
start netbootd "$BIN" --backend-file-path "$WORK/hardware.yaml" --dhcp-iface s0 --ipxe-dir "$WORK" \
  --tftp-enabled=false --syslog-enabled=false --http-ipxe-binary-enabled=false \
  --http-ipxe-script-enabled=false --log-level warn
sweep netbootd
NB_LOSSLESS=$BEST_LOSSLESS NB_ACKS=$BEST_ACKS NB_DELAY=$BEST_DELAY
stop
start dnsmasq dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf"
sweep dnsmasq
DM_LOSSLESS=$BEST_LOSSLESS DM_ACKS=$BEST_ACKS DM_DELAY=$BEST_DELAY
stop

echo
printf '%-9s %-22s %-20s %s\n' server highest_lossless/s highest_completed/s avg_ms_at_lossless
printf '%-9s %-22s %-20s %s\n' netbootd "$NB_LOSSLESS" "$NB_ACKS" "$NB_DELAY"
printf '%-9s %-22s %-20s %s\n' "dnsmasq" "$DM_LOSSLESS" "$DM_ACKS" "$DM_DELAY"
awk -v a="$NB_LOSSLESS" -v b="$DM_LOSSLESS" -v c="$NB_ACKS" -v d="$DM_ACKS" 'BEGIN{
  printf "ratio netbootd/dnsmasq: lossless %.1fx, completed %.1fx\n", (b ? a/b : 0), (d ? c/d : 0)}'
