#!/usr/bin/env bash
# static-builds.sh [TARGET...] - stripped, statically linked netbootd binaries on a plain Debian
# machine, no Docker.
#
#   .ci/static-builds.sh                                  # x86_64 and aarch64
#   .ci/static-builds.sh aarch64-unknown-linux-musl
#   .ci/static-builds.sh armv7-unknown-linux-musleabihf mips-unknown-linux-musl   # routers
#   .ci/static-builds.sh --router aarch64-unknown-linux-musl  # any target as the router build
#   .ci/static-builds.sh --lib-tests mips-unknown-linux-musl   # library tests, qemu-user
#
# x86_64: stable Rust; the musl target comes from rustup and links with the self-contained linker.
# aarch64, armv7 (32-bit ARM routers), mips and mipsel (big- and little-endian MIPS routers):
# the nightly toolchain builds the standard library from source (-Zbuild-std, needs the rust-src
# component; rustup has none for the router CPUs) and zig supplies musl and the linker, through
# cargo-zigbuild. That standard library is built at the profile's size optimisation and
# without backtrace symbolization (its DWARF reader could only read symbols that strip removes):
# aarch64 with every feature shrinks from 1.85 to 1.64 MiB. A panic still prints its message.
# These builds also leave out the source locations of panics and caller-tracked calls
# (-Zlocation-detail=none: no file:line:column strings; a panic's message still says what
# failed): 71 KB less on aarch64 with every feature (1,927,984 -> 1,856,512 B, 2026-12-01).
# Their release builds also print derived Debug as the type or variant name only
# (-Zfmt-debug=shallow; hand-written Debug, as of strings, durations and io errors, is
# unchanged, and netbootd prints derived Debug of a type with fields only in a panic): 23 KB
# less on aarch64 with every feature (1,894,928 -> 1,871,704 B, 2026-12-01). The library tests
# (--lib-tests) keep full Debug, which their assertion messages use.
# ring (TLS) has C and assembly: zig compiles them for every target. This script installs what
# is missing: rust-src, cargo-zigbuild (cargo install) and zig (the PyPI package ziglang, into
# target/tools). `cross` with cross.toml is the Docker alternative.
#
# The router targets (armv7, mips, mipsel) are built without remote inventory sources
# (--no-default-features: the router build, within 1.1 MiB); x86_64 and aarch64 with every
# feature. Library tests (--lib-tests) run with every feature on every target.
#
# Results: target/<TARGET>/release/netbootd.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.17.0
ZIG_DIR=$PWD/target/tools/ziglang-$ZIGLANG_VERSION

# The nightly toolchain with rust-src, cargo-zigbuild, and zig on PATH.
zig_tools() {
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  rustup component list --toolchain nightly --installed | grep -q '^rust-src' ||
    rustup component add rust-src --toolchain nightly
  command -v cargo-zigbuild >/dev/null ||
    cargo install --locked --quiet cargo-zigbuild --version "$ZIGBUILD_VERSION"
  if [ ! -x "$ZIG_DIR/ziglang/zig" ]; then
    python3 -m pip --version >/dev/null 2>&1 || {
      echo "pip is needed to fetch zig (apt-get install python3-pip)" >&2
      exit 1
    }
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$ZIG_DIR" "ziglang==$ZIGLANG_VERSION"
  fi
  export PATH="$ZIG_DIR/ziglang:$PATH"
}

# zig as a C compiler and archiver for ZIG_TARGET, as two small scripts (cc-rs takes a
# program, not a command line).
zig_wrappers() {  # zig_wrappers ZIG_TARGET
  # cc-rs adds clang's --target=<rust triple>, which zig does not read: it is dropped.
  printf '#!/bin/sh\nfor a do shift; case $a in --target=*) ;; *) set -- "$@" "$a" ;; esac; done\nexec zig cc -target %s "$@"\n' \
    "$1" >"$ZIG_DIR/zig-cc-$1"
  printf '#!/bin/sh\nexec zig ar "$@"\n' >"$ZIG_DIR/zig-ar"
  chmod +x "$ZIG_DIR/zig-cc-$1" "$ZIG_DIR/zig-ar"
}

# How cargo builds for TARGET: "stable" (rustup's standard library) or "zig" (nightly
# build-std, zig's musl and linker).
toolchain() {
  case "$1" in
    x86_64-unknown-linux-musl) echo stable ;;
    aarch64-unknown-linux-musl | armv7-unknown-linux-musleabihf | mips-unknown-linux-musl | mipsel-unknown-linux-musl) echo zig ;;
    *)
      echo "static-builds.sh: unknown target $1" >&2
      exit 2
      ;;
  esac
}

# cargo SUBCOMMAND ARGS... for TARGET, with that target's toolchain and linker.
cargo_for() {  # cargo_for TARGET SUBCOMMAND ARGS...
  local target=$1
  shift
  if [ "$(toolchain "$target")" = stable ]; then
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    # ring (TLS for the remote sources) has C and assembly: zig compiles them (Debian has no
    # musl C compiler for it).
    zig_tools
    zig_wrappers "${target/-unknown/}"
    export "CC_${target//-/_}=$ZIG_DIR/zig-cc-${target/-unknown/}" "AR_${target//-/_}=$ZIG_DIR/zig-ar"
    cargo "$@" --locked --target "$target"
  else
    zig_tools
    # zig's own crt and libc, not Rust's (there are none for these targets); static even where
    # the target defaults to dynamic (mips, mipsel). The linker's note about the missing
    # self-contained directory is expected.
    local sub=$1
    shift
    [ "$sub" = build ] && sub=zigbuild
    RUSTUP_TOOLCHAIN=nightly \
      RUSTFLAGS="${RUSTFLAGS:-} -C link-self-contained=no -C target-feature=+crt-static -A linker-messages -Zlocation-detail=none ${SIZE_RUSTFLAGS:-}" \
      cargo-zigbuild "$sub" "$@" --locked --target "$target" \
      -Zbuild-std=std,panic_unwind -Zbuild-std-features=panic-unwind,optimize_for_size
  fi
}

if [ "${1:-}" = --lib-tests ]; then
  target=$2
  qemu=qemu-${target%%-*}
  [ "$qemu" = qemu-armv7 ] && qemu=qemu-arm
  export "CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$target")_RUNNER=$qemu"
  cargo_for "$target" test --lib
  exit
fi
# --router: the targets that follow are built as the router build (no remote sources).
ROUTER=
[ "${TARGETS[0]}" = --router ] && { ROUTER=1; TARGETS=("${TARGETS[@]:1}"); }
for t in "${TARGETS[@]}"; do
  features=()
  case "$t" in
    armv7-* | mips-* | mipsel-*) features=(--no-default-features) ;;
  esac
  [ -n "$ROUTER" ] && features=(--no-default-features)
  SIZE_RUSTFLAGS=-Zfmt-debug=shallow cargo_for "$t" build --release "${features[@]}"
  bin=${CARGO_TARGET_DIR:-target}/$t/release/netbootd
  printf '%s: %s bytes, %s\n' "$t" "$(stat -c %s "$bin")" "$(file -b "$bin" | cut -d, -f1-2,4-5)"
done
