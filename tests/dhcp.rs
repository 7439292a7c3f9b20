//! DHCP against real clients in network namespaces made by each test: ISC dhclient, busybox
//! udhcpc and udhcpd, dhcpcd, nmap's broadcast-dhcp-discover and Kea's perfdhcp (relay path).
//! netbootd binds its packet socket to the server end of a veth pair (`--dhcp-iface s0`).
//! Hand-built requests (bad input, another server's REQUEST, the PXE boot-server exchange) are
//! sent by `tests/tools/dhcp_io.py` and decoded with netbootd's own codec.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use common::netns::{
    get_from_client, hook_env, need_root_and, udhcpc_args, write_hook, Lab, SRV_IP,
};
use common::{text, Server, TempDir, BIN};
use netbootd::wire::dhcp::{code, Message, MessageType, Op, BROADCAST_FLAG};

const CLI_MAC: &str = "02:77:00:00:00:50";
const DISABLED_MAC: &str = "02:77:00:00:00:51";
const NO_PXE_MAC: &str = "02:77:00:00:00:52";
const UNKNOWN_MAC: &str = "02:77:00:00:00:99";

const HARDWARE: &str = r#"
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
02:77:00:00:00:51:
  ipAddress: 10.77.0.51
  subnetMask: 255.255.0.0
  disabled: true
  netboot:
    allowPxe: true
02:77:00:00:00:52:
  ipAddress: 10.77.0.52
  subnetMask: 255.255.0.0
  leaseTime: 600
  netboot:
    allowPxe: false
"#;

const LIMIT: Duration = Duration::from_secs(20);

/// netbootd in the server namespace on `s0`, DHCP only.
fn start_server(lab: &Lab, dir: &TempDir, hardware: &str, extra: &[&str]) -> Server {
    let hw = dir.write("hardware.yaml", hardware);
    std::fs::create_dir_all(dir.path("ipxe")).unwrap();
    let ipxe = dir.path("ipxe");
    let mut args = vec![
        "--backend-file-path",
        hw.to_str().unwrap(),
        "--dhcp-iface",
        "s0",
        "--ipxe-dir",
        ipxe.to_str().unwrap(),
        "--tftp-enabled=false",
        "--syslog-enabled=false",
    ];
    // HTTP stays off unless a test asks for it (to read /metrics).
    if !extra.contains(&"--http-port") {
        args.extend([
            "--http-ipxe-binary-enabled=false",
            "--http-ipxe-script-enabled=false",
        ]);
    }
    args.extend_from_slice(extra);
    let mut cmd = lab.srv.command(&[BIN]);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(&args);
    let mut server = Server::spawn(cmd);
    server.wait_for("on packet socket on s0", LIMIT);
    server
}

/// Sends `msgs` from 0.0.0.0:`port` on br0 to `dest` and returns the replies seen in `wait`.
fn probe(
    lab: &Lab,
    port: u16,
    dest: SocketAddrV4,
    wait: f32,
    msgs: &[Vec<u8>],
) -> Vec<(String, Message)> {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/dhcp_io.py");
    let port = port.to_string();
    let ip = dest.ip().to_string();
    let dport = dest.port().to_string();
    let wait = wait.to_string();
    let hex: Vec<String> = msgs
        .iter()
        .map(|m| m.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let mut args = vec![
        "python3",
        tool.to_str().unwrap(),
        "br0",
        &port,
        &ip,
        &dport,
        &wait,
    ];
    args.extend(hex.iter().map(String::as_str));
    let out = lab.cli.run_for(Duration::from_secs(30), &args);
    assert!(out.status.success(), "dhcp_io.py: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (from, hex) = l.split_once(' ')?;
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            Some((from.to_string(), Message::parse(&bytes).ok()?))
        })
        .collect()
}

/// A request from `mac` with the broadcast flag set.
fn request(mac: &str, xid: u32, msg_type: MessageType) -> Message {
    let mut m = Message {
        xid,
        flags: BROADCAST_FLAG,
        ..Message::default()
    };
    let mac: netbootd::wire::MacAddr = mac.parse().unwrap();
    m.chaddr[..6].copy_from_slice(&mac.0);
    m.options.set(code::MESSAGE_TYPE, [u8::from(msg_type)]);
    m
}

fn pxe_request(mac: &str, xid: u32, msg_type: MessageType, arch: u16) -> Message {
    let mut m = request(mac, xid, msg_type);
    m.options.set(
        code::VENDOR_CLASS,
        format!("PXEClient:Arch:{arch:05}:UNDI:003000").into_bytes(),
    );
    m.options.set(code::CLIENT_ARCH, arch.to_be_bytes());
    m.options.set(code::CLIENT_NDI, [1, 3, 0]);
    m.options.set(code::CLIENT_GUID, [0u8; 17]);
    m
}

fn bytes(m: &Message) -> Vec<u8> {
    m.emit(576).bytes
}

const BROADCAST_67: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn dhclient_gets_its_reservation_and_release_is_logged() {
    need_root_and("dhclient", &["dhclient", "ip"]);
    let dir = TempDir::new("dhclient");
    let lab = Lab::new(CLI_MAC);
    let mut server = start_server(&lab, &dir, HARDWARE, &[]);
    let hook = write_hook(&dir);
    let conf = dir.write(
        "dhclient.conf",
        "timeout 20;\nretry 5;\nrequest subnet-mask, broadcast-address, routers, domain-name-servers, host-name, domain-name, log-servers;\n",
    );
    let (leases, pid) = (dir.path("dhclient.leases"), dir.path("dhclient.pid"));
    let dhclient = |extra: &str| {
        lab.cli.run_for(
            Duration::from_secs(30),
            &[
                "dhclient",
                "-4",
                "-v",
                extra,
                "-sf",
                hook.to_str().unwrap(),
                "-cf",
                conf.to_str().unwrap(),
                "-lf",
                leases.to_str().unwrap(),
                "-pf",
                pid.to_str().unwrap(),
                "br0",
            ],
        )
    };
    let out = dhclient("-1");
    let log = text(&out.stderr);
    assert!(out.status.success(), "dhclient failed:\n{log}");
    assert!(log.contains("bound to 10.77.0.50"), "{log}");
    let env = hook_env(&dir);
    for want in [
        "new_ip_address=10.77.0.50",
        "new_subnet_mask=255.255.0.0",
        "new_routers=10.77.0.1",
        "new_domain_name_servers=10.77.0.1 1.1.1.1",
        "new_host_name=cli0",
        "new_domain_name=lab.example",
        "new_dhcp_lease_time=3600",
        "new_log_servers=10.77.0.1",
        "new_dhcp_server_identifier=10.77.0.1",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "dhclient lacks {want}:\n{env}"
        );
    }
    server.wait_for("REQUEST", LIMIT);
    let out = dhclient("-r");
    assert!(
        text(&out.stderr).contains("DHCPRELEASE"),
        "{}",
        text(&out.stderr)
    );
    let (line, _) = server.wait_for("RELEASE", LIMIT);
    assert!(line.contains("client RELEASEd 10.77.0.50"), "{line}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn udhcpc_reservations_boot_files_and_silences() {
    need_root_and("udhcpc", &["busybox", "ip"]);
    let dir = TempDir::new("udhcpc");
    let lab = Lab::new(CLI_MAC);
    let mut server = start_server(&lab, &dir, HARDWARE, &[]);
    let hook = write_hook(&dir);
    let udhcpc = |mac: &str, extra: &[&str]| {
        lab.set_client_mac(mac);
        let _ = std::fs::remove_file(dir.path("hook.env"));
        let mut args = udhcpc_args(&hook);
        args.extend_from_slice(extra);
        let out = lab.cli.run_for(Duration::from_secs(20), &args);
        (out.status.success(), hook_env(&dir), text(&out.stderr))
    };
    let has = |env: &str, want: &str| env.lines().any(|l| l == want);

    // A plain client: address and every option, no boot file.
    let (ok, env, log) = udhcpc(CLI_MAC, &[]);
    assert!(ok, "udhcpc got no lease:\n{log}");
    for want in [
        "ip=10.77.0.50",
        "subnet=255.255.0.0",
        "router=10.77.0.1",
        "dns=10.77.0.1 1.1.1.1",
        "hostname=cli0",
        "domain=lab.example",
        "lease=3600",
        "serverid=10.77.0.1",
    ] {
        assert!(has(&env, want), "udhcpc lacks {want}:\n{env}");
    }
    assert!(!env.contains("boot_file="), "{env}");

    // PXE firmware by architecture, and UEFI HTTP boot.
    for (vendor, arch, file) in [
        ("PXEClient", 0u16, "undionly.kpxe"),
        ("PXEClient", 7, "ipxe.efi"),
        ("PXEClient", 11, "snp.efi"),
        (
            "HTTPClient",
            16,
            "http://10.77.0.1:8080/ipxe/02:77:00:00:00:50/ipxe.efi",
        ),
    ] {
        let class = format!("{vendor}:Arch:{arch:05}:UNDI:003000");
        let arch_opt = format!("0x5d:{arch:04x}");
        let (ok, env, log) = udhcpc(CLI_MAC, &["-V", &class, "-x", &arch_opt]);
        assert!(ok, "arch {arch}: {log}");
        assert!(
            has(&env, &format!("boot_file={file}")),
            "arch {arch}:\n{env}"
        );
        assert!(has(&env, "siaddr=10.77.0.1"), "arch {arch}:\n{env}");
    }

    // iPXE's user class gets the script URL.
    let (ok, env, log) = udhcpc(
        CLI_MAC,
        &[
            "-V",
            "PXEClient:Arch:00000:UNDI:002001",
            "-x",
            "0x5d:0000",
            "-x",
            "0x4d:69505845",
        ],
    );
    assert!(ok, "{log}");
    assert!(
        has(
            &env,
            "boot_file=http://10.77.0.1:8080/02:77:00:00:00:50/auto.ipxe"
        ),
        "{env}"
    );

    // allowPxe: false: an address, no boot file.
    let (ok, env, log) = udhcpc(
        NO_PXE_MAC,
        &["-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007"],
    );
    assert!(ok, "{log}");
    assert!(
        has(&env, "ip=10.77.0.52") && has(&env, "lease=600"),
        "{env}"
    );
    assert!(!env.contains("boot_file="), "{env}");

    // Unknown and disabled machines get nothing.
    for (mac, why) in [
        (UNKNOWN_MAC, "unknown MAC"),
        (DISABLED_MAC, "machine is disabled"),
    ] {
        let (ok, env, _) = udhcpc(mac, &[]);
        assert!(
            !ok && !env.contains("event=bound"),
            "{mac} got an answer:\n{env}"
        );
        let (line, _) = server.wait_for(&format!("mac={mac}"), LIMIT);
        assert!(line.contains(why), "{line}");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn dhcpcd_gets_its_reservation_with_arp_probe_and_releases() {
    need_root_and("dhcpcd", &["dhcpcd", "ip"]);
    let dir = TempDir::new("dhcpcd");
    let lab = Lab::new(CLI_MAC);
    let mut server = start_server(&lab, &dir, HARDWARE, &[]);
    let hook = write_hook(&dir);
    let conf = dir.write(
        "dhcpcd.conf",
        "ipv4only\nnoipv6rs\nrelease\noption log_servers\n",
    );
    // Private tmpfs over dhcpcd's state directories: nothing of the host is written.
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /var/lib/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd && \
         exec dhcpcd -4 -B -d -f {} -c {} br0",
        conf.display(),
        hook.display()
    );
    let mut child = lab
        .cli
        .command(&["sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dhcpcd starts");
    let start = std::time::Instant::now();
    while !hook_env(&dir).contains("event=BOUND") && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let env = hook_env(&dir);
    assert!(env.contains("event=BOUND"), "dhcpcd did not bind:\n{env}");
    for want in [
        "new_ip_address=10.77.0.50",
        "new_subnet_mask=255.255.0.0",
        "new_routers=10.77.0.1",
        "new_host_name=cli0",
        "new_dhcp_lease_time=3600",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "dhcpcd lacks {want}:\n{env}"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = child.wait();
    let (line, _) = server.wait_for("RELEASE", LIMIT);
    assert!(line.contains("10.77.0.50"), "{line}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn nmap_broadcast_dhcp_discover_gets_the_offer() {
    need_root_and("nmap", &["nmap", "ip"]);
    let dir = TempDir::new("nmap");
    let lab = Lab::new(CLI_MAC);
    let mut server = start_server(&lab, &dir, HARDWARE, &[]);
    lab.cli_address("10.77.0.2/16");
    let out = lab.cli.run_for(
        Duration::from_secs(60),
        &[
            "nmap",
            "-n",
            "-e",
            "br0",
            "--script",
            "broadcast-dhcp-discover",
            "--script-args",
            &format!("broadcast-dhcp-discover.mac={CLI_MAC},broadcast-dhcp-discover.timeout=3s"),
        ],
    );
    let report = text(&out.stdout);
    for want in [
        "IP Offered: 10.77.0.50",
        "Server Identifier: 10.77.0.1",
        "Subnet Mask: 255.255.0.0",
        "Router: 10.77.0.1",
        "Domain Name Server: 10.77.0.1, 1.1.1.1",
        "IP Address Lease Time: 1h00m00s",
        "Hostname: cli0",
    ] {
        assert!(
            report.contains(want),
            "nmap lacks {want:?}:\n{report}\n{}",
            server.log(Duration::from_millis(200))
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn wrong_address_is_naked_and_another_servers_request_ignored() {
    need_root_and("NAK", &["dhclient", "python3", "ip"]);
    let dir = TempDir::new("nak");
    let lab = Lab::new(CLI_MAC);
    let mut server = start_server(&lab, &dir, HARDWARE, &["--log-level", "debug"]);

    // dhclient remembers a lease of another address: INIT-REBOOT asks for it, gets a NAK,
    // starts over and binds the reservation.
    let leases = dir.write(
        "dhclient.leases",
        "lease {\n  interface \"br0\";\n  fixed-address 10.77.9.9;\n  option subnet-mask 255.255.0.0;\n  \
         option dhcp-server-identifier 10.77.0.1;\n  option dhcp-lease-time 86400;\n  renew 4 2037/01/01 00:00:00;\n  \
         rebind 4 2037/01/01 00:00:00;\n  expire 4 2037/01/01 00:00:00;\n}\n",
    );
    let hook = write_hook(&dir);
    let conf = dir.write("dhclient.conf", "timeout 20;\nretry 5;\n");
    let out = lab.cli.run_for(
        Duration::from_secs(40),
        &[
            "dhclient",
            "-4",
            "-v",
            "-1",
            "-sf",
            hook.to_str().unwrap(),
            "-cf",
            conf.to_str().unwrap(),
            "-lf",
            leases.to_str().unwrap(),
            "-pf",
            dir.path("pid").to_str().unwrap(),
            "br0",
        ],
    );
    let log = text(&out.stderr);
    assert!(log.contains("DHCPREQUEST for 10.77.9.9"), "{log}");
    assert!(log.contains("DHCPNAK from 10.77.0.1"), "{log}");
    assert!(log.contains("bound to 10.77.0.50"), "{log}");
    let (line, _) = server.wait_for("-> NAK", LIMIT);
    assert!(line.contains("REQUEST"), "{line}");
    lab.cli.run(&["ip", "-4", "addr", "flush", "dev", "br0"]);

    // A REQUEST that selected another server gets no answer; the same naming us gets the ACK.
    lab.cli_address("10.77.0.2/16");
    let mut other = request(CLI_MAC, 0x5e1ec7, MessageType::Request);
    other.options.set(code::SERVER_ID, [10, 77, 0, 3]);
    other.options.set(code::REQUESTED_ADDRESS, [10, 77, 0, 50]);
    assert!(probe(&lab, 68, BROADCAST_67, 1.5, &[bytes(&other)]).is_empty());
    server.wait_for("addressed to server 10.77.0.3", LIMIT);
    let mut ours = other.clone();
    ours.options.set(code::SERVER_ID, [10, 77, 0, 1]);
    let replies = probe(&lab, 68, BROADCAST_67, 1.5, &[bytes(&ours)]);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].1.message_type(), Some(MessageType::Ack));
    assert_eq!(replies[0].1.yiaddr, Ipv4Addr::new(10, 77, 0, 50));
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bad_packets_are_dropped_and_the_next_good_one_answered() {
    need_root_and("bad input", &["python3", "ip", "curl"]);
    let dir = TempDir::new("bad");
    let lab = Lab::new(CLI_MAC);
    let extra = [
        "--log-level",
        "debug",
        "--http-addr",
        SRV_IP,
        "--http-port",
        "8080",
        "--http-ipxe-binary-enabled=false",
    ];
    let mut server = start_server(&lab, &dir, HARDWARE, &extra);
    lab.cli_address("10.77.0.2/16");
    let good = bytes(&request(CLI_MAC, 0x600d, MessageType::Discover));
    let mut bad: Vec<Vec<u8>> = Vec::new();
    bad.push(good[..100].to_vec()); // truncated
    let mut b = good.clone();
    b[2] = 17; // hlen over 16
    bad.push(b);
    let mut b = good[..240].to_vec(); // option running past the end
    b.extend_from_slice(&[53, 1, 1, 12, 200, b'x']);
    bad.push(b);
    let mut b = good[..240].to_vec(); // overload pointing at file, which points at itself
    b.extend_from_slice(&[53, 1, 1, 52, 1, 3, 255]);
    b[108..111].copy_from_slice(&[52, 1, 3]);
    b[44..47].copy_from_slice(&[52, 1, 3]);
    bad.push(b);
    let mut b = good[..240].to_vec(); // zero-length message type
    b.extend_from_slice(&[53, 0, 255]);
    bad.push(b);
    let mut b = good.clone(); // wrong magic cookie
    b[236] = 0x12;
    bad.push(b);
    let mut b = good.clone(); // a BOOTREPLY sent to the server
    b[0] = u8::from(Op::Reply);
    bad.push(b);
    bad.push(vec![0xff; 1200]); // noise
    bad.push(good);
    let replies = probe(&lab, 68, BROADCAST_67, 1.5, &bad);
    assert_eq!(
        replies.len(),
        1,
        "only the good DISCOVER is answered: {replies:?}"
    );
    assert_eq!(replies[0].1.xid, 0x600d);
    assert_eq!(replies[0].1.message_type(), Some(MessageType::Offer));
    for why in [
        "truncated",
        "hlen 17",
        "runs past the end",
        "inside file/sname",
        "no DHCP message type",
        "no DHCP magic cookie",
        "not a BOOTREQUEST",
        "hlen 255",
    ] {
        server.wait_for(why, LIMIT);
    }
    assert!(server.is_running());
    // Every packet is in /metrics: the answer by type and verdict, the silences by reason,
    // the unparsable ones as malformed.
    let metrics = get_from_client(&lab, "/metrics");
    for series in [
        "netbootd_dhcp_packets_total{port=\"67\",type=\"DISCOVER\",verdict=\"OFFER\"} 1",
        "netbootd_dhcp_packets_total{port=\"67\",type=\"DISCOVER\",verdict=\"not_a_request\"} 1",
        "netbootd_dhcp_packets_total{port=\"67\",type=\"BOOTP\",verdict=\"bootp\"} 1",
        "netbootd_dhcp_malformed_total 6",
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
}

/// Requests whose giaddr or ciaddr would steer the reply somewhere no reply may go (a
/// multicast group, loopback from off the host, 0/8, the limited broadcast, or an address the
/// INFORM did not come from) get none; with --dhcp-relays, only listed relays are answered.
/// Before the fix a DISCOVER with giaddr 224.0.0.1 was answered to that group, and INFORMs with
/// ciaddr 127.0.0.1, 255.255.255.255 or 8.8.8.8 were ACKed there.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn forged_relay_and_client_addresses_get_no_reply() {
    need_root_and("forged addresses", &["python3", "ip", "curl"]);
    let dir = TempDir::new("forged");
    let lab = Lab::new(CLI_MAC);
    let extra = [
        "--http-addr",
        SRV_IP,
        "--http-port",
        "8080",
        "--http-ipxe-binary-enabled=false",
        "--dhcp-relays",
        "10.77.0.0/16",
    ];
    let mut server = start_server(&lab, &dir, HARDWARE, &extra);
    lab.cli_address("10.77.0.2/16");
    let relayed = |xid: u32, giaddr: [u8; 4]| {
        let mut m = request(CLI_MAC, xid, MessageType::Discover);
        m.giaddr = Ipv4Addr::from(giaddr);
        bytes(&m)
    };
    let inform = |xid: u32, ciaddr: [u8; 4]| {
        let mut m = request(CLI_MAC, xid, MessageType::Inform);
        m.ciaddr = Ipv4Addr::from(ciaddr);
        m.flags = 0;
        bytes(&m)
    };
    let mut odd_type = request(CLI_MAC, 0xf009, MessageType::Discover);
    odd_type.options.set(code::MESSAGE_TYPE, [77]);
    let sent = [
        relayed(0xf001, [224, 0, 0, 1]),
        relayed(0xf002, [127, 0, 0, 1]),
        relayed(0xf003, [0, 1, 2, 3]),
        relayed(0xf004, [8, 8, 8, 8]),
        inform(0xf005, [127, 0, 0, 1]),
        inform(0xf006, [255, 255, 255, 255]),
        inform(0xf007, [8, 8, 8, 8]),
        bytes(&odd_type),
        inform(0xf00a, [10, 77, 0, 2]), // from where it says: answered
        bytes(&request(CLI_MAC, 0xf00b, MessageType::Discover)),
    ];
    let replies = probe(&lab, 68, BROADCAST_67, 1.5, &sent);
    let mut answered: Vec<u32> = replies.iter().map(|(_, m)| m.xid).collect();
    answered.sort();
    assert_eq!(answered, [0xf00a, 0xf00b], "{replies:?}");
    for line in [
        "giaddr 224.0.0.1 is no relay's address",
        "giaddr 127.0.0.1 is no relay's address",
        "giaddr 0.1.2.3 is no relay's address",
        "giaddr 8.8.8.8 is not among --dhcp-relays",
        "ciaddr 127.0.0.1 is not the client's address",
        "ciaddr 255.255.255.255 is not the client's address",
        "ciaddr 8.8.8.8 is not the client's address",
    ] {
        server.wait_for(line, LIMIT);
    }
    let metrics = get_from_client(&lab, "/metrics");
    for series in [
        "netbootd_dhcp_packets_total{port=\"67\",type=\"DISCOVER\",verdict=\"forged_relay\"} 3",
        "netbootd_dhcp_packets_total{port=\"67\",type=\"DISCOVER\",verdict=\"unlisted_relay\"} 1",
        "netbootd_dhcp_packets_total{port=\"67\",type=\"INFORM\",verdict=\"forged_client_address\"} 3",
        "netbootd_dhcp_packets_total{port=\"67\",type=\"unknown\",verdict=\"unexpected_type\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
    assert!(!metrics.contains("TYPE-77"), "{metrics}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn perfdhcp_relay_path_5000_reserved_macs_at_1000_per_second() {
    need_root_and("perfdhcp", &["perfdhcp", "ip"]);
    let dir = TempDir::new("perfdhcp");
    let lab = Lab::new(CLI_MAC);
    let mut hw = String::from(HARDWARE);
    let mut macs = String::new();
    for i in 0..5000u32 {
        let mac = format!("02:50:00:00:{:02x}:{:02x}", i / 256, i % 256);
        hw += &format!(
            "{mac}:\n  ipAddress: 10.77.{}.{}\n  subnetMask: 255.255.0.0\n  defaultGateway: 10.77.0.1\n  leaseTime: 3600\n",
            100 + i / 250,
            1 + i % 250
        );
        macs += &mac;
        macs.push('\n');
    }
    let macs = dir.write("macs.txt", &macs);
    let _server = start_server(&lab, &dir, &hw, &[]);
    lab.cli_address("10.77.0.2/16");
    let out = lab.cli.run_for(
        Duration::from_secs(40),
        &[
            "perfdhcp",
            "-4",
            "-l",
            "br0",
            "-r",
            "1000",
            "-M",
            macs.to_str().unwrap(),
            "-p",
            "5",
            "-W",
            "1000000",
            SRV_IP,
        ],
    );
    let report = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "perfdhcp reported drops:\n{report}{}",
        text(&out.stderr)
    );
    let drops: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("drops ratio"))
        .collect();
    assert_eq!(drops.len(), 2, "{report}");
    for d in drops {
        assert!(
            d.contains(": 0 %") || d.contains(": 0.000 %") || d.contains(": 0%"),
            "{d}\n{report}"
        );
    }
    let acks: u64 = report
        .lines()
        .filter(|l| l.starts_with("received packets"))
        .nth(1)
        .and_then(|l| l.split(':').nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        acks >= 4900,
        "about 5 s at 1000/s, got {acks} ACKs:\n{report}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn proxy_mode_beside_an_address_server() {
    need_root_and("proxy", &["busybox", "python3", "ip"]);
    let dir = TempDir::new("proxy");
    let mut lab = Lab::new(CLI_MAC);
    lab.start_plain_dhcp(&dir.0);
    let mut server = start_server(
        &lab,
        &dir,
        HARDWARE,
        &["--dhcp-mode", "proxy", "--log-level", "debug"],
    );

    // A plain client: udhcpd's address; netbootd stays out of it.
    let hook = write_hook(&dir);
    let out = lab
        .cli
        .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        hook_env(&dir).contains("serverid=10.77.0.3"),
        "{}",
        hook_env(&dir)
    );
    server.wait_for("not a PXE client", LIMIT);
    lab.cli.run(&["ip", "-4", "addr", "flush", "dev", "br0"]);

    // A PXE client, UEFI x64: an address OFFER from udhcpd, a boot OFFER (no option 43) from us.
    lab.cli_address("10.77.0.2/16");
    let discover = pxe_request(CLI_MAC, 0x7001, MessageType::Discover, 7);
    let offers = probe(&lab, 68, BROADCAST_67, 2.0, &[bytes(&discover)]);
    let address = offers
        .iter()
        .find(|(_, m)| !m.yiaddr.is_unspecified())
        .unwrap_or_else(|| panic!("no address offer: {offers:?}"));
    let boot = offers
        .iter()
        .find(|(_, m)| m.yiaddr.is_unspecified())
        .unwrap_or_else(|| panic!("no ProxyDHCP offer: {offers:?}"));
    assert_eq!(address.1.server_id(), Some(Ipv4Addr::new(10, 77, 0, 3)));
    assert_eq!(boot.1.server_id(), Some(Ipv4Addr::new(10, 77, 0, 1)));
    assert_eq!(
        boot.1.options.get(code::VENDOR_CLASS),
        Some(&b"PXEClient"[..])
    );
    assert_eq!(boot.1.file, b"ipxe.efi");
    assert!(
        boot.1.options.get(code::VENDOR_SPECIFIC).is_none(),
        "UEFI goes to 4011"
    );
    let yiaddr = address.1.yiaddr;

    // REQUEST the address from udhcpd: netbootd stays silent, udhcpd ACKs.
    let mut req = pxe_request(CLI_MAC, 0x7001, MessageType::Request, 7);
    req.options.set(code::SERVER_ID, [10, 77, 0, 3]);
    req.options.set(code::REQUESTED_ADDRESS, yiaddr.octets());
    let acks = probe(&lab, 68, BROADCAST_67, 1.5, &[bytes(&req)]);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].1.message_type(), Some(MessageType::Ack));
    assert_eq!(acks[0].1.server_id(), Some(Ipv4Addr::new(10, 77, 0, 3)));
    lab.cli.run(&["ip", "-4", "addr", "flush", "dev", "br0"]);
    lab.cli_address(&format!("{yiaddr}/16"));

    // Then the boot server on 4011, as OVMF does: the ACK carries the boot file.
    let mut boot_req = pxe_request(CLI_MAC, 0x7002, MessageType::Request, 7);
    boot_req.ciaddr = yiaddr;
    boot_req.flags = 0;
    let dest = SocketAddrV4::new(SRV_IP.parse().unwrap(), 4011);
    let acks = probe(&lab, 4011, dest, 1.5, &[bytes(&boot_req)]);
    assert_eq!(acks.len(), 1, "{acks:?}");
    let ack = &acks[0].1;
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.file, b"ipxe.efi");
    assert_eq!(ack.siaddr, Ipv4Addr::new(10, 77, 0, 1));
    assert_eq!(ack.options.get(code::VENDOR_CLASS), Some(&b"PXEClient"[..]));
    assert_eq!(acks[0].0, "10.77.0.1:4011");
    server.wait_for("port=4011", LIMIT);

    // BIOS firmware boots straight from the offer (option 43, sub-option 6 = 8).
    let discover = pxe_request(CLI_MAC, 0x7003, MessageType::Discover, 0);
    let offers = probe(&lab, 68, BROADCAST_67, 2.0, &[bytes(&discover)]);
    let boot = offers
        .iter()
        .find(|(_, m)| m.yiaddr.is_unspecified())
        .unwrap_or_else(|| panic!("no ProxyDHCP offer: {offers:?}"));
    assert_eq!(boot.1.file, b"undionly.kpxe");
    assert_eq!(
        boot.1.options.get(code::VENDOR_SPECIFIC),
        Some(&[6, 1, 8, 255][..])
    );
}

/// The script URL an iPXE client gets, as Smee builds it (issue 16): the MAC goes before the
/// last path element, of `--dhcp-http-ipxe-script-url` too; a machine's own `ipxeScriptUrl`
/// is used verbatim. With `--log-format json` the decision's line parses as JSON with its
/// fields (Python's parser).
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn script_urls_as_smee_builds_them() {
    need_root_and("smee script urls", &["python3", "ip"]);
    let dir = TempDir::new("smee-urls");
    let lab = Lab::new(CLI_MAC);
    const OWN_MAC: &str = "02:77:00:00:00:53";
    let hardware = format!(
        "{HARDWARE}{OWN_MAC}:\n  ipAddress: 10.77.0.53\n  subnetMask: 255.255.0.0\n  netboot:\n    allowPxe: true\n    ipxeScriptUrl: http://boot.example/own.ipxe\n"
    );
    let ipxe_discover = |mac: &str, xid: u32| {
        let mut m = pxe_request(mac, xid, MessageType::Discover, 7);
        m.options.set(code::USER_CLASS, &b"iPXE"[..]);
        bytes(&m)
    };
    let cases: [(&[&str], &str); 4] = [
        (&[], "http://10.77.0.1:8080/02:77:00:00:00:50/auto.ipxe"),
        (
            &["--dhcp-http-ipxe-script-url", "http://h:7171/auto.ipxe"],
            "http://h:7171/02:77:00:00:00:50/auto.ipxe",
        ),
        (
            &[
                "--dhcp-http-ipxe-script-url",
                "http://h:7171/auto.ipxe",
                "--dhcp-http-ipxe-script-prepend-mac=false",
            ],
            "http://h:7171/auto.ipxe",
        ),
        (
            &[
                "--dhcp-http-ipxe-script-path",
                "/smee/auto.ipxe",
                "--log-format",
                "json",
            ],
            "http://10.77.0.1:8080/smee/02:77:00:00:00:50/auto.ipxe",
        ),
    ];
    for (n, (extra, want)) in cases.iter().enumerate() {
        let mut server = start_server(&lab, &dir, &hardware, extra);
        let xid = 0x5e00 + n as u32;
        let sent = [
            ipxe_discover(CLI_MAC, xid),
            ipxe_discover(OWN_MAC, xid + 0x100),
        ];
        let replies = probe(&lab, 68, BROADCAST_67, 1.5, &sent);
        let file_of = |xid: u32| {
            let (_, m) = replies.iter().find(|(_, m)| m.xid == xid)?;
            let file = m.options.get(code::BOOTFILE_NAME).map(<[u8]>::to_vec);
            let file =
                file.unwrap_or_else(|| m.file.iter().take_while(|b| **b != 0).copied().collect());
            Some(String::from_utf8_lossy(&file).into_owned())
        };
        assert_eq!(
            file_of(xid).as_deref(),
            Some(*want),
            "{extra:?}: {replies:?}"
        );
        // The machine's own URL, whatever the options.
        assert_eq!(
            file_of(xid + 0x100).as_deref(),
            Some("http://boot.example/own.ipxe"),
            "{extra:?}"
        );
        if extra.contains(&"json") {
            server.wait_for("\"file\":\"http://10.77.0.1:8080/smee/", LIMIT);
            let log = server.log(Duration::from_millis(300));
            let script = r#"
import json, sys
offers = [o for o in map(json.loads, sys.stdin) if o.get("verdict") == "OFFER"]
assert offers and all(o["mac"] and o["xid"] and o["file"] for o in offers), offers
print(len(offers))
"#;
            let mut child = std::process::Command::new("python3")
                .args(["-c", script])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all((log.clone() + "\n").as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}\n{log}", text(&out.stderr));
            assert_eq!(text(&out.stdout).trim(), "2", "{log}");
        }
    }
}

/// An OpenCHAMI SMD machine gets its lease from a real client (issue 17): netbootd reads SMD
/// (the stand-in of tests/tools/smd_standin.py, in the server's namespace: the real SMD cannot
/// be installed here) and the config file's subnet settings; a node gets its address, mask,
/// router, DNS, domain, lease time and `nid`-style host name; a MAC SMD does not know gets
/// nothing in reservation mode.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn an_smd_node_gets_its_lease_from_udhcpc() {
    need_root_and("smd dhcp", &["busybox", "ip", "python3", "curl"]);
    let dir = TempDir::new("smd-dhcp");
    let lab = Lab::new(CLI_MAC);
    let _standin = SmdStandin::start(&lab);
    let post = |path: &str, body: &str| smd_post(&lab, path, body);
    smd_node(&lab, "10.77.0.57");
    let config = dir.write(
        "netbootd.toml",
        "[subnets.lab]\ncidr = \"10.77.0.0/16\"\ngateway = \"10.77.0.1\"\ndns = [\"10.77.0.1\"]\ndomain = \"cluster.example\"\nlease-time = 600\n",
    );
    let mut server = smd_netbootd(
        &lab,
        &config,
        &[
            "--ipxe-script-url-template",
            "http://10.77.0.1:8081/boot/v1/bootscript?mac={mac}&xname={xname}",
        ],
    );
    server.wait_for("smd: snapshot in service: 1 machines (1 netboot)", LIMIT);
    let hook = write_hook(&dir);
    let out = lab
        .cli
        .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
    let env = hook_env(&dir);
    assert!(
        out.status.success(),
        "no lease: {}\n{env}",
        text(&out.stderr)
    );
    for want in [
        "ip=10.77.0.57",
        "subnet=255.255.0.0",
        "router=10.77.0.1",
        "dns=10.77.0.1",
        "hostname=nid0007",
        "domain=cluster.example",
        "lease=600",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "udhcpc lacks {want}:\n{env}"
        );
    }
    server.wait_for("ACK 10.77.0.57", LIMIT);
    // iPXE (user class "iPXE") gets the BSS script URL from the template.
    let _ = std::fs::remove_file(dir.path("hook.env"));
    let mut args = udhcpc_args(&hook);
    args.extend([
        "-V",
        "PXEClient:Arch:00007:UNDI:003001",
        "-x",
        "0x5d:0007",
        "-x",
        "0x4d:69505845",
    ]);
    let out = lab.cli.run_for(Duration::from_secs(20), &args);
    let env = hook_env(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = "boot_file=http://10.77.0.1:8081/boot/v1/bootscript?mac=02:77:00:00:00:50&xname=x1000c0s7b0n0";
    assert!(env.lines().any(|l| l == want), "{env}");
    // Fetch on miss: a node added to SMD while netbootd runs (refresh every 30 s, the
    // default) gets its lease at the client's retransmission: its unknown DISCOVER starts a
    // look-up of that MAC.
    const NEW_MAC: &str = "02:77:00:00:00:58";
    post(
        "/hsm/v2/State/Components",
        r#"{"Components":[{"ID":"x1000c0s8b0n0","Type":"Node","State":"Ready","Enabled":true,"NID":8}]}"#,
    );
    post(
        "/hsm/v2/Inventory/EthernetInterfaces",
        &format!(
            r#"{{"MACAddress":"{NEW_MAC}","ComponentID":"x1000c0s8b0n0","IPAddresses":[{{"IPAddress":"10.77.0.58"}}]}}"#
        ),
    );
    lab.set_client_mac(NEW_MAC);
    let _ = std::fs::remove_file(dir.path("hook.env"));
    let started = std::time::Instant::now();
    let out = lab
        .cli
        .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
    let took = started.elapsed();
    let env = hook_env(&dir);
    assert!(
        out.status.success(),
        "no lease: {}\n{env}",
        text(&out.stderr)
    );
    assert!(env.lines().any(|l| l == "ip=10.77.0.58"), "{env}");
    assert!(
        took < Duration::from_secs(5),
        "a new machine waited {took:?}"
    );
    server.wait_for(
        "02:77:00:00:00:58 found by look-up (x1000c0s8b0n0, 10.77.0.58)",
        LIMIT,
    );
    eprintln!("a machine added to SMD got its lease {took:?} after its first DISCOVER");
    // A MAC SMD does not know: silence in reservation mode.
    lab.set_client_mac(UNKNOWN_MAC);
    let out = lab
        .cli
        .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
    assert!(!out.status.success());
    server.wait_for("mac=02:77:00:00:00:99", LIMIT);
}

/// The SMD stand-in in the server's namespace on 127.0.0.1:27779, stopped (a process we
/// started) however the test ends.
struct SmdStandin(std::process::Child);

impl SmdStandin {
    fn start(lab: &Lab) -> SmdStandin {
        let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/smd_standin.py");
        let mut child = lab
            .srv
            .command(&["python3", tool.to_str().unwrap(), "27779"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the SMD stand-in runs");
        common::wait_ready(&mut child);
        SmdStandin(child)
    }
}

impl Drop for SmdStandin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn smd_post(lab: &Lab, path: &str, body: &str) {
    let url = format!("http://127.0.0.1:27779{path}");
    let out = lab
        .srv
        .run(&["curl", "-sS", "-X", "POST", "-d", body, &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// netbootd in the server's namespace on the SMD stand-in, DHCP only (packet socket on s0),
/// with `extra` options.
fn smd_netbootd(lab: &Lab, config: &Path, extra: &[&str]) -> Server {
    let mut cmd = lab.srv.command(&[BIN]);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "--config",
            config.to_str().unwrap(),
            "--backend-smd-url",
            "http://127.0.0.1:27779",
            "--dhcp-iface",
            "s0",
            "--tftp-enabled=false",
            "--syslog-enabled=false",
            "--http-ipxe-binary-enabled=false",
            "--http-ipxe-script-enabled=false",
        ])
        .args(extra);
    Server::spawn(cmd)
}

/// Node 7 with `ip` in the stand-in.
fn smd_node(lab: &Lab, ip: &str) {
    smd_post(
        lab,
        "/hsm/v2/State/Components",
        r#"{"Components":[{"ID":"x1000c0s7b0n0","Type":"Node","State":"Ready","Enabled":true,"NID":7}]}"#,
    );
    smd_post(
        lab,
        "/hsm/v2/Inventory/EthernetInterfaces",
        &format!(
            r#"{{"MACAddress":"{CLI_MAC}","ComponentID":"x1000c0s7b0n0","IPAddresses":[{{"IPAddress":"{ip}"}}]}}"#
        ),
    );
}

/// SMD stops: a real client keeps getting its lease from the cache. SMD comes back with the
/// node's address changed: the client gets the new address after the next refresh.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn smd_down_serves_the_cache_and_a_changed_address_follows_smd() {
    need_root_and("smd changes", &["busybox", "ip", "python3", "curl"]);
    let dir = TempDir::new("smd-changes");
    let lab = Lab::new(CLI_MAC);
    let standin = SmdStandin::start(&lab);
    smd_node(&lab, "10.77.0.57");
    let config = dir.write(
        "netbootd.toml",
        "[subnets.lab]\ncidr = \"10.77.0.0/16\"\ngateway = \"10.77.0.1\"\n",
    );
    let state = dir.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut server = smd_netbootd(
        &lab,
        &config,
        &[
            "--backend-smd-refresh",
            "1s",
            "--backend-smd-timeout",
            "1s",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    server.wait_for("smd: snapshot in service: 1 machines", LIMIT);
    let hook = write_hook(&dir);
    let lease = |dir: &TempDir| {
        let _ = std::fs::remove_file(dir.path("hook.env"));
        let out = lab
            .cli
            .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
        let env = hook_env(dir);
        assert!(
            out.status.success(),
            "no lease: {}\n{env}",
            text(&out.stderr)
        );
        env.lines()
            .find_map(|l| l.strip_prefix("ip="))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(lease(&dir), "10.77.0.57");
    // SMD stops: refreshes fail, the cache answers.
    drop(standin);
    server.wait_for("keeping the snapshot of 1 machines", LIMIT);
    assert_eq!(lease(&dir), "10.77.0.57");
    // SMD comes back with the node's address changed.
    let _standin = SmdStandin::start(&lab);
    smd_node(&lab, "10.77.0.59");
    server.wait_for("smd: recovered after", LIMIT);
    assert_eq!(lease(&dir), "10.77.0.59");
    server.wait_for("ACK 10.77.0.59", LIMIT);
}
