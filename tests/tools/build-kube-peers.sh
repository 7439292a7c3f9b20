#!/bin/sh
# The Kubernetes API that tests/kube.rs and benches/kube.sh run netbootd against, into the
# directory named by $1 (each part skipped when it is there):
#   $1/bin/apiextensions-apiserver  the Kubernetes CRD API server (the generic API server code
#                                   of kube-apiserver, serving CustomResourceDefinitions and
#                                   their objects with LIST/WATCH), built by `go install`;
#   $1/etcd/usr/bin/etcd            Debian's etcd-server package, unpacked (`apt-get download`
#                                   and `dpkg -x`: installing it would start a system service).
# Uses the machine's Go and the Go module proxy, and apt.
set -eu
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ ! -x "$out/bin/apiextensions-apiserver" ]; then
  go=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$go" ] || { echo "build-kube-peers: no Go toolchain (go on PATH or /usr/local/go/bin/go)" >&2; exit 1; }
  GOBIN="$out/bin" timeout 1800 "$go" install k8s.io/apiextensions-apiserver@v0.37.2
  echo "built $out/bin/apiextensions-apiserver"
fi
if [ ! -x "$out/etcd/usr/bin/etcd" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && timeout 600 apt-get download etcd-server >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$work" && timeout 600 apt-get download etcd-server)
  }
  dpkg -x "$work"/etcd-server_*.deb "$out/etcd"
  echo "unpacked $out/etcd/usr/bin/etcd ($("$out/etcd/usr/bin/etcd" --version | head -1))"
fi
