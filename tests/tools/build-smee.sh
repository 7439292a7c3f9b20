#!/bin/sh
# Builds standalone Smee v0.15.2, the peer tests/smee.rs compares netbootd's scripts and paths
# with, into the file named by $1 (skipped when it is there). Uses the machine's Go and the Go
# module proxy. `go install github.com/tinkerbell/smee/cmd/smee@v0.15.2` does not work here:
# the proxy refuses the module's version list ("loading deprecation ... 403 Forbidden"), and
# the checksum database has no entry for its ipxedust dependency (404). So it is built from a
# scratch module that requires it, with the checksum database off for this build only.
set -eu
out=$1
[ -x "$out" ] && exit 0
go=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$go" ] || { echo "build-smee: no Go toolchain (go on PATH or /usr/local/go/bin/go)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$out")"
cd "$work"
printf 'module smeepeer\n\ngo 1.24\n\nrequire github.com/tinkerbell/smee v0.15.2\n' > go.mod
GOSUMDB=off GOFLAGS=-mod=mod timeout 1200 "$go" build -o "$out" github.com/tinkerbell/smee/cmd/smee
echo "built $out ($("$out" -h 2>&1 | head -1))"
