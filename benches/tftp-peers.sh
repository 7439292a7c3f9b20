#!/usr/bin/env bash
# TFTP throughput: one 64 MiB file fetched with blksize 1468 from netbootd, tftpd-hpa, atftpd
# and dnsmasq, one after the other in one run, over the same veth pair between two network
# namespaces (created here, deleted on exit). Not a test: it prints figures.
#
#   sudo benches/tftp-peers.sh            # SIZE_MB=64 RUNS=3 WINDOW=16
#
# The client is atftp 0.8 for every server (it speaks RFC 7440): once lock-step, once asking
# for windowsize $WINDOW. A server that does not grant windowsize (its OACK leaves it out, seen
# with a traced probe) is shown as "-" in that column. All four servers run at once on their
# own ports (dnsmasq on 69, it has no other), and the runs take turns server by server, so
# drift in the machine's speed hits them alike. Each figure is the median of $RUNS fetches,
# in MB/s (10^6 bytes); every fetch is compared byte for byte.
#
# tftpd-hpa and atftpd conflict as Debian packages and would start services on install, so
# they are not installed: their .debs are downloaded (apt-get download) and unpacked into
# target/bench-peers, and run from there. dnsmasq comes from dnsmasq-base (no service).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-64}
RUNS=${RUNS:-3}
WINDOW=${WINDOW:-16}
NS_SRV=nbt-tftp-srv NS_CLI=nbt-tftp-cli
SRV_IP=10.77.0.1
WORK=$(mktemp -d /tmp/netbootd-tftp-bench.XXXXXX)
chmod 755 "$WORK"

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
need=()
for p in atftp dnsmasq-base iproute2; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
PEERS=$PWD/target/bench-peers
if [ ! -x "$PEERS/root/usr/sbin/in.tftpd" ] || [ ! -x "$PEERS/root/usr/sbin/atftpd" ]; then
  mkdir -p "$PEERS" && chmod 777 "$PEERS"
  (cd "$PEERS" && apt-get download tftpd-hpa atftpd libwrap0 >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download tftpd-hpa atftpd libwrap0; })
  for deb in "$PEERS"/*.deb; do dpkg-deb -x "$deb" "$PEERS/root"; done
fi
export LD_LIBRARY_PATH=$PEERS/root/lib/x86_64-linux-gnu:$PEERS/root/usr/lib/x86_64-linux-gnu
cargo build --release --locked -q
BIN=$PWD/target/release/netbootd

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  ip netns del "$NS_SRV" 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- topology: srv s0 10.77.0.1/16 <-> c0 10.77.0.2/16 cli --------------------------------
ip netns del "$NS_SRV" 2>/dev/null || true
ip netns del "$NS_CLI" 2>/dev/null || true
ip netns add "$NS_SRV"; ip netns add "$NS_CLI"
ip link add s0 netns "$NS_SRV" type veth peer name c0 netns "$NS_CLI"
ip -n "$NS_SRV" addr add $SRV_IP/16 dev s0; ip -n "$NS_SRV" link set s0 up; ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" addr add 10.77.0.2/16 dev c0; ip -n "$NS_CLI" link set c0 up; ip -n "$NS_CLI" link set lo up

ROOT=$WORK/root
mkdir -p "$ROOT" "$WORK/out" && chmod 755 "$ROOT" && chmod 777 "$WORK/out"
head -c $((SIZE_MB << 20)) /dev/urandom > "$ROOT/big.bin"
chmod 644 "$ROOT/big.bin"
echo '{}' > "$WORK/hardware.yaml"

start() {  # start NAME PORT CMD... ; waits for the UDP port
  ip netns exec "$NS_SRV" "${@:3}" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  PORT[$1]=$2
  for _ in $(seq 100); do
    ip netns exec "$NS_SRV" ss -Hlun "sport = :$2" | grep -q . && return 0
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$WORK/$1.log" >&2; exit 1
}

# fetch PORT [OPTIONS...]: one atftp download; prints MB/s (or "fail")
fetch() {
  local port=$1 out=$WORK/out/f t0 t1 args=()
  shift
  for o in "$@"; do args+=(--option "$o"); done
  rm -f "$out"
  t0=$(date +%s%N)
  if ! timeout 300 ip netns exec "$NS_CLI" atftp "${args[@]}" -g -r big.bin -l "$out" $SRV_IP "$port" >/dev/null 2>&1 \
     || ! cmp -s "$out" "$ROOT/big.bin"; then
    echo fail; return
  fi
  t1=$(date +%s%N)
  awk -v b="$((SIZE_MB << 20))" -v ns="$((t1 - t0))" 'BEGIN{printf "%.1f", b / (ns / 1e9) / 1e6}'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{if(!NR){print "fail"} else print a[int((NR+1)/2)]}'; }

SERVERS=(netbootd tftpd-hpa atftpd dnsmasq)
declare -A PORT LOCK WIN RUNS_L RUNS_W GRANTED
start netbootd 6901 "$BIN" --backend-file-path "$WORK/hardware.yaml" --assets-dir "$ROOT" --ipxe-dir "$ROOT" \
  --tftp-addr $SRV_IP --tftp-port 6901 --tftp-block-size 1468 --tftp-window-size 64 --dhcp-enabled=false \
  --syslog-enabled=false --http-ipxe-binary-enabled=false --http-ipxe-script-enabled=false --log-level warn
start tftpd-hpa 6902 "$PEERS/root/usr/sbin/in.tftpd" --foreground --listen --address $SRV_IP:6902 \
  --user nobody --secure "$ROOT"
start atftpd 6903 "$PEERS/root/usr/sbin/atftpd" --daemon --no-fork --bind-address $SRV_IP --port 6903 \
  --user nobody --group nogroup --logfile /dev/null "$ROOT"
start dnsmasq 69 dnsmasq --keep-in-foreground --port=0 --enable-tftp --tftp-root="$ROOT" \
  --listen-address=$SRV_IP --bind-interfaces --pid-file= --log-facility=- --user=nobody

echo "atftp 0.8 client, ${SIZE_MB} MiB file, blksize 1468, $RUNS runs each (taking turns), median MB/s"
for s in "${SERVERS[@]}"; do
  oack=$(timeout 30 ip netns exec "$NS_CLI" atftp --trace --option "windowsize $WINDOW" \
    --option "blksize 1468" -g -r big.bin -l /dev/null $SRV_IP "${PORT[$s]}" 2>&1 | grep -m1 "received OACK" || true)
  [[ "$oack" == *"windowsize: $WINDOW"* ]] && GRANTED[$s]=1 || GRANTED[$s]=0
done
for i in $(seq "$RUNS"); do
  for s in "${SERVERS[@]}"; do
    RUNS_L[$s]+=" $(fetch "${PORT[$s]}" "blksize 1468")"
    if [ "${GRANTED[$s]}" = 1 ]; then
      RUNS_W[$s]+=" $(fetch "${PORT[$s]}" "blksize 1468" "windowsize $WINDOW")"
    fi
  done
done
for s in "${SERVERS[@]}"; do
  LOCK[$s]=$(echo "${RUNS_L[$s]}" | median)
  if [ "${GRANTED[$s]}" = 1 ]; then WIN[$s]=$(echo "${RUNS_W[$s]}" | median); else WIN[$s]=-; fi
  printf '%-10s lock-step runs:%s   windowsize %s runs:%s\n' "$s" "${RUNS_L[$s]}" "$WINDOW" "${RUNS_W[$s]:- (not granted)}"
done

echo
printf '%-10s %-12s %s\n' server lock-step "windowsize $WINDOW"
for s in netbootd tftpd-hpa atftpd dnsmasq; do
  printf '%-10s %-12s %s\n' "$s" "${LOCK[$s]}" "${WIN[$s]}"
done
best_lock=$(printf '%s\n' "${LOCK[tftpd-hpa]}" "${LOCK[atftpd]}" "${LOCK[dnsmasq]}" | grep -v fail | sort -g | tail -1)
awk -v nl="${LOCK[netbootd]}" -v nw="${WIN[netbootd]}" -v bl="${best_lock:-0}" -v aw="${WIN[atftpd]}" 'BEGIN{
  printf "netbootd lock-step / best peer lock-step: %.2fx (goal >= 1.0)\n", (bl ? nl/bl : 0)
  printf "netbootd windowsize / best peer lock-step: %.2fx (goal >= 4.0)\n", (bl ? nw/bl : 0)
  if (aw+0 > 0) printf "netbootd windowsize / atftpd windowsize: %.2fx (goal >= 1.0)\n", nw/aw
}'
