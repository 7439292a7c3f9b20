//! Packaging checks: the systemd unit passes `systemd-analyze verify` (with ExecStart pointed
//! at the built binary, which verify requires to exist) and keeps its hardening promises; the
//! OpenWrt files parse and translate; cross.toml names every target.

mod common;

use std::process::Command;

use common::need_tools;
use common::{text, TempDir, BIN};

const UNIT: &str = include_str!("../systemd/netbootd.service");

#[test]
fn the_systemd_unit_verifies() {
    need_tools("systemd-analyze verify", &["systemd-analyze"]);
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

const UCI: &str = include_str!("../openwrt/netbootd/files/netbootd.config");

#[test]
fn the_openwrt_init_script_parses() {
    let out = Command::new("sh")
        .args(["-n", "openwrt/netbootd/files/netbootd.init"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "sh -n: {}", text(&out.stderr));
}

/// The shipped UCI file, translated as the init script does, passes `netbootd check` (with its
/// router paths and interface pointed at this machine's equivalents).
#[test]
fn the_openwrt_uci_config_translates_to_a_config_that_checks() {
    let dir = TempDir::new("uci");
    for d in ["ipxe", "assets"] {
        std::fs::create_dir_all(dir.path(d)).unwrap();
    }
    let hw = dir.write(
        "hardware.yaml",
        include_str!("../openwrt/netbootd/files/hardware.yaml"),
    );
    let uci = UCI
        .replace("/etc/netbootd/hardware.yaml", hw.to_str().unwrap())
        .replace("/srv/netbootd/ipxe", dir.path("ipxe").to_str().unwrap())
        .replace("/srv/netbootd/assets", dir.path("assets").to_str().unwrap())
        .replace("'br-lan'", "'lo'");
    let uci_path = dir.write("netbootd", &uci);
    let out = common::run(&["openwrt-config", uci_path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    for line in [
        "dhcp-mode = \"proxy\"",
        "user = \"nobody\"",
        "[profiles.\"alpine\"]",
        "initrd = [\"alpine/initramfs-lts\"]",
    ] {
        assert!(toml.contains(line), "{line} not in\n{toml}");
    }
    // `enabled` is the init script's switch, not a netbootd option.
    assert!(!toml.lines().any(|l| l.starts_with("enabled =")), "{toml}");
    let conf = dir.write("netbootd.toml", &toml);
    let out = common::run(&["check", "--config", conf.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "check: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // A typo stops the start, naming the option.
    let bad = dir.write("bad", "config netbootd 'main'\n\toption dhcp_mdoe proxy\n");
    let out = common::run(&["openwrt-config", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("dhcp_mdoe is not a netbootd option"));
}

#[test]
fn cross_toml_names_the_router_targets() {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(include_str!("../cross.toml")).expect("cross.toml is TOML");
    fn table<'a>(value: Option<&toml::Spanned<DeValue<'a>>>) -> toml::de::DeTable<'a> {
        match value.map(|v| v.get_ref()) {
            Some(DeValue::Table(t)) => t.clone(),
            other => panic!("expected a table, got {other:?}"),
        }
    }
    let targets = table(doc.get_ref().get("target"));
    for t in [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "armv7-unknown-linux-musleabihf",
        "mips-unknown-linux-musl",
        "mipsel-unknown-linux-musl",
    ] {
        assert!(targets.get(t).is_some(), "cross.toml has no [target.{t}]");
    }
    // MIPS has no prebuilt standard library.
    for t in ["mips-unknown-linux-musl", "mipsel-unknown-linux-musl"] {
        let mips = table(targets.get(t));
        let build_std = mips.get("build-std").map(|v| v.get_ref());
        assert!(
            matches!(build_std, Some(DeValue::Boolean(true))),
            "{t} needs build-std = true"
        );
    }
}
