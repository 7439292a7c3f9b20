#!/usr/bin/env bash
# HTTP throughput: netbootd's script route (/<mac>/auto.ipxe, a boot profile rendered per
# request) and a 1 MiB asset, against nginx 1.22 serving static files: the script's own bytes
# saved as a file, and the same 1 MiB file. One run, wrk (Debian package) as the client. Not a
# test: it prints figures and ratios.
#
#   sudo benches/http-nginx.sh            # RUNS=3 DURATION=8 CONNECTIONS=32
#
# Everything runs on the loopback of a network namespace made here (deleted on exit), so
# nothing on the host is reached. netbootd logs its access line per request to a file, and
# nginx writes its access log to a file too, as both would in service. nginx runs with its
# Debian defaults that matter here (worker_processes auto, sendfile on, keepalive_requests
# 1000). The runs take turns (netbootd, nginx, netbootd, ...), and each figure is the median
# of $RUNS, in requests/s.
#
# nginx is not installed (the package would start a service on port 80): its .deb is
# downloaded (apt-get download) and unpacked into target/bench-peers. wrk is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
NS=nbt-http
MAC=02:77:00:00:00:70
WORK=$(mktemp -d /tmp/netbootd-http-bench.XXXXXX)
chmod 755 "$WORK"

[ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 1; }
need=()
for p in wrk curl iproute2; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
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
in_ns() { ip netns exec "$NS" "$@"; }

mkdir -p "$WORK/assets/boot" "$WORK/www" "$WORK/tmp"
head -c $((1 << 20)) /dev/urandom > "$WORK/assets/boot/asset-1m.bin"
cp "$WORK/assets/boot/asset-1m.bin" "$WORK/www/asset-1m.bin"
chmod -R a+rX "$WORK"
cat > "$WORK/hardware.yaml" <<EOF
$MAC:
  ipAddress: 10.77.0.70
  subnetMask: 255.255.0.0
  hostname: bench-node
  netboot: {allowPxe: true}
  boot:
    kernel: boot/vmlinuz
    initrd: [boot/initrd.img]
    cmdline: console=ttyS0,115200 ip=dhcp
EOF
cat > "$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  types { text/plain ipxe; application/octet-stream bin; }
  default_type application/octet-stream;
  access_log $WORK/nginx-access.log;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  sendfile on;
  tcp_nopush on;
  server { listen 127.0.0.1:8081; root $WORK/www; }
}
EOF

wait_port() {  # wait_port PORT LOG
  for _ in $(seq 100); do
    in_ns ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.1
  done
  echo "nothing listens on $1:" >&2; cat "$2" >&2; exit 1
}
# Started with ip netns exec directly (not through a shell function), so $! is the server.
ip netns exec "$NS" "$BIN" --backend-file-path "$WORK/hardware.yaml" --assets-dir "$WORK/assets" \
  --dhcp-enabled=false --tftp-enabled=false --syslog-enabled=false \
  --http-addr 127.0.0.1 --http-port 8080 >/dev/null 2>"$WORK/netbootd.log" &
PIDS+=($!)
wait_port 8080 "$WORK/netbootd.log"
ip netns exec "$NS" "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" \
  >/dev/null 2>&1 &
PIDS+=($!)
wait_port 8081 "$WORK/nginx-error.log"

# The script as netbootd renders it becomes nginx's small static file: same bytes, same size.
in_ns curl -sSf "http://127.0.0.1:8080/$MAC/auto.ipxe" -o "$WORK/www/auto.ipxe"
chmod a+r "$WORK/www/auto.ipxe"
for url in "http://127.0.0.1:8081/auto.ipxe" "http://127.0.0.1:8081/asset-1m.bin" \
           "http://127.0.0.1:8080/assets/boot/asset-1m.bin"; do
  in_ns curl -sSf "$url" -o /dev/null
done
cmp <(in_ns curl -sS "http://127.0.0.1:8080/assets/boot/asset-1m.bin") "$WORK/www/asset-1m.bin"

# rate URL: requests/s of one wrk run (1 thread; the servers get the other core)
rate() {
  local out
  out=$(in_ns wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx answers from $1:" >&2; echo "$out" >&2; exit 1; fi
  awk '/^Requests\/sec:/ {print $2}' <<<"$out"
}
median() { tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A R
CASES=(nb_script nginx_small nb_asset nginx_asset)
declare -A URL=(
  [nb_script]="http://127.0.0.1:8080/$MAC/auto.ipxe"
  [nginx_small]="http://127.0.0.1:8081/auto.ipxe"
  [nb_asset]="http://127.0.0.1:8080/assets/boot/asset-1m.bin"
  [nginx_asset]="http://127.0.0.1:8081/asset-1m.bin"
)
for run in $(seq "$RUNS"); do
  for c in "${CASES[@]}"; do
    R[$c]="${R[$c]:-} $(rate "${URL[$c]}")"
    echo "run $run $c: ${R[$c]##* } req/s" >&2
  done
done
for c in "${CASES[@]}"; do R[$c]=$(median <<<"${R[$c]# }"); done
SCRIPT_BYTES=$(stat -c %s "$WORK/www/auto.ipxe")

echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, median of $RUNS runs, $(nproc) CPUs"
printf '%-44s %12s\n' "what" "requests/s"
printf '%-44s %12.0f\n' "netbootd script /<mac>/auto.ipxe ($SCRIPT_BYTES B)" "${R[nb_script]}"
printf '%-44s %12.0f\n' "nginx static, the same $SCRIPT_BYTES bytes" "${R[nginx_small]}"
printf '%-44s %12.0f\n' "netbootd asset 1 MiB" "${R[nb_asset]}"
printf '%-44s %12.0f\n' "nginx static 1 MiB" "${R[nginx_asset]}"
awk -v s="${R[nb_script]}" -v ns="${R[nginx_small]}" -v a="${R[nb_asset]}" -v na="${R[nginx_asset]}" 'BEGIN {
  printf "script vs nginx static (same bytes): %.2fx (goal >= 0.5x)\n", s / ns
  printf "script vs nginx static 1 MiB:        %.2fx\n", s / na
  printf "asset 1 MiB vs nginx 1 MiB:          %.2fx\n", a / na
}'
