//! The address pool for unknown machines, against real clients in network namespaces made by
//! each test: busybox udhcpc, dhcpcd and ISC dhclient get pool addresses with the pool's
//! options; dhclient renews, then is NAKed once its MAC is added to the hardware file and
//! takes its reservation; an address something answers ARP for is skipped; Kea's perfdhcp
//! drives 2,000 unknown MACs while netbootd is killed with SIGKILL, and every ACK seen on the
//! wire (captured with tcpdump) is in the lease table after the restart, no address ever with
//! two MACs.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{
    get_from_client, hook_env, need_root_and, udhcpc_args, write_hook, Lab, SRV_IP,
};
use common::{text, Server, TempDir, BIN};
use netbootd::wire::dhcp::{Message, MessageType};
use netbootd::wire::frame::parse_udp_frame;
use netbootd::wire::MacAddr;

const LIMIT: Duration = Duration::from_secs(20);

fn config(dir: &TempDir, pool: &str) -> std::path::PathBuf {
    dir.write(
        "netbootd.toml",
        &format!(
            "[[pool]]\nname = \"lab\"\n{pool}\nsubnet = \"10.77.0.0/16\"\ngateway = \"10.77.0.1\"\n\
             dns = [\"10.77.0.1\", \"10.77.0.2\"]\ndomain = \"unknown.example\"\n"
        ),
    )
}

/// netbootd on `s0` with the pool of `config`, HTTP on 8080 (for `/unknown`).
fn start(lab: &Lab, dir: &TempDir, hardware: &str, extra: &[&str]) -> Server {
    let hw = dir.path("hardware.yaml");
    if !hw.exists() {
        std::fs::write(&hw, hardware).unwrap();
    }
    std::fs::create_dir_all(dir.path("ipxe")).unwrap();
    std::fs::create_dir_all(dir.path("state")).unwrap();
    let (ipxe, state, conf) = (
        dir.path("ipxe"),
        dir.path("state"),
        dir.path("netbootd.toml"),
    );
    let mut args = vec![
        "--config",
        conf.to_str().unwrap(),
        "--backend-file-path",
        hw.to_str().unwrap(),
        "--dhcp-iface",
        "s0",
        "--ipxe-dir",
        ipxe.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--tftp-enabled=false",
        "--syslog-enabled=false",
    ];
    args.extend_from_slice(extra);
    let mut cmd = lab.srv.command(&[BIN]);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(&args);
    let mut server = Server::spawn(cmd);
    server.wait_for("on packet socket on s0", LIMIT);
    server
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn unknown_clients_get_pool_leases_and_a_known_one_is_naked_to_its_reservation() {
    need_root_and(
        "pool clients",
        &["busybox", "dhcpcd", "dhclient", "curl", "ip"],
    );
    let dir = TempDir::new("pool-clients");
    config(
        &dir,
        "range = \"10.77.9.100-10.77.9.119\"\nlease-time = \"20s\"",
    );
    let lab = Lab::new("02:77:00:00:09:01");
    let mut server = start(&lab, &dir, "{}\n", &[]);
    let hook = write_hook(&dir);
    let has = |env: &str, want: &str| env.lines().any(|l| l == want);

    // udhcpc: the pool's first address and every option of the pool.
    let out = lab
        .cli
        .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
    let env = hook_env(&dir);
    assert!(out.status.success(), "udhcpc: {}\n{env}", text(&out.stderr));
    for want in [
        "ip=10.77.9.100",
        "subnet=255.255.0.0",
        "router=10.77.0.1",
        "dns=10.77.0.1 10.77.0.2",
        "domain=unknown.example",
        "lease=20",
        "serverid=10.77.0.1",
    ] {
        assert!(has(&env, want), "udhcpc lacks {want}:\n{env}");
    }
    let (line, _) = server.wait_for("mac=02:77:00:00:09:01", LIMIT);
    assert!(line.contains("unknown MAC: probing 10.77.9.100"), "{line}");

    // dhcpcd (it ARP-probes the address itself, then takes it).
    lab.set_client_mac("02:77:00:00:09:02");
    let _ = std::fs::remove_file(dir.path("hook.env"));
    let out = lab.cli.run_for(
        Duration::from_secs(40),
        &[
            "dhcpcd",
            "-4",
            "-B",
            "-1",
            "-t",
            "30",
            "-f",
            "/dev/null",
            "-c",
            hook.to_str().unwrap(),
            "--nobackground",
            "br0",
        ],
    );
    let env = hook_env(&dir);
    assert!(
        env.contains("new_ip_address=10.77.9.101"),
        "dhcpcd: {}{}\n{env}\nnetbootd:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        server.log(Duration::from_millis(200))
    );
    assert!(env.contains("new_dhcp_lease_time=20"), "{env}");

    // dhclient runs on: it renews the pool lease (ACKed), then the MAC is added to the
    // hardware file, its next renewal is NAKed and it takes the reservation.
    let known = "02:77:00:00:09:03";
    lab.set_client_mac(known);
    let _ = std::fs::remove_file(dir.path("hook.env"));
    let conf = dir.write("dhclient.conf", "timeout 30;\nretry 2;\n");
    let (leases, pid) = (dir.path("dhclient.leases"), dir.path("dhclient.pid"));
    let mut dhclient = lab
        .cli
        .command(&[
            "dhclient",
            "-4",
            "-d",
            "-v",
            "-sf",
            hook.to_str().unwrap(),
            "-cf",
            conf.to_str().unwrap(),
            "-lf",
            leases.to_str().unwrap(),
            "-pf",
            pid.to_str().unwrap(),
            "br0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dhclient starts");
    let (line, _) = server.wait_for(
        &format!("mac={known} arch=- client=plain mode=reservation -> ACK 10.77.9.102"),
        LIMIT,
    );
    assert!(line.contains("REQUEST"), "{line}");
    let deadline = Instant::now() + LIMIT;
    while !hook_env(&dir).contains("new_ip_address=10.77.9.102") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let env = hook_env(&dir);
    for want in [
        "new_ip_address=10.77.9.102",
        "new_subnet_mask=255.255.0.0",
        "new_routers=10.77.0.1",
        "new_domain_name=unknown.example",
        "new_dhcp_lease_time=20",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "dhclient lacks {want}:\n{env}"
        );
    }
    // The renewal at T1 (10 s), unicast with ciaddr.
    let (line, _) = server.wait_for(
        &format!("mac={known} arch=- client=plain mode=reservation -> ACK 10.77.9.102 to unicast"),
        LIMIT,
    );
    assert!(line.contains("REQUEST"), "{line}");
    std::fs::write(
        dir.path("hardware.yaml"),
        format!("{known}:\n  ipAddress: 10.77.0.60\n  subnetMask: 255.255.0.0\n  leaseTime: 600\n"),
    )
    .unwrap();
    server.wait_for("inventory reloaded", LIMIT);
    let (line, _) = server.wait_for(&format!("mac={known}"), Duration::from_secs(30));
    assert!(line.contains("-> NAK"), "{line}");
    server.wait_for(
        &format!("mac={known} arch=- client=plain mode=reservation -> ACK 10.77.0.60"),
        LIMIT,
    );
    let deadline = Instant::now() + LIMIT;
    while !hook_env(&dir).contains("new_ip_address=10.77.0.60") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = dhclient.kill();
    let _ = dhclient.wait();
    let env = hook_env(&dir);
    assert!(env.contains("new_ip_address=10.77.0.60"), "{env}");
    let log = server.log(Duration::from_millis(200));
    assert!(
        log.contains(&format!(
            "pool: {known} is in the inventory now: its pool lease of 10.77.9.102 is dropped"
        )),
        "{log}"
    );

    // /unknown lists the two unknown MACs (the known one left the list) and their leases.
    let json = get_from_client(&lab, "/unknown");
    for want in [
        "\"mac\":\"02:77:00:00:09:01\"",
        "\"mac\":\"02:77:00:00:09:02\"",
        "\"address\":\"10.77.9.100\"",
        "\"name\":\"lab\",\"first\":\"10.77.9.100\",\"last\":\"10.77.9.119\",\"size\":20",
    ] {
        assert!(json.contains(want), "/unknown lacks {want}: {json}");
    }
    assert!(!json.contains(known), "{json}");
    // `netbootd unknown` reads the journal: the same list, and a YAML stanza per MAC.
    let state = dir.path("state");
    let conf = dir.path("netbootd.toml");
    let out = std::process::Command::new(BIN)
        .args([
            "unknown",
            "--config",
            conf.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}{}", text(&out.stderr));
    assert!(
        table.contains("02:77:00:00:09:01") && table.contains("10.77.9.100"),
        "{table}"
    );
    assert!(table.contains("2 unknown MACs"), "{table}");
    let out = std::process::Command::new(BIN)
        .args([
            "unknown",
            "--yaml",
            "--config",
            conf.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let yaml = text(&out.stdout);
    assert!(
        yaml.contains("02:77:00:00:09:02:\n  ipAddress: 10.77.9.101"),
        "{yaml}"
    );
    // The stanzas are a hardware file netbootd accepts.
    let hw = dir.write("from-unknown.yaml", &yaml);
    let out = std::process::Command::new(BIN)
        .args([
            "check",
            "--backend-file-path",
            hw.to_str().unwrap(),
            "--dhcp-enabled=false",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // /metrics carries the pool's gauges (brought up to date every second).
    std::thread::sleep(Duration::from_millis(1100));
    let metrics = get_from_client(&lab, "/metrics");
    assert!(
        metrics.contains("netbootd_pool_addresses{pool=\"lab\",state=\"bound\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("netbootd_unknown_machines 2"), "{metrics}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn an_address_something_answers_arp_or_ping_for_is_skipped() {
    need_root_and("pool ARP probe", &["busybox", "ip"]);
    let dir = TempDir::new("pool-arp");
    config(&dir, "range = \"10.77.9.100-10.77.9.119\"");
    let lab = Lab::new("02:77:00:00:09:11");
    // The client namespace already uses the pool's first address.
    lab.cli_address("10.77.9.100/16");
    let mut server = start(
        &lab,
        &dir,
        "{}\n",
        &[
            "--http-ipxe-binary-enabled=false",
            "--http-ipxe-script-enabled=false",
        ],
    );
    let hook = write_hook(&dir);
    let out = lab
        .cli
        .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
    let env = hook_env(&dir);
    assert!(out.status.success(), "udhcpc: {}\n{env}", text(&out.stderr));
    assert!(env.lines().any(|l| l == "ip=10.77.9.101"), "{env}");
    let (line, _) = server.wait_for("answered a probe", LIMIT);
    assert!(line.contains("10.77.9.100 answered a probe"), "{line}");
    drop(server);

    // Without --dhcp-iface (one UDP socket) the probe is an ICMP echo.
    let hw = dir.path("hardware.yaml");
    let (state, conf) = (dir.path("state-udp"), dir.path("netbootd.toml"));
    let mut cmd = lab.srv.command(&[BIN]);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "--config",
            conf.to_str().unwrap(),
            "--backend-file-path",
            hw.to_str().unwrap(),
            "--dhcp-ip-for-packet",
            SRV_IP,
            "--state-dir",
            state.to_str().unwrap(),
            "--ipxe-dir",
            dir.path("ipxe").to_str().unwrap(),
            "--tftp-enabled=false",
            "--syslog-enabled=false",
            "--http-ipxe-binary-enabled=false",
            "--http-ipxe-script-enabled=false",
        ]);
    let mut server = Server::spawn(cmd);
    server.wait_for("DHCP reservation on UDP", LIMIT);
    lab.set_client_mac("02:77:00:00:09:12");
    lab.cli_address("10.77.9.100/16");
    let _ = std::fs::remove_file(dir.path("hook.env"));
    let out = lab
        .cli
        .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
    let env = hook_env(&dir);
    assert!(out.status.success(), "udhcpc: {}\n{env}", text(&out.stderr));
    assert!(env.lines().any(|l| l == "ip=10.77.9.101"), "{env}");
    let (line, _) = server.wait_for("answered a probe", LIMIT);
    assert!(line.contains("10.77.9.100 answered a probe"), "{line}");
    let metrics_line = server.seen.iter().any(|l| l.contains("no ICMP probes"));
    assert!(!metrics_line, "{:?}", server.seen);
}

/// The ACKs in a pcap file of relay traffic: (client MAC, address).
fn acks_in(pcap: &Path) -> Vec<(MacAddr, Ipv4Addr)> {
    let bytes = std::fs::read(pcap).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        let Ok(udp) = parse_udp_frame(frame) else {
            continue;
        };
        let Ok(msg) = Message::parse(udp.payload) else {
            continue;
        };
        if msg.message_type() == Some(MessageType::Ack) {
            out.push((msg.mac().unwrap(), msg.yiaddr));
        }
    }
    out
}

/// perfdhcp through the relay path from the client namespace for `secs`, captured by tcpdump
/// into `pcap`; returns perfdhcp's output.
fn perfdhcp_captured(
    lab: &Lab,
    dir: &TempDir,
    pcap: &str,
    secs: u32,
    during: impl FnOnce(),
) -> String {
    let pcap = dir.path(pcap);
    let mut tcpdump = lab
        .cli
        .command(&[
            "tcpdump",
            "-i",
            "c0",
            "-n",
            "-U",
            "-s",
            "600",
            "-w",
            pcap.to_str().unwrap(),
            "udp dst port 67 and src host 10.77.0.1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tcpdump starts");
    std::thread::sleep(Duration::from_millis(1500));
    let period = secs.to_string();
    let perf = lab
        .cli
        .command(&[
            "perfdhcp", "-4", "-l", "br0", "-r", "400", "-R", "2000", "-s", "7", "-p", &period,
            SRV_IP,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("perfdhcp starts");
    during();
    let out = perf.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tcpdump.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = tcpdump.wait();
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// perfdhcp's count of ACKs (its second "received packets").
fn perfdhcp_acks(out: &str) -> usize {
    out.lines()
        .filter(|l| l.starts_with("received packets"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(0)
}

/// The bound leases of `/unknown`: MAC → address.
fn leases(lab: &Lab) -> BTreeMap<String, String> {
    let json = get_from_client(lab, "/unknown");
    let part = json.split("\"leases\":[").nth(1).unwrap_or("");
    part.split('{')
        .filter(|l| l.contains("\"state\":\"bound\""))
        .filter_map(|l| {
            let field = |name: &str| {
                let start = l.find(&format!("\"{name}\":\""))? + name.len() + 4;
                Some(l[start..].split('"').next()?.to_string())
            };
            Some((field("mac")?, field("ip")?))
        })
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn sigkill_during_2000_unknown_macs_loses_no_acknowledged_lease() {
    need_root_and("pool kill -9", &["perfdhcp", "tcpdump", "curl", "ip"]);
    let dir = TempDir::new("pool-kill");
    // 4,000 addresses; hour-long leases, so that nothing expires during the test.
    config(
        &dir,
        "range = \"10.77.16.1-10.77.31.160\"\nlease-time = \"1h\"",
    );
    let lab = Lab::new("02:77:00:00:09:21");
    lab.cli_address("10.77.0.2/16");
    let mut server = start(&lab, &dir, "{}\n", &[]);
    let killed_at = std::cell::Cell::new(None);
    let out = perfdhcp_captured(&lab, &dir, "first.pcap", 8, || {
        std::thread::sleep(Duration::from_secs(3));
        server.signal(nix::sys::signal::Signal::SIGKILL);
        killed_at.set(Some(Instant::now()));
    });
    assert!(killed_at.get().is_some());
    let _ = server.wait_exit(LIMIT);
    // The journal was rewritten (in the background) at least once before the kill.
    let log = server.log(Duration::from_millis(100));
    let rewrites: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pool: journal rewritten"))
        .collect();
    assert!(!rewrites.is_empty(), "{log}");
    let acked = acks_in(&dir.path("first.pcap"));
    let perf_acks = perfdhcp_acks(&out);
    assert!(
        perf_acks > 100,
        "too few ACKs before the kill to tell anything: {perf_acks}\n{out}"
    );
    assert!(
        acked.len() >= perf_acks,
        "the capture saw {} ACKs, perfdhcp {perf_acks}",
        acked.len()
    );
    // No address went to two MACs, and no MAC got two addresses.
    let mut by_ip: BTreeMap<Ipv4Addr, MacAddr> = BTreeMap::new();
    let mut by_mac: BTreeMap<MacAddr, Ipv4Addr> = BTreeMap::new();
    for (mac, ip) in &acked {
        assert_eq!(
            *by_ip.entry(*ip).or_insert(*mac),
            *mac,
            "{ip} ACKed to two MACs"
        );
        assert_eq!(
            *by_mac.entry(*mac).or_insert(*ip),
            *ip,
            "{mac} ACKed two addresses"
        );
    }

    // Restarted on the same state directory: every acknowledged lease is in the table.
    let server = start(&lab, &dir, "{}\n", &[]);
    let loaded = server
        .seen
        .iter()
        .find(|l| l.contains("pool: ") && l.contains(" loaded: "));
    assert!(loaded.is_some(), "{:?}", server.seen);
    let table = leases(&lab);
    assert!(
        table.len() >= by_mac.len(),
        "{} leases after the restart, {} MACs ACKed",
        table.len(),
        by_mac.len()
    );
    for (mac, ip) in &by_mac {
        assert_eq!(
            table.get(&mac.to_string()).map(String::as_str),
            Some(ip.to_string().as_str()),
            "the ACKed lease of {mac} ({ip}) is not in the table after the restart"
        );
    }

    // The same 2,000 MACs again: each one ACKed before gets its address, none shared.
    let out = perfdhcp_captured(&lab, &dir, "second.pcap", 5, || {});
    let again = acks_in(&dir.path("second.pcap"));
    assert!(perfdhcp_acks(&out) > 100, "{out}");
    for (mac, ip) in &again {
        if let Some(before) = by_mac.get(mac) {
            assert_eq!(before, ip, "{mac} had {before} and now got {ip}");
        }
        assert_eq!(
            *by_ip.entry(*ip).or_insert(*mac),
            *mac,
            "{ip} ACKed to two MACs across the restart"
        );
    }
    eprintln!(
        "perfdhcp ACKs before the kill: {perf_acks}; captured {} ({} MACs); leases after restart: {}; second run ACKs: {}; {}",
        acked.len(),
        by_mac.len(),
        table.len(),
        again.len(),
        rewrites[0]
    );
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn a_full_pool_turns_clients_away_with_one_line_a_second() {
    need_root_and("pool full", &["perfdhcp", "curl", "ip"]);
    let dir = TempDir::new("pool-full");
    config(
        &dir,
        "range = \"10.77.9.100-10.77.9.102\"\nlease-time = \"1h\"",
    );
    let lab = Lab::new("02:77:00:00:09:31");
    lab.cli_address("10.77.0.2/16");
    let mut server = start(&lab, &dir, "{}\n", &[]);
    let out = lab.cli.run_for(
        Duration::from_secs(30),
        &[
            "perfdhcp", "-4", "-l", "br0", "-r", "50", "-R", "60", "-p", "4", SRV_IP,
        ],
    );
    let report = text(&out.stdout);
    // Three addresses: three MACs hold them (perfdhcp picks MACs at random, so the lucky
    // ones are ACKed again and again); the rest get nothing.
    assert!(perfdhcp_acks(&report) >= 3, "{report}");
    let table = leases(&lab);
    assert_eq!(table.len(), 3, "{table:?}");
    let log = server.log(Duration::from_millis(1500));
    let full: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pool lab: full:"))
        .collect();
    assert!(
        !full.is_empty() && full.len() <= 7,
        "{} lines:\n{}",
        full.len(),
        full.join("\n")
    );
    let metrics = get_from_client(&lab, "/metrics");
    let turned_away: u64 = metrics
        .lines()
        .find(|l| l.starts_with("netbootd_pool_full_total{pool=\"lab\"}"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    assert!(turned_away > 100, "{metrics}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn a_read_only_state_dir_is_a_start_up_error_with_a_pool() {
    need_root_and("pool read-only state", &["unshare", "mount", "sh"]);
    let dir = TempDir::new("pool-ro");
    let conf = config(&dir, "range = \"10.77.9.0/24\"");
    let hw = dir.write("hardware.yaml", "{}\n");
    let hw = hw.to_str().unwrap();
    let state = dir.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let (state, conf) = (state.to_str().unwrap(), conf.to_str().unwrap());
    // A mount namespace of its own, where the state directory is a read-only bind mount.
    let script = format!(
        "mount --bind {state} {state} && mount -o remount,ro,bind {state} && exec {BIN} \
         --config {conf} --state-dir {state} --dhcp-addr 127.0.0.1:16767 --dhcp-ip-for-packet 127.0.0.1 \
         --backend-file-path {hw} --tftp-enabled=false --syslog-enabled=false \
         --http-ipxe-binary-enabled=false --http-ipxe-script-enabled=false"
    );
    let out = std::process::Command::new("timeout")
        .args([
            "20",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("--state-dir {state}, which cannot be written"))
            && err.contains("Read-only file system"),
        "{err}"
    );
}
