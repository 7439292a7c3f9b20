#!/usr/bin/env bash
# aarch64-check.sh - the aarch64 static build is static, runs under qemu-aarch64 (qemu-user),
# and the library's tests pass there. Run by tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/static-builds.sh
bin=target/aarch64-unknown-linux-musl/release/netbootd
file -b "$bin" | grep -q "ARM aarch64.*statically linked" || { file "$bin"; echo "not a static aarch64 binary" >&2; exit 1; }
qemu-aarch64 "$bin" --version
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64 \
  cargo test --locked --lib --target aarch64-unknown-linux-musl
