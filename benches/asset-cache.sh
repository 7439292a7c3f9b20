#!/usr/bin/env bash
# asset-cache.sh - 100 clients fetch one 100 MB file at once through a pull-through cache:
# netbootd's asset cache against nginx's proxy_cache (Debian's nginx 1.22, unpacked, not
# installed), both in front of the same upstream (tests/tools/upstream.py) on loopback in a
# network namespace made here.
#   cold: the cache is empty; time until the last client has its last byte, and the bytes the
#         upstream sent (1x the file is the goal: one fetch however many clients).
#         nginx: proxy_cache_lock on (one upstream fetch; the others wait for it to finish).
#   warm: the file is cached; netbootd from its cache against nginx serving the same file as a
#         static file (sendfile on).
# Every client's body is compared with the file (cmp). Goals: cold <= 1.0x nginx, warm >= 0.9x
# nginx static (as throughput: netbootd's time at most 1/0.9 of nginx's).
# A 2-core VM varies by 10 % from run to run, so ROUNDS rounds each start both servers afresh
# with empty caches, take turns at going first, and start after `sync` (no writeback of the
# previous round's files); the figures are the medians.
#   sudo benches/asset-cache.sh          # CLIENTS=100 MB=100 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-100}
MB=${MB:-100}
ROUNDS=${ROUNDS:-3}
NS=nbt-assetbench
[ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 1; }
need=()
for p in curl bc python3 iproute2; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
PEERS=$PWD/target/bench-peers
NGINX=$PEERS/root/usr/sbin/nginx
if [ ! -x "$NGINX" ]; then
  mkdir -p "$PEERS" && chmod 777 "$PEERS"
  (cd "$PEERS" && apt-get download nginx >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download nginx; })
  dpkg-deb -x "$PEERS"/nginx_*.deb "$PEERS/root"
fi
cargo build --release --locked -q
BIN=$PWD/target/release/netbootd
WORK=$(mktemp -d /tmp/netbootd-asset-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up

mkdir -p "$WORK/mirror" "$WORK/tmp"
head -c $((MB << 20)) /dev/urandom > "$WORK/mirror/big.bin"
echo '{}' > "$WORK/hardware.yaml"
chmod -R a+rwX "$WORK"
cat > "$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  sendfile on;
  tcp_nopush on;
  proxy_cache_path $WORK/ngcache levels=1:2 keys_zone=assets:10m max_size=10g inactive=1d use_temp_path=off;
  server {
    listen 127.0.0.1:8082;
    location /assets/ {
      proxy_pass http://127.0.0.1:8090/;
      proxy_cache assets;
      proxy_cache_valid 200 1d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 600s;
      proxy_cache_lock_age 600s;
      proxy_buffering on;
    }
    location /static/ { alias $WORK/mirror/; }
  }
}
EOF
wait_port() {  # wait_port PORT LOG
  for _ in $(seq 100); do
    ip netns exec "$NS" ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.1
  done
  echo "nothing listens on $1:" >&2; cat "$2" >&2; exit 1
}
ip netns exec "$NS" python3 tests/tools/upstream.py "$WORK/mirror" 8090 0 127.0.0.1 "$WORK/upstream.log" \
  >/dev/null &
PIDS+=($!)
wait_port 8090 "$WORK/upstream.log"
# start_netbootd / start_nginx: a server with an empty cache; stop_server stops it.
start_netbootd() {
  rm -rf "$WORK/nbcache" && mkdir -m 777 "$WORK/nbcache"
  ip netns exec "$NS" "$BIN" --backend-file-path "$WORK/hardware.yaml" --user root \
    --dhcp-enabled=false --tftp-enabled=false --syslog-enabled=false \
    --http-addr 127.0.0.1 --http-port 8080 --http-max-connections-per-client 256 \
    --assets-upstream http://127.0.0.1:8090/ --assets-cache-dir "$WORK/nbcache" \
    >/dev/null 2>"$WORK/netbootd.log" &
  SERVER=$!
  PIDS+=("$SERVER")
  wait_port 8080 "$WORK/netbootd.log"
}
start_nginx() {
  rm -rf "$WORK/ngcache" && mkdir -m 777 "$WORK/ngcache"
  ip netns exec "$NS" "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" \
    >/dev/null 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  wait_port 8082 "$WORK/nginx-error.log"
}
stop_server() {
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  PIDS=("${PIDS[@]/$SERVER/}")
}

# run URL: CLIENTS curls at once, each body compared with the file; prints the seconds until
# the last one finished.
run() {
  local url=$1 start end fails
  sync
  start=$(date +%s.%N)
  for i in $(seq "$CLIENTS"); do
    ip netns exec "$NS" sh -c "curl -sS --max-time 600 '$url' | cmp -s - '$WORK/mirror/big.bin' || echo bad" \
      >"$WORK/client-$i" 2>&1 &
  done
  wait_clients
  end=$(date +%s.%N)
  fails=$(cat "$WORK"/client-* | grep -c . || true)
  ((fails == 0)) || { echo "$fails clients got wrong bytes from $url" >&2; exit 1; }
  echo "$end - $start" | bc -l
}
wait_clients() {
  # Every background job but the servers.
  local job
  for job in $(jobs -p); do
    [[ " ${PIDS[*]} " == *" $job "* ]] || wait "$job"
  done
}
upstream_mb() { grep -c "GET $1 200" "$WORK/upstream.log" || true; }

# Untimed: the upstream's first answer and the file's first reads happen before any round.
ip netns exec "$NS" curl -sS -o /dev/null http://127.0.0.1:8090/big.bin
: > "$WORK/upstream.log"

# measure SERVER COLD_URL WARM_URL: one round's cold and warm seconds for netbootd or nginx,
# appended to SERVER_cold and SERVER_warm (one upstream GET is checked).
netbootd_cold=() netbootd_warm=() nginx_cold=() nginx_warm=()
measure() {
  local server=$1 t gets
  : > "$WORK/upstream.log"
  "start_$server"
  t=$(run "$2")
  eval "${server}_cold+=($t)"
  gets=$(upstream_mb /big.bin)
  ((gets == 1)) || { echo "$server made $gets upstream GETs" >&2; exit 1; }
  t=$(run "$3")
  eval "${server}_warm+=($t)"
  stop_server
}
measure_netbootd() { measure netbootd http://127.0.0.1:8080/assets/big.bin http://127.0.0.1:8080/assets/big.bin; }
measure_nginx() { measure nginx http://127.0.0.1:8082/assets/big.bin http://127.0.0.1:8082/static/big.bin; }
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then measure_netbootd; measure_nginx; else measure_nginx; measure_netbootd; fi
  printf 'round %d: cold netbootd %.2f s nginx %.2f s; warm netbootd %.2f s nginx %.2f s\n' "$round" \
    "${netbootd_cold[-1]}" "${nginx_cold[-1]}" "${netbootd_warm[-1]}" "${nginx_warm[-1]}"
done
med() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
nb_cold=$(med "${netbootd_cold[@]}")
ng_cold=$(med "${nginx_cold[@]}")
nb_w=$(med "${netbootd_warm[@]}")
ng_w=$(med "${nginx_warm[@]}")

echo "asset cache, $CLIENTS clients x $MB MB at once, medians of $ROUNDS rounds, $(date -u +%F) ($(nproc) cores)"
printf '%-48s %8.2f s   upstream GETs: 1 (%s MB) each round\n' "netbootd cold (cache empty)" "$nb_cold" "$MB"
printf '%-48s %8.2f s   upstream GETs: 1 (%s MB) each round\n' "nginx proxy_cache cold (proxy_cache_lock on)" "$ng_cold" "$MB"
printf '%-48s %8.2f s\n' "netbootd warm (from its cache)" "$nb_w"
printf '%-48s %8.2f s\n' "nginx static (sendfile)" "$ng_w"
printf 'cold: netbootd/nginx time %.2fx (goal <= 1.0x)\n' "$(echo "$nb_cold / $ng_cold" | bc -l)"
printf 'warm: netbootd/nginx throughput %.2fx (goal >= 0.9x)\n' "$(echo "$ng_w / $nb_w" | bc -l)"
