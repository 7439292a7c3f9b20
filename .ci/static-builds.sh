#!/usr/bin/env bash
# static-builds.sh [TARGET...] - stripped, statically linked netbootd binaries on a plain Debian
# machine, no Docker: the musl targets come from rustup and link with the linkers Rust ships
# (x86_64 with its bundled self-contained musl linking, aarch64 with rust-lld).
#
#   .ci/static-builds.sh                       # x86_64 and aarch64
#   .ci/static-builds.sh aarch64-unknown-linux-musl
#
# Results: target/<TARGET>/release/netbootd. For armv7 and mipsel routers use the `cross`
# tool with cross.toml (those targets need Docker images or a nightly build-std).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
installed=$(rustup target list --installed)
for t in "${TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
for t in "${TARGETS[@]}"; do
  cargo build --release --locked --target "$t"
  bin=target/$t/release/netbootd
  printf '%s: %s bytes, %s\n' "$t" "$(stat -c %s "$bin")" "$(file -b "$bin" | cut -d, -f1-2,4-5)"
done
