//! Packaging checks: the systemd unit passes `systemd-analyze verify` (with ExecStart pointed
//! at the built binary, which verify requires to exist) and keeps its hardening promises.

mod common;

use std::process::Command;

use common::netns::require;
use common::{text, TempDir, BIN};

const UNIT: &str = include_str!("../systemd/netbootd.service");

#[test]
fn the_systemd_unit_verifies() {
    if !require("systemd-analyze verify", &["systemd-analyze"]) {
        return;
    }
    let dir = TempDir::new("unit");
    let unit = dir.write(
        "netbootd.service",
        &UNIT.replace("/usr/local/bin/netbootd", BIN),
    );
    let out = Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && text(&out.stderr).trim().is_empty(),
        "systemd-analyze verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_grants_only_the_two_capabilities_and_never_root() {
    let lines: Vec<&str> = UNIT.lines().map(str::trim).collect();
    for wanted in [
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=netbootd",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(lines.contains(&wanted), "the unit lacks {wanted}");
    }
    assert!(lines.iter().any(|l| l.starts_with("ReadOnlyPaths=")));
    assert!(!lines.iter().any(|l| l.starts_with("User=root")));
}
