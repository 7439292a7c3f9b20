//! Bring your own DHCP with real servers: the configuration `netbootd byo-dhcp` generates for
//! dnsmasq, Kea and ISC dhcpd (tests/common/byo.rs), run by each in a namespace, answers
//! busybox udhcpc posing as firmware of each architecture, as UEFI HTTP boot, as iPXE and as
//! a plain client just as netbootd's own DHCP answers the same requests a moment before. That
//! covers what QEMU cannot show: BIOS firmware PXE (every NIC ROM QEMU ships is iPXE) getting
//! `undionly.kpxe`, ARM64 firmware, a machine's own binary, a machine without netboot. The
//! QEMU boots through each server are in tests/boot.rs. The command's own behaviour (usage,
//! errors, regeneration after a change) is checked without root at the end.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::byo::{self, DhcpServer, Peer};
use common::netns::{hook_env, need_root_and, udhcpc_args, write_hook, Lab, SRV_IP};
use common::{command, text, Server, TempDir, BIN};

const CLI_MAC: &str = "02:77:00:00:00:50";
const NO_PXE_MAC: &str = "02:77:00:00:00:52";
const OWN_BINARY_MAC: &str = "02:77:00:00:00:53";
const UNKNOWN_MAC: &str = "02:77:00:00:00:99";

const HARDWARE: &str = "\
02:77:00:00:00:50:
  ipAddress: 10.77.0.50
  subnetMask: 255.255.0.0
  defaultGateway: 10.77.0.1
  nameServers: [10.77.0.1, 1.1.1.1]
  hostname: cli0
  domainName: lab.example
  leaseTime: 3600
  netboot:
    allowPxe: true
02:77:00:00:00:52:
  ipAddress: 10.77.0.52
  subnetMask: 255.255.0.0
  defaultGateway: 10.77.0.1
  leaseTime: 600
  netboot:
    allowPxe: false
02:77:00:00:00:53:
  ipAddress: 10.77.0.53
  subnetMask: 255.255.0.0
  defaultGateway: 10.77.0.1
  netboot:
    allowPxe: true
    ipxeBinary: snponly.efi
";

/// One request: who asks, and as what (udhcpc's extra arguments).
struct Ask {
    what: &'static str,
    mac: &'static str,
    args: Vec<String>,
}

fn pxe(arch: u16, vendor: &str) -> Vec<String> {
    vec![
        "-V".into(),
        format!("{vendor}:Arch:{arch:05}:UNDI:003000"),
        "-x".into(),
        format!("0x5d:{arch:04x}"),
    ]
}

fn asks() -> Vec<Ask> {
    let mut ipxe = pxe(0, "PXEClient");
    ipxe.extend(["-x".into(), "0x4d:69505845".into()]); // user class "iPXE"
                                                        // iPXE's own options (175: feature HTTP = 1), without the user class.
    let mut ipxe_options = pxe(7, "PXEClient");
    ipxe_options.extend(["-x".into(), "0xaf:130101".into()]);
    let ask = |what, mac, args| Ask { what, mac, args };
    vec![
        ask("plain client", CLI_MAC, vec![]),
        ask("BIOS firmware (arch 0)", CLI_MAC, pxe(0, "PXEClient")),
        ask("x86-64 UEFI (arch 7)", CLI_MAC, pxe(7, "PXEClient")),
        ask("x86-64 UEFI (arch 9)", CLI_MAC, pxe(9, "PXEClient")),
        ask("ARM64 UEFI (arch 11)", CLI_MAC, pxe(11, "PXEClient")),
        ask("UEFI HTTP boot (arch 16)", CLI_MAC, pxe(16, "HTTPClient")),
        ask("iPXE", CLI_MAC, ipxe),
        ask("iPXE by option 175 only", CLI_MAC, ipxe_options),
        ask("allowPxe false", NO_PXE_MAC, pxe(7, "PXEClient")),
        ask("own binary", OWN_BINARY_MAC, pxe(7, "PXEClient")),
    ]
}

/// What a client was given, in netbootd's terms: the two places where the generated
/// configuration says the same thing differently are made alike (iPXE's `${mac}`, which iPXE
/// fills in, and the MAC netbootd puts in an HTTP-boot URL for its logs).
fn answer(env: &str, mac: &str, lease: bool) -> BTreeMap<String, String> {
    let keep = [
        "ip",
        "subnet",
        "router",
        "dns",
        "hostname",
        "domain",
        "boot_file",
        "siaddr",
        "lease",
    ];
    env.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| keep.contains(k) && (lease || *k != "lease"))
        .filter(|(k, _)| *k != "siaddr" || env.contains("boot_file="))
        .map(|(k, v)| {
            let v = v
                .replace("${mac}", mac)
                .replace(&format!("/ipxe/{mac}/"), "/ipxe/");
            (k.to_string(), v)
        })
        .collect()
}

/// Every ask, answered by whichever server is up; (what, answer or None when none came).
fn ask_all(
    lab: &Lab,
    dir: &TempDir,
    lease: bool,
) -> Vec<(&'static str, Option<BTreeMap<String, String>>)> {
    let hook = write_hook(dir);
    asks()
        .into_iter()
        .map(|a| {
            lab.set_client_mac(a.mac);
            let _ = std::fs::remove_file(dir.path("hook.env"));
            let mut args = udhcpc_args(&hook);
            args.extend(a.args.iter().map(String::as_str));
            let out = lab.cli.run_for(Duration::from_secs(20), &args);
            let got = out
                .status
                .success()
                .then(|| answer(&hook_env(dir), a.mac, lease));
            (a.what, got)
        })
        .collect()
}

fn netbootd_args(hw: &std::path::Path, ipxe: &std::path::Path, mode: &str) -> Vec<String> {
    [
        "--backend-file-path",
        hw.to_str().unwrap(),
        "--dhcp-iface",
        "s0",
        "--dhcp-mode",
        mode,
        "--ipxe-dir",
        ipxe.to_str().unwrap(),
        "--syslog-enabled=false",
        "--http-port",
        "8080",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// netbootd's own answers, then the site server's on the generated configuration: the same.
fn answers_as_netbootd_does(peer: Peer) {
    let dir = TempDir::new(&format!("byo-{}", peer.name()));
    let hw = dir.write("hardware.yaml", HARDWARE);
    let ipxe = dir.path("ipxe");
    std::fs::create_dir_all(&ipxe).unwrap();
    let mut lab = Lab::new(CLI_MAC);
    lab.add_dhcp_segment();
    // Kea reservations carry no lease time (the subnet's valid-lifetime applies).
    let lease = peer != Peer::Kea;

    let own = {
        let mut cmd = lab.srv.command(&[BIN]);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(netbootd_args(&hw, &ipxe, "reservation"));
        let mut server = Server::spawn(cmd);
        server.wait_for("on packet socket on s0", Duration::from_secs(20));
        ask_all(&lab, &dir, lease)
    };

    let args = netbootd_args(&hw, &ipxe, "off");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (generated, text) = byo::generate(peer, &lab.srv, &args, &dir);
    let site = DhcpServer::start(peer, lab.dhcp.as_ref().unwrap(), "p0", &generated, &dir);
    let theirs = ask_all(&lab, &dir, lease);

    let mut report = String::new();
    for ((what, ours), (_, theirs)) in own.iter().zip(&theirs) {
        report.push_str(&format!(
            "{what}:\n  netbootd: {ours:?}\n  {}: {theirs:?}\n",
            peer.name()
        ));
    }
    println!("{report}");
    for ((what, ours), (_, theirs)) in own.iter().zip(&theirs) {
        assert!(ours.is_some(), "{what}: netbootd did not answer\n{report}");
        assert_eq!(
            ours,
            theirs,
            "{what}: {} answers otherwise\n{report}\n--- generated:\n{text}\n--- its log:\n{}",
            peer.name(),
            site.log_text()
        );
    }
    // The answers that matter, spelled out (the comparison alone would pass if both were
    // wrong the same way).
    let get = |what: &str, key: &str| -> Option<String> {
        theirs
            .iter()
            .find(|(w, _)| *w == what)
            .and_then(|(_, a)| a.as_ref()?.get(key).cloned())
    };
    assert_eq!(get("plain client", "ip").as_deref(), Some("10.77.0.50"));
    assert_eq!(get("plain client", "boot_file"), None);
    assert_eq!(
        get("BIOS firmware (arch 0)", "boot_file").as_deref(),
        Some("undionly.kpxe")
    );
    assert_eq!(
        get("BIOS firmware (arch 0)", "siaddr").as_deref(),
        Some(SRV_IP)
    );
    assert_eq!(
        get("ARM64 UEFI (arch 11)", "boot_file").as_deref(),
        Some("snp.efi")
    );
    assert_eq!(
        get("UEFI HTTP boot (arch 16)", "boot_file").as_deref(),
        Some("http://10.77.0.1:8080/ipxe/ipxe.efi")
    );
    assert_eq!(
        get("iPXE", "boot_file"),
        Some(format!("http://10.77.0.1:8080/{CLI_MAC}/auto.ipxe"))
    );
    assert_eq!(
        get("iPXE by option 175 only", "boot_file"),
        Some(format!("http://10.77.0.1:8080/{CLI_MAC}/auto.ipxe"))
    );
    assert_eq!(get("allowPxe false", "ip").as_deref(), Some("10.77.0.52"));
    assert_eq!(get("allowPxe false", "boot_file"), None);
    assert_eq!(
        get("own binary", "boot_file").as_deref(),
        Some("snponly.efi")
    );

    // A machine netbootd does not know gets no boot file from the site's server (an address
    // from its own range, where it has one).
    lab.set_client_mac(UNKNOWN_MAC);
    let _ = std::fs::remove_file(dir.path("hook.env"));
    let hook = write_hook(&dir);
    let mut args = udhcpc_args(&hook);
    let firmware = pxe(0, "PXEClient");
    args.extend(firmware.iter().map(String::as_str));
    lab.cli.run_for(Duration::from_secs(20), &args);
    let env = hook_env(&dir);
    assert!(!env.contains("boot_file="), "unknown MAC: {env}");
    drop(site);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn dnsmasq_on_the_generated_config_answers_as_netbootd_does() {
    need_root_and("byo dnsmasq", &["ip", "busybox", "dnsmasq"]);
    answers_as_netbootd_does(Peer::Dnsmasq);
}

#[test]
#[ignore = "needs root, network namespaces and Kea (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn kea_on_the_generated_config_answers_as_netbootd_does() {
    need_root_and("byo kea", &["ip", "busybox"]);
    byo::need_servers("byo kea");
    answers_as_netbootd_does(Peer::Kea);
}

#[test]
#[ignore = "needs root, network namespaces and ISC dhcpd (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn isc_dhcpd_on_the_generated_config_answers_as_netbootd_does() {
    need_root_and("byo isc", &["ip", "busybox"]);
    byo::need_servers("byo isc");
    answers_as_netbootd_does(Peer::Isc);
}

#[test]
fn byo_dhcp_needs_a_known_server_and_follows_the_inventory() {
    let dir = TempDir::new("byo-cli");
    let hw = dir.write("hardware.yaml", HARDWARE);
    std::fs::create_dir_all(dir.path("ipxe")).unwrap();
    let ipxe = dir.path("ipxe");
    let args = |server: &str| -> Vec<String> {
        let mut a = vec!["byo-dhcp".to_string()];
        if !server.is_empty() {
            a.push(server.into());
        }
        a.extend(
            [
                "--backend-file-path",
                hw.to_str().unwrap(),
                "--dhcp-mode",
                "off",
                "--ipxe-dir",
                ipxe.to_str().unwrap(),
                "--public-ip-interface",
                "lo",
            ]
            .map(String::from),
        );
        a
    };
    let run = |server: &str| {
        let a = args(server);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        command(&a, &[]).output().unwrap()
    };
    let out = run("udhcpd");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "unknown DHCP server \"udhcpd\" (expected dnsmasq, dnsmasq-proxy, kea or isc)"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = run("");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("usage: netbootd byo-dhcp SERVER"));

    // DHCP off, "auto" addresses: loopback's, as though DHCP were on.
    let out = run("dnsmasq");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conf = text(&out.stdout);
    assert!(
        conf.starts_with("# netbootd byo-dhcp dnsmasq: 3 machines (2 netboot)"),
        "{conf}"
    );
    assert!(conf.contains("undionly.kpxe,,127.0.0.1\n"), "{conf}");
    assert!(
        conf.contains("http://127.0.0.1:8080/${mac}/auto.ipxe,,127.0.0.1\n"),
        "{conf}"
    );

    // A machine added to the inventory is in the next output.
    std::fs::write(
        &hw,
        format!("{HARDWARE}02:77:00:00:00:54:\n  ipAddress: 10.77.0.54\n  subnetMask: 255.255.0.0\n  netboot:\n    allowPxe: true\n"),
    )
    .unwrap();
    let out = run("isc");
    let conf = text(&out.stdout);
    assert!(
        conf.contains("hardware ethernet 02:77:00:00:00:54; fixed-address 10.77.0.54;"),
        "{conf}"
    );

    // A broken inventory: the cause, exit 1, nothing on standard output.
    std::fs::write(&hw, "02:77:00:00:00:50: [\n").unwrap();
    let out = run("kea");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).is_empty());
    assert!(
        text(&out.stderr).contains("error:"),
        "{}",
        text(&out.stderr)
    );
}

/// The recipe files in etc/byo-dhcp/, as the README shows them.
fn recipes() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/byo-dhcp")
}

/// (server, file) of each generated recipe.
const GENERATED: [(&str, &str); 4] = [
    ("dnsmasq", "netbootd-dnsmasq.conf"),
    ("dnsmasq-proxy", "netbootd-dnsmasq-proxy.conf"),
    ("kea", "netbootd-kea.json"),
    ("isc", "netbootd-isc.conf"),
];

#[test]
fn the_shipped_recipes_are_what_byo_dhcp_generates() {
    let config = recipes().join("netbootd.toml");
    for (server, file) in GENERATED {
        let out = command(
            &["byo-dhcp", server, "--config", config.to_str().unwrap()],
            &[],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{server}: {}", text(&out.stderr));
        let shipped = std::fs::read_to_string(recipes().join(file)).unwrap();
        assert!(
            text(&out.stdout) == shipped,
            "etc/byo-dhcp/{file} is not what `netbootd byo-dhcp {server} --config etc/byo-dhcp/netbootd.toml` prints now: regenerate it"
        );
    }
}

#[test]
fn the_readme_excerpts_are_lines_of_the_shipped_recipes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut checked = 0;
    for block in readme.split("```\n# etc/byo-dhcp/").skip(1) {
        let block = block.split("\n```").next().unwrap();
        let (head, body) = block.split_once('\n').unwrap();
        let file = head.strip_suffix(" (excerpt)").expect("an excerpt's head");
        let shipped = std::fs::read_to_string(recipes().join(file)).unwrap();
        for line in body.lines() {
            assert!(
                shipped.lines().any(|l| l == line),
                "README's excerpt of {file} has a line the file does not: {line}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} excerpt lines found");
}

/// A copy of a shipped site configuration with its include paths pointing at the repository.
fn site_config(dir: &TempDir, name: &str, replace: &[(&str, String)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(recipes().join(name)).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    dir.write(name, &text)
}

#[test]
#[ignore = "needs dnsmasq, Kea and ISC dhcpd (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn the_shipped_recipes_pass_each_servers_own_check() {
    byo::need_servers("recipe checks");
    let dir = TempDir::new("byo-recipes");
    let generated = |file: &str| recipes().join(file).display().to_string();
    let dnsmasq = site_config(
        &dir,
        "dnsmasq.conf",
        &[(
            "/etc/dnsmasq.d/netbootd.conf",
            generated("netbootd-dnsmasq.conf"),
        )],
    );
    let kea = site_config(
        &dir,
        "kea-dhcp4.conf",
        &[
            ("/etc/kea/netbootd-kea.json", generated("netbootd-kea.json")),
            (
                "/var/lib/kea/kea-leases4.csv",
                dir.path("leases.csv").display().to_string(),
            ),
        ],
    );
    let isc = site_config(
        &dir,
        "dhcpd.conf",
        &[(
            "/etc/dhcp/netbootd-isc.conf",
            generated("netbootd-isc.conf"),
        )],
    );
    let proxy = recipes().join("netbootd-dnsmasq-proxy.conf");
    let checks: Vec<(&str, Vec<String>)> = vec![
        (
            "dnsmasq",
            vec![
                "dnsmasq".into(),
                "--test".into(),
                format!("--conf-file={}", dnsmasq.display()),
            ],
        ),
        (
            "dnsmasq-proxy",
            vec![
                "dnsmasq".into(),
                "--test".into(),
                format!("--conf-file={}", proxy.display()),
            ],
        ),
        (
            "kea",
            vec![
                byo::kea_dhcp4().display().to_string(),
                "-t".into(),
                kea.display().to_string(),
            ],
        ),
        (
            "isc",
            vec![
                byo::isc_dhcpd().display().to_string(),
                "-t".into(),
                "-cf".into(),
                isc.display().to_string(),
            ],
        ),
    ];
    for (name, args) in checks {
        let out = std::process::Command::new(&args[0])
            .args(&args[1..])
            .env("KEA_PIDFILE_DIR", &dir.0)
            .env("KEA_LOCKFILE_DIR", &dir.0)
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(
            out.status.success(),
            "{name}'s check refused the recipe: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn the_openwrt_uci_rules_give_firmware_the_binary_and_ipxe_the_script() {
    need_root_and("byo openwrt", &["ip", "busybox", "dnsmasq"]);
    let dir = TempDir::new("byo-openwrt");
    // What OpenWrt's dnsmasq makes of the UCI sections, on the lab's network.
    let uci = std::fs::read_to_string(recipes().join("openwrt-dhcp")).unwrap();
    let lines: String = uci
        .lines()
        .filter_map(|l| l.strip_prefix("#> "))
        .map(|l| format!("{}\n", l.replace("192.168.1.", "10.77.1.")))
        .collect();
    assert!(lines.contains("dhcp-boot=ipxe.efi"), "{uci}");
    let conf = dir.write(
        "openwrt-dnsmasq.conf",
        &format!("dhcp-range=10.77.0.0,static,255.255.0.0\n{lines}"),
    );
    let mut lab = Lab::new("52:54:00:00:10:11");
    lab.add_dhcp_segment();
    let site = DhcpServer::start(Peer::Dnsmasq, lab.dhcp.as_ref().unwrap(), "p0", &conf, &dir);
    let hook = write_hook(&dir);
    let ask = |extra: Vec<String>| {
        let _ = std::fs::remove_file(dir.path("hook.env"));
        let mut args = udhcpc_args(&hook);
        args.extend(extra.iter().map(String::as_str));
        let out = lab.cli.run_for(Duration::from_secs(20), &args);
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stderr),
            site.log_text()
        );
        answer(&hook_env(&dir), "52:54:00:00:10:11", true)
    };
    let firmware = ask(pxe(7, "PXEClient"));
    assert_eq!(firmware["ip"], "10.77.1.11");
    assert_eq!(firmware["boot_file"], "ipxe.efi");
    assert_eq!(firmware["siaddr"], "10.77.1.2");
    let mut ipxe = pxe(7, "PXEClient");
    ipxe.extend(["-x".into(), "0x4d:69505845".into()]);
    let ipxe = ask(ipxe);
    assert_eq!(
        ipxe["boot_file"],
        "http://10.77.1.2/52:54:00:00:10:11/auto.ipxe"
    );
}
