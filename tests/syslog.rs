//! The syslog receiver against the netbootd binary on loopback: util-linux `logger` sends
//! RFC 3164 and RFC 5424 (with structured data) messages, a known sender is named by MAC and
//! hostname, control characters are escaped, garbage datagrams are logged as unparsed without
//! stopping the receiver, and a flood is capped by the log budget with nothing lost from the
//! counters.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::need_tools;
use common::{free_port, text, Server, TempDir};

const LIMIT: Duration = Duration::from_secs(20);

/// 127.0.0.1 is a known machine; other loopback addresses are strangers.
const HARDWARE: &str = r#"
02:77:00:00:00:60:
  ipAddress: 127.0.0.1
  subnetMask: 255.0.0.0
  hostname: installer-node
  netboot:
    allowPxe: true
"#;

struct Receiver {
    _dir: TempDir,
    server: Server,
    syslog_port: u16,
    http_port: u16,
}

fn receiver(name: &str) -> Receiver {
    receiver_with(name, &[])
}

fn receiver_with(name: &str, extra: &[&str]) -> Receiver {
    let dir = TempDir::new(name);
    let hw = dir.write("hardware.yaml", HARDWARE);
    let syslog_port = free_port();
    let http_port = free_port();
    let (syslog, http) = (syslog_port.to_string(), http_port.to_string());
    let mut args = vec![
        "--backend-file-path",
        hw.to_str().unwrap(),
        "--dhcp-enabled=false",
        "--tftp-enabled=false",
        "--http-addr",
        "127.0.0.1",
        "--http-port",
        &http,
        "--syslog-addr",
        "127.0.0.1",
        "--syslog-port",
        &syslog,
    ];
    args.extend_from_slice(extra);
    let mut server = Server::start(&args);
    server.wait_for("syslog receiver on UDP 127.0.0.1", LIMIT);
    Receiver {
        _dir: dir,
        server,
        syslog_port,
        http_port,
    }
}

impl Receiver {
    fn logger(&self, args: &[&str]) {
        let port = self.syslog_port.to_string();
        let out = Command::new("logger")
            .args(["--udp", "--server", "127.0.0.1", "--port", &port])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("logger runs");
        assert!(out.status.success(), "logger: {}", text(&out.stderr));
    }

    /// Sends raw datagrams from a loopback address the inventory does not know.
    fn send_from_stranger(&self, datagrams: &[&[u8]]) {
        let socket = UdpSocket::bind("127.0.0.2:0").unwrap();
        for d in datagrams {
            socket.send_to(d, ("127.0.0.1", self.syslog_port)).unwrap();
        }
    }

    /// The value of one series in /metrics (0 when absent).
    fn metric(&self, series: &str) -> u64 {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.http_port))
            .output()
            .expect("curl runs");
        text(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }
}

#[test]
fn logger_messages_in_both_formats_name_the_machine() {
    need_tools("syslog logger", &["logger", "curl"]);
    let mut r = receiver("syslog-logger");
    r.logger(&[
        "--rfc3164",
        "-i",
        "-t",
        "anaconda",
        "-p",
        "daemon.warning",
        "disk sda partitioned",
    ]);
    let (line, _) = r.server.wait_for("disk sda partitioned", LIMIT);
    assert!(
        line.contains("syslog 127.0.0.1 mac=02:77:00:00:00:60 machine=installer-node daemon.warning rfc3164 app=anaconda pid="),
        "{line}"
    );
    assert!(line.ends_with(": \"disk sda partitioned\""), "{line}");

    r.logger(&[
        "--rfc5424",
        "-t",
        "curtin",
        "-p",
        "local3.err",
        "--msgid",
        "STAGE",
        "--sd-id",
        "install@32473",
        "--sd-param",
        "phase=\"partitioning\"",
        "--sd-param",
        "disk=\"/dev/sda\"",
        "stage failed",
    ]);
    let (line, _) = r.server.wait_for("stage failed", LIMIT);
    for part in [
        "mac=02:77:00:00:00:60 machine=installer-node local3.err rfc5424 app=curtin",
        " msgid=STAGE ",
        "[install@32473 phase=\\\"partitioning\\\" disk=\\\"/dev/sda\\\"]",
        ": \"stage failed\"",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }

    // A stranger, and a message with control characters that must not reach the terminal raw.
    r.send_from_stranger(&[b"<30>Nov 21 07:49:10 pxe-host dhclient[77]: bound\x1b[2J\r\nspoof"]);
    let (line, _) = r.server.wait_for("pxe-host", LIMIT);
    assert_eq!(
        line.split_once("] ").unwrap().1,
        "syslog 127.0.0.2 mac=- machine=- daemon.info rfc3164 app=dhclient pid=77 msgid=- host=pxe-host: \"bound\\x1b[2J\\r\\nspoof\""
    );
    assert!(!line.contains('\x1b'));
    assert_eq!(
        r.metric("netbootd_syslog_messages_total{format=\"rfc5424\",severity=\"err\"}"),
        1
    );
    assert_eq!(
        r.metric("netbootd_syslog_messages_total{format=\"rfc3164\",severity=\"info\"}"),
        1
    );
}

#[test]
fn garbage_is_logged_as_unparsed_and_never_stops_the_receiver() {
    need_tools("syslog garbage", &["curl"]);
    // Every datagram's line is checked here: a budget that lets the whole burst through.
    let budget = [
        "--log-budget-lines",
        "10000",
        "--log-budget-bytes",
        "10000000",
    ];
    let mut r = receiver_with("syslog-garbage", &budget);
    let huge = vec![b'<'; 65_000];
    let mut junk: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n".to_vec(),
        b"no priority".to_vec(),
        b"<999>out of range".to_vec(),
        b"<13>1 - - - - - [unterminated".to_vec(),
        b"<13>1 not-a-time h a - - - x".to_vec(),
        huge,
    ];
    // Pseudo-random binary, some of it starting with a valid priority.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..200 {
        let mut d: Vec<u8> = if i % 2 == 0 {
            b"<13>".to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..(i % 97) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            d.push(state as u8);
        }
        junk.push(d);
    }
    let refs: Vec<&[u8]> = junk.iter().map(Vec::as_slice).collect();
    r.send_from_stranger(&refs);
    r.send_from_stranger(&[b"<14>after-the-garbage: still here"]);
    let (line, _) = r.server.wait_for("still here", LIMIT);
    assert!(line.contains("app=after-the-garbage"), "{line}");
    let log = r.server.log(Duration::from_millis(300));
    for expected in [
        "unparsed (empty datagram), 0 bytes",
        "unparsed (no valid <PRI> in front), 11 bytes: \"no priority\"",
        "unparsed (no valid <PRI> in front), 17 bytes",
        "unparsed (RFC 5424 structured data is malformed)",
        "unparsed (RFC 5424 header: bad timestamp)",
        "unparsed (no valid <PRI> in front), 65000 bytes",
        "...(+62952 bytes)",
    ] {
        assert!(log.contains(expected), "{expected:?} not logged:\n{log}");
    }
    assert!(r.server.is_running());
    // Every datagram is counted: parsed or not.
    let parsed: u64 = ["rfc3164", "rfc5424"]
        .iter()
        .flat_map(|f| {
            [
                "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
            ]
            .map(|s| format!("netbootd_syslog_messages_total{{format=\"{f}\",severity=\"{s}\"}}"))
        })
        .map(|series| r.metric(&series))
        .sum();
    let unparsed = r.metric("netbootd_syslog_unparsed_total");
    assert_eq!(parsed + unparsed, junk.len() as u64 + 1);
    assert!(unparsed >= 100, "unparsed {unparsed}");
}

#[test]
fn a_flood_is_capped_in_the_log_but_fully_counted() {
    need_tools("syslog flood", &["curl"]);
    let mut r = receiver("syslog-flood");
    let socket = UdpSocket::bind("127.0.0.2:0").unwrap();
    let sent = 1500;
    let started = Instant::now();
    for i in 0..sent {
        let d = format!("<14>flood: message {i}");
        socket
            .send_to(d.as_bytes(), ("127.0.0.1", r.syslog_port))
            .unwrap();
        if i % 100 == 99 {
            // Lets the receiver keep up, so the kernel's queue never overflows.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let burst = started.elapsed();
    let (report, _) = r.server.wait_for("messages not logged", LIMIT);
    let log = r.server.log(Duration::from_millis(500));
    let logged = log.lines().filter(|l| l.contains("app=flood")).count() as u64;
    let counted = r.metric("netbootd_syslog_messages_total{format=\"rfc3164\",severity=\"info\"}");
    let suppressed = r.metric("netbootd_syslog_suppressed_total");
    println!("sent {sent} in {burst:?}: counted {counted}, logged {logged}, suppressed {suppressed}; {report}");
    assert_eq!(counted, sent, "every datagram reaches the counters");
    assert_eq!(logged + suppressed, counted);
    assert!(suppressed > 0);
    // One window of 1000 lines a second, plus one more if the burst crossed a boundary.
    let windows = burst.as_secs() + 2;
    assert!(logged <= 1000 * windows, "logged {logged}");
    assert!(r.server.is_running());
}
