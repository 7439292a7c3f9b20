#!/usr/bin/env bash
# cross-check.sh - the static builds for other architectures, checked under qemu-user. Run by
# tests/run.sh.
#   aarch64: static (file), runs --version under qemu-aarch64, the library's tests pass there.
#   armv7 (32-bit ARM routers) and mipsel (little-endian MIPS routers): static, run --version
#   under qemu-arm and qemu-mipsel.
#   mips (big-endian MIPS routers, e.g. ath79; 32-bit, no 64-bit atomics): static, runs
#   --version under qemu-mips, and the library's tests pass there (byte order, 32-bit).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/static-builds.sh x86_64-unknown-linux-musl aarch64-unknown-linux-musl \
  armv7-unknown-linux-musleabihf mips-unknown-linux-musl mipsel-unknown-linux-musl
check() {  # check TARGET FILE-PATTERN QEMU
  local bin=target/$1/release/netbootd
  file -b "$bin" | grep -q "$2.*statically linked" || {
    file "$bin"
    echo "not a static $1 binary" >&2
    exit 1
  }
  printf '%s under %s: ' "$1" "$3"
  "$3" "$bin" --version
}
check aarch64-unknown-linux-musl "ARM aarch64" qemu-aarch64
check armv7-unknown-linux-musleabihf "32-bit LSB executable, ARM, EABI5" qemu-arm
check mips-unknown-linux-musl "32-bit MSB executable, MIPS" qemu-mips
check mipsel-unknown-linux-musl "32-bit LSB executable, MIPS" qemu-mipsel
.ci/static-builds.sh --lib-tests aarch64-unknown-linux-musl
.ci/static-builds.sh --lib-tests mips-unknown-linux-musl
