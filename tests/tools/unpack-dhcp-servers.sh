#!/bin/sh
# The site DHCP servers that the bring-your-own-DHCP tests (tests/byo_dhcp.rs, tests/boot.rs)
# and benches/dhcp-perfdhcp.sh run beside netbootd, unpacked from Debian's packages into the
# directory named by $1 (`apt-get download` and `dpkg -x`: installing them would enable and
# start system services); each is skipped when it is there:
#   $1/kea/usr/sbin/kea-dhcp4   kea-dhcp4-server (its libraries come with kea-admin, installed)
#   $1/isc/usr/sbin/dhcpd       isc-dhcp-server
# dnsmasq is Debian's dnsmasq-base, which installs no service.
set -eu
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
unpack() { # package directory binary
  [ -x "$out/$2/$3" ] && return 0
  work=$(mktemp -d)
  (cd "$work" && timeout 600 apt-get download "$1" >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$work" && timeout 600 apt-get download "$1")
  }
  mkdir -p "$out/$2"
  dpkg -x "$work"/"$1"_*.deb "$out/$2"
  rm -rf "$work"
  echo "unpacked $out/$2/$3"
}
unpack kea-dhcp4-server kea usr/sbin/kea-dhcp4
unpack isc-dhcp-server isc usr/sbin/dhcpd
