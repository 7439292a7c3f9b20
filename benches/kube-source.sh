#!/usr/bin/env bash
# The Kubernetes backend with 10,000 Hardware objects. Not a test: it prints figures. What
# issue 19 asks to measure: the time from start to the first DHCP answer (LIST of every
# object, validation, then serving), the RSS with them loaded, and the DHCP p99 while 100
# objects a second are modified (each change is applied off the poll loop's thread and the
# set swapped in), against the same load with no changes, and against the same changes made to
# objects of a namespace netbootd does not watch (the API server, etcd and the client that
# patches take the same CPU from this 2-core machine, but netbootd receives nothing): the
# difference between those two is netbootd's own cost of following the changes. The same
# phases then run against Smee v0.15.2 (its Kubernetes backend: a controller-runtime informer;
# built by tests/tools/build-smee.sh), the peer, on the same API and objects.
#
#   sudo benches/kube-source.sh     # OBJECTS=10000 RATE=2000 CHURN=100 SECONDS_PER_PHASE=15 BIN=
#
# In one network namespace (created here, deleted on exit), on its loopback: Debian's etcd,
# the CRD API server (k8s.io/apiextensions-apiserver, built by tests/tools/build-kube-peers.sh)
# with Tinkerbell's Hardware CRD, and tests/tools/kube_core_standin.py answering the token and
# access reviews the CRD server delegates (Smee's client also reads the API's discovery paths:
# the stand-in allows everything). Each server watches it (reservation mode, DHCP on
# 127.0.0.1:1067, default logging); benches/dhcp_latency_client.py sends relayed DISCOVERs at
# RATE per second.
set -euo pipefail
cd "$(dirname "$0")/.."
OBJECTS=${OBJECTS:-10000}
RATE=${RATE:-2000}
CHURN=${CHURN:-100}
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-15}
NS=nbb-kube
WORK=$(mktemp -d /tmp/netbootd-kube.XXXXXX)
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
PEERS=$PWD/target/peers/kube
tests/tools/build-kube-peers.sh "$PEERS" >&2
SMEE=$PWD/target/peers/smee
tests/tools/build-smee.sh "$SMEE" >&2
# BIN=path: another build (the static musl one, whose allocator differs from glibc's).
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN=$PWD/target/release/netbootd
fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do { kill "$pid" && wait "$pid"; } 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  if [ "${KEEP:-}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }   # (not for background jobs: $! must be the process)

# Certificates: a CA, the API server's, and an admin client certificate (system:masters).
cd "$WORK"
EC=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${EC[@]}" -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.crt 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for who in "server /CN=kube-api server.ext" "admin /O=system:masters/CN=admin client.ext"; do
  set -- $who
  openssl req "${EC[@]}" -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$1.crt" -extfile "$3" 2>/dev/null
done
echo "tok-1 system:serviceaccount:tink:netbootd" > tokens
printf '* * *\n' > allowed
echo tok-1 > token
printf 'apiVersion: v1\nkind: Config\ncurrent-context: core\ncontexts:\n- name: core\n  context: {cluster: core, user: core}\nclusters:\n- name: core\n  cluster: {server: "http://127.0.0.1:8001"}\nusers:\n- name: core\n  user: {}\n' > core.kubeconfig
printf 'apiVersion: v1\nkind: Config\ncurrent-context: lab\ncontexts:\n- name: lab\n  context: {cluster: lab, user: netbootd}\nclusters:\n- name: lab\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: %s/ca.crt\nusers:\n- name: netbootd\n  user:\n    tokenFile: %s/token\n' "$WORK" "$WORK" > netbootd.kubeconfig
cd - >/dev/null

ip netns exec "$NS" "$PEERS/etcd/usr/bin/etcd" --data-dir "$WORK/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS" python3 tests/tools/kube_core_standin.py 8001 "$WORK/tokens" "$WORK/allowed" >"$WORK/core.log" 2>&1 &
PIDS+=($!)
sleep 1
ip netns exec "$NS" "$PEERS/bin/apiextensions-apiserver" --etcd-servers http://127.0.0.1:2379 --bind-address 127.0.0.1 \
  --secure-port 6443 --tls-cert-file "$WORK/server.crt" --tls-private-key-file "$WORK/server.key" \
  --client-ca-file "$WORK/ca.crt" --cert-dir "$WORK/certs" --authentication-skip-lookup \
  --kubeconfig "$WORK/core.kubeconfig" --authentication-kubeconfig "$WORK/core.kubeconfig" \
  --authorization-kubeconfig "$WORK/core.kubeconfig" --enable-priority-and-fairness=false \
  --disable-admission-plugins NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook \
  >"$WORK/api.log" 2>&1 &
PIDS+=($!)
ADMIN=(--cacert "$WORK/ca.crt" --cert "$WORK/admin.crt" --key "$WORK/admin.key")
for _ in $(seq 300); do
  in_ns curl -s "${ADMIN[@]}" -o /dev/null -w '%{http_code}' https://127.0.0.1:6443/apis/apiextensions.k8s.io/v1/customresourcedefinitions | grep -q 200 && break
  sleep 0.2
done
in_ns curl -sf "${ADMIN[@]}" -X POST -H 'Content-Type: application/yaml' \
  --data-binary @tests/fixtures/tinkerbell/hardware-crd-v1alpha1.yaml \
  https://127.0.0.1:6443/apis/apiextensions.k8s.io/v1/customresourcedefinitions >/dev/null
for _ in $(seq 100); do
  in_ns curl -s "${ADMIN[@]}" -o /dev/null -w '%{http_code}' https://127.0.0.1:6443/apis/tinkerbell.org/v1alpha1/hardware | grep -q 200 && break
  sleep 0.2
done

# The objects, over a few kept-alive TLS connections; and the churn: CHURN patches a second.
cat > "$WORK/objects.py" <<'PY'
"""objects.py WORK create N | churn N RATE SECONDS NAMESPACE: Hardware for MACs
02:54:00:00:hi:lo in namespace tink, and 100 more (02:55:...) in namespace noise."""
import http.client, json, ssl, sys, threading, time
work, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=f"{work}/ca.crt")
ctx.load_cert_chain(f"{work}/admin.crt", f"{work}/admin.key")
def path(ns):
    return f"/apis/tinkerbell.org/v1alpha1/namespaces/{ns}/hardware"
def body(i, lease=600, ns="tink"):
    tag = 0x54 if ns == "tink" else 0x55
    return {"apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
            "metadata": {"name": f"node-{i:05d}", "namespace": ns},
            "spec": {"interfaces": [{"dhcp": {"mac": f"02:{tag:02x}:00:00:{i // 256:02x}:{i % 256:02x}",
                     "hostname": f"node-{i:05d}", "lease_time": lease,
                     "ip": {"address": f"10.{1 + i // 65536}.{i // 256 % 256}.{i % 256}", "netmask": "255.0.0.0", "gateway": "10.0.0.1"}},
                     "netboot": {"allowPXE": True}}]}}
def send(conn, method, path, obj, ctype):
    conn.request(method, path, json.dumps(obj), {"Content-Type": ctype})
    r = conn.getresponse(); r.read()
    if r.status >= 300: raise SystemExit(f"{method} {path}: {r.status}")
if what == "create":
    def worker(k):
        conn = http.client.HTTPSConnection("127.0.0.1", 6443, context=ctx)
        for i in range(k, n, 4):
            send(conn, "POST", path("tink"), body(i), "application/json")
        for i in range(k, 100, 4):
            send(conn, "POST", path("noise"), body(i, ns="noise"), "application/json")
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
else:
    rate, seconds, ns = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    n = n if ns == "tink" else 100
    conn = http.client.HTTPSConnection("127.0.0.1", 6443, context=ctx)
    start, k = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        i = k % n
        send(conn, "PATCH", f"{path(ns)}/node-{i:05d}", {"spec": body(i, 600 + k % 7, ns)["spec"]}, "application/merge-patch+json")
        k += 1
        time.sleep(max(0.0, start + k / rate - time.perf_counter()))
    print(k, file=sys.stderr)
PY
created=$(date +%s.%N)
in_ns python3 "$WORK/objects.py" "$WORK" create "$OBJECTS"
created=$(python3 -c "import time; print(f'{time.time() - $created:.1f}')")

cat > "$WORK/first_answer.py" <<'PY'
"""Relayed DISCOVERs for the last object's MAC every 20 ms until an OFFER comes; prints the
seconds since START (netbootd's launch, as time.time())."""
import socket, struct, sys, time
start, i = float(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 67)); s.settimeout(0.02)
mac = bytes([2, 0x54, 0, 0, i // 256, i % 256])
relay, cookie = socket.inet_aton("127.0.0.1"), bytes([99, 130, 83, 99, 53, 1, 1, 255])
for xid in range(1, 6000):
    s.sendto(struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 1, xid, 0, 0, bytes(4), bytes(4),
             bytes(4), relay, mac + bytes(10), bytes(64), bytes(128)) + cookie, ("127.0.0.1", 1067))
    try:
        s.recv(2048); print(f"{time.time() - start:.2f}"); break
    except socket.timeout:
        pass
PY


stats() {
  python3 -c '
import sys
v = sorted(int(x) for x in sys.stdin.read().split())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(q(0.50), q(0.99), q(0.999), v[-1], len(v))'
}
row() { echo "$2" | awk -v l="$1" '{printf "| %s | %d | %d | %d | %d | %d |\n", l, $1, $2, $3, $4, $5}'; }
latency() { in_ns python3 benches/dhcp_latency_client.py "$SECONDS_PER_PHASE" "$OBJECTS" "$RATE" 54 2>/dev/null | stats; }
# churn NAMESPACE: the latency phase while CHURN objects a second change in NAMESPACE.
churn() {
  ip netns exec "$NS" python3 "$WORK/objects.py" "$WORK" churn "$OBJECTS" "$CHURN" $((SECONDS_PER_PHASE + 2)) "$1" 2> "$WORK/churn-$1.out" &
  local pid=$! r
  sleep 1
  r=$(latency)
  wait "$pid"
  echo "$r"
}

# measure NAME LOG COMMAND...: starts the server, times its first OFFER for the last object,
# runs the three phases, prints the rows and the summary, stops it.
measure() {
  local name=$1 log=$2
  shift 2
  local launched
  launched=$(date +%s.%N)
  ip netns exec "$NS" "$@" > "$log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  local first rss quiet elsewhere busy rss_busy
  first=$(in_ns python3 "$WORK/first_answer.py" "$launched" $((OBJECTS - 1)))
  rss=$(awk '/^VmRSS:/ {printf "%.2f", $2 / 1024}' "/proc/$pid/status")
  quiet=$(latency)
  elsewhere=$(churn noise)
  busy=$(churn tink)
  rss_busy=$(awk '/^VmRSS:/ {printf "%.2f", $2 / 1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  row "$name: no changes" "$quiet"
  row "$name: $CHURN objects/s modified elsewhere (not watched)" "$elsewhere"
  row "$name: $CHURN objects/s modified (watched)" "$busy"
  local q99 e99 b99
  q99=$(echo "$quiet" | awk '{print $2}') e99=$(echo "$elsewhere" | awk '{print $2}') b99=$(echo "$busy" | awk '{print $2}')
  SUMMARY+=("$name: first OFFER ${first:-never} s after launch; RSS ${rss} MiB loaded, ${rss_busy} MiB after the changes; p99 watched/elsewhere $(python3 -c "print(f'{$b99/$e99:.2f}')")x ($(( b99 - e99 )) us), watched/no changes $(python3 -c "print(f'{$b99/$q99:.2f}')")x")
  P99+=("$b99")
}

echo "Kubernetes backend, $OBJECTS Hardware objects ($CHURN more in namespace noise), $RATE relayed DISCOVERs/s, $SECONDS_PER_PHASE s per phase ($(date -u +%F)); objects created through the API in ${created} s"
echo "| server: phase | p50 us | p99 us | p99.9 us | max us | answers |"
echo "|---|---|---|---|---|---|"
SUMMARY=() P99=()
measure netbootd "$WORK/netbootd.log" "$BIN" --backend-kube-enabled=true \
  --backend-kube-config "$WORK/netbootd.kubeconfig" --backend-kube-namespace tink \
  --dhcp-addr 127.0.0.1:1067 --tftp-enabled=false --http-ipxe-binary-enabled=false \
  --http-ipxe-script-enabled=false --syslog-enabled=false --public-ip-interface lo \
  --state-dir "$WORK" --user root
batches=$(grep -c 'Hardware changed' "$WORK/netbootd.log" || true)
measure smee "$WORK/smee.log" "$SMEE" -backend-kube-config "$WORK/netbootd.kubeconfig" \
  -backend-kube-namespace tink -dhcp-addr 127.0.0.1:1067 -dhcp-iface lo \
  -dhcp-ip-for-packet 127.0.0.1 -dhcp-tftp-ip 127.0.0.1 -dhcp-syslog-ip 127.0.0.1 \
  -dhcp-http-ipxe-binary-host 127.0.0.1 \
  -dhcp-http-ipxe-script-url http://127.0.0.1:18080/auto.ipxe -tftp-enabled=false -syslog-enabled=false \
  -http-addr 127.0.0.1 -http-port 18080
echo
printf '%s\n' "${SUMMARY[@]}"
echo "netbootd applied the watched changes in $batches batches; p99 with watched changes, netbootd/smee: $(python3 -c "print(f'{${P99[0]}/${P99[1]}:.2f}')")x"
