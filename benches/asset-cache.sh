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
#   sudo benches/asset-cache.sh          # CLIENTS=100 MB=100
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-100}
MB=${MB:-100}
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

mkdir -p "$WORK/mirror" "$WORK/tmp" "$WORK/nbcache" "$WORK/ngcache"
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
ip netns exec "$NS" "$BIN" --backend-file-path "$WORK/hardware.yaml" --user root \
  --dhcp-enabled=false --tftp-enabled=false --syslog-enabled=false \
  --http-addr 127.0.0.1 --http-port 8080 --http-max-connections-per-client 256 \
  --assets-upstream http://127.0.0.1:8090/ --assets-cache-dir "$WORK/nbcache" \
  >/dev/null 2>"$WORK/netbootd.log" &
PIDS+=($!)
wait_port 8080 "$WORK/netbootd.log"
ip netns exec "$NS" "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" \
  >/dev/null 2>&1 &
PIDS+=($!)
wait_port 8082 "$WORK/nginx-error.log"

# run URL: CLIENTS curls at once, each body compared with the file; prints the seconds until
# the last one finished.
run() {
  local url=$1 start end fails
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

nb_cold=$(run http://127.0.0.1:8080/assets/big.bin)
nb_gets=$(upstream_mb /big.bin)
: > "$WORK/upstream.log"
ng_cold=$(run http://127.0.0.1:8082/assets/big.bin)
ng_gets=$(upstream_mb /big.bin)
nb_warm=$(run http://127.0.0.1:8080/assets/big.bin)
ng_warm=$(run http://127.0.0.1:8082/static/big.bin)
nb_warm2=$(run http://127.0.0.1:8080/assets/big.bin)
ng_warm2=$(run http://127.0.0.1:8082/static/big.bin)
med() { printf '%s\n' "$@" | sort -g | head -1; }
nb_w=$(med "$nb_warm" "$nb_warm2")
ng_w=$(med "$ng_warm" "$ng_warm2")

echo "asset cache, $CLIENTS clients x $MB MB at once, $(date -u +%F) ($(nproc) cores)"
printf '%-48s %8.2f s   upstream GETs: %s (%s MB)\n' "netbootd cold (cache empty)" "$nb_cold" "$nb_gets" "$((nb_gets * MB))"
printf '%-48s %8.2f s   upstream GETs: %s (%s MB)\n' "nginx proxy_cache cold (proxy_cache_lock on)" "$ng_cold" "$ng_gets" "$((ng_gets * MB))"
printf '%-48s %8.2f s\n' "netbootd warm (from its cache; best of 2)" "$nb_w"
printf '%-48s %8.2f s\n' "nginx static (sendfile; best of 2)" "$ng_w"
printf 'cold: netbootd/nginx time %.2fx (goal <= 1.0x)\n' "$(echo "$nb_cold / $ng_cold" | bc -l)"
printf 'warm: netbootd/nginx throughput %.2fx (goal >= 0.9x)\n' "$(echo "$ng_w / $nb_w" | bc -l)"
