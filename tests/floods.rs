//! Floods against the running binary on loopback: what a client can make netbootd write to
//! its log is bounded by the log budget (issue 15: 100,000 junk DHCP frames used to produce
//! 47,567 INFO lines, 6.3 MB, in under a second), while the lines that matter still appear.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{free_port, Server, TempDir};
use netbootd::wire::dhcp::{code, Message, MessageType, BROADCAST_FLAG};

const LIMIT: Duration = Duration::from_secs(15);

/// A DISCOVER from a MAC no inventory knows, relayed through this host.
fn discover(i: u32) -> Vec<u8> {
    let mut m = Message {
        xid: i,
        flags: BROADCAST_FLAG,
        giaddr: "127.0.0.1".parse().unwrap(),
        ..Message::default()
    };
    m.chaddr[..6].copy_from_slice(&[0x02, 0x66, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    m.options
        .set(code::MESSAGE_TYPE, [u8::from(MessageType::Discover)]);
    m.emit(576).bytes
}

#[test]
fn a_dhcp_flood_costs_the_log_at_most_its_budget() {
    let dir = TempDir::new("flood-dhcp");
    let hw = dir.write(
        "hardware.yaml",
        "02:77:00:00:00:50:\n  ipAddress: 127.0.0.50\n  subnetMask: 255.0.0.0\n",
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Server::start(&[
        "--backend-file-path",
        hw.to_str().unwrap(),
        "--public-ip-interface",
        "lo",
        "--dhcp-addr",
        &addr,
        "--tftp-enabled=false",
        "--http-ipxe-binary-enabled=false",
        "--http-ipxe-script-enabled=false",
        "--syslog-enabled=false",
    ]);
    server.wait_for("DHCP reservation on UDP", LIMIT);
    let before = server.log(Duration::from_millis(200)).len();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 20_000;
    let started = Instant::now();
    for i in 0..sent {
        socket.send_to(&discover(i), &addr).unwrap();
        if i % 500 == 499 {
            // Lets the server keep up, so the kernel's queue never overflows.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let burst = started.elapsed();
    let (report, _) = server.wait_for("log budget:", LIMIT);
    let log = server.log(Duration::from_millis(1500));
    let flood_lines = log
        .lines()
        .filter(|l| l.contains("silent: unknown MAC"))
        .count();
    let bytes = log.len() - before;
    let windows = burst.as_secs() as usize + 2;
    println!("{sent} DISCOVERs in {burst:?}: {flood_lines} lines, {bytes} bytes of log; {report}");
    assert!(
        flood_lines <= 100 * windows,
        "{flood_lines} lines in {windows} windows"
    );
    assert!(
        bytes <= 12_288 * windows + 4096 * windows,
        "{bytes} bytes of log"
    );
    assert!(
        report.contains("messages not logged") && report.contains("dhcp "),
        "{report}"
    );
    // Every packet was still decided and counted.
    assert!(server.is_running());
}
