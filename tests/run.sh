#!/usr/bin/env bash
# The whole test suite, from a fresh clone on Debian 12, as root (CI runs it via .ci/run).
# It installs what the tests need, then runs formatting, lint, a warning-free release
# build, and every unit and integration test. Every step is bounded; nothing leaves this
# machine: tests use loopback, temporary directories and network namespaces they create
# and delete themselves (needs root: those tests are marked #[ignore] so that a plain
# `cargo test` lists them as ignored, and run here with --include-ignored, where a missing
# privilege or tool fails them).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# --- what the tests need -------------------------------------------------------------
# Debian packages the tests use; apt-get runs only when something is missing.
# DHCP (tests/dhcp.rs): namespaces and veths (iproute2, procps for sysctl), real clients
# (ISC dhclient, busybox udhcpc/udhcpd, dhcpcd, nmap, Kea's perfdhcp from kea-admin) and
# python3 for the hand-built-request helper.
# TFTP (tests/tftp.rs): tftp-hpa, atftp, curl and busybox tftp as clients, nftables to drop
# packets (the kernel here has no netem).
# Syslog (tests/syslog.rs): util-linux logger, from bsdutils (essential, always there).
# Boots (tests/boot.rs, the demo): QEMU with SeaBIOS and OVMF, Debian's iPXE binaries and NIC
# ROMs, cpio for the initramfs, dnsmasq-base for IPv6 router adverts on the VM's segment only
# (no service is installed); the kernel comes from `apt-get download linux-image-amd64`.
# Secure Boot and ARM64 boots: OVMF's Secure Boot images (ovmf), qemu-system-arm and AAVMF
# (qemu-efi-aarch64); shim, GRUB, the arm64 kernel and busybox are downloaded, not installed
# (tests/tools/secure-boot-assets.sh, tests/tools/arm64-boot-assets.sh).
# Packaging (tests/packaging.rs, tests/privileges.rs): systemd-analyze, util-linux's setpriv;
# static builds (.ci/cross-check.sh, benches/footprint.sh): qemu-user, file, and python3-pip
# to fetch zig for the armv7 and mipsel builds.
# Kubernetes backend (tests/kube.rs): openssl makes the API server's certificates.
# Bring your own DHCP (tests/byo_dhcp.rs): kea-admin brings the libraries of the unpacked
# kea-dhcp4; dnsmasq-base is a site server too.
# Asset cache (tests/assets.rs): xorriso builds the ISO that Smee's ISO patch is checked on;
# the upstream is python3, the clients curl and atftp.
APT_PACKAGES=(iproute2 procps python3 python3-pip isc-dhcp-client busybox-static dhcpcd-base nmap kea-admin tcpdump
  tftp-hpa atftp curl nftables qemu-system-x86 ovmf ipxe ipxe-qemu seabios cpio dnsmasq-base
  qemu-system-arm qemu-efi-aarch64
  systemd util-linux qemu-user file openssl xorriso)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  [ "$(id -u)" = 0 ] || { echo "need root to install ${missing[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo (Rust 1.85 or newer, via rustup) is required" >&2; exit 1; }
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

# Smee v0.15.2 (tests/smee.rs compares scripts and paths with it), built once with Go.
say "Smee v0.15.2 peer (target/peers/smee)"
tests/tools/build-smee.sh "$PWD/target/peers/smee"
export NETBOOTD_SMEE="$PWD/target/peers/smee"

# The Kubernetes API (tests/kube.rs, benches/kube.sh): the CRD API server built once with Go
# (k8s.io/apiextensions-apiserver) and Debian's etcd-server unpacked, not installed.
say "Kubernetes API peers (target/peers/kube)"
tests/tools/build-kube-peers.sh "$PWD/target/peers/kube"
export NETBOOTD_KUBE_APISERVER="$PWD/target/peers/kube/bin/apiextensions-apiserver"
export NETBOOTD_ETCD="$PWD/target/peers/kube/etcd/usr/bin/etcd"

# The site DHCP servers of the bring-your-own-DHCP tests (tests/byo_dhcp.rs, tests/boot.rs):
# Kea's kea-dhcp4 and ISC dhcpd from Debian's packages, unpacked, not installed (installing
# them would start system services); dnsmasq is dnsmasq-base, above.
say "site DHCP servers (target/peers/kea, target/peers/isc)"
tests/tools/unpack-dhcp-servers.sh "$PWD/target/peers"
export NETBOOTD_KEA_DHCP4="$PWD/target/peers/kea/usr/sbin/kea-dhcp4"
export NETBOOTD_ISC_DHCPD="$PWD/target/peers/isc/usr/sbin/dhcpd"

# --- checks ----------------------------------------------------------------------------
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"   # one flag set for every step: one build cache
export CARGO_TERM_COLOR=never

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
timeout 900 cargo clippy --all-targets --locked

say "cargo build --release (no warnings allowed)"
timeout 900 cargo build --release --locked

say "cargo test (unit and integration; the namespace tests are #[ignore]d for plain cargo test)"
timeout 1200 cargo test --all-targets --locked -- --include-ignored

say "the oldest Rust netbootd supports (rust-version in Cargo.toml) still builds it"
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
rustup toolchain list | grep -q "^$msrv" || rustup toolchain install "$msrv" --profile minimal
timeout 900 cargo +"$msrv" check --all-targets --locked

say "static builds: x86_64, aarch64, armv7, mips, mipsel musl; library tests under qemu-aarch64 and qemu-mips"
timeout 2400 .ci/cross-check.sh

say "fuzz: every target for ${FUZZ_SECONDS:-60} s on its kept corpus (DHCP, TFTP, HTTP, syslog, inventory and SMD bodies, HTTP responses, the pool journal and probe answers, Kubernetes lists, watch events and kubeconfigs)"
# A build tool, not a crate dependency: cargo-fuzz (pinned) on the nightly toolchain. Without a
# sanitizer: the crate is safe Rust, and a panic is what the targets look for.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
(
  cd fuzz
  unset RUSTFLAGS   # cargo-fuzz sets its own; -D warnings does not apply to libFuzzer's glue
  timeout 600 cargo +nightly fuzz build -s none -O
  mkdir -p ../target
  for target in dhcp tftp http syslog inventory response pool kube; do
    max_len=$([ "$target" = inventory ] && echo "-max_len=512" || true)
    log=../target/fuzz-$target.log
    if ! timeout 300 cargo +nightly fuzz run -s none -O "$target" "corpus/$target" -- \
      -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 $max_len >"$log" 2>&1; then
      tail -40 "$log"
      echo "fuzz target $target failed (its crash input is under fuzz/artifacts/$target)" >&2
      exit 1
    fi
    echo "$target: $(grep -o 'number_of_executed_units: [0-9]*' "$log") in ${FUZZ_SECONDS:-60} s"
  done
)

say "footprint budget (benches/footprint.sh)"
timeout 900 benches/footprint.sh
