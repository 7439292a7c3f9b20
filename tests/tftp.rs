//! TFTP against the netbootd binary.
//!
//! On loopback (no root needed): a hand-driven client checks negotiation, ERROR 5 to a
//! stranger, the transfer cap with held-open transfers, prompt errors, netascii.
//! In network namespaces (root): real clients (tftp-hpa, atftp, curl, busybox tftp) fetch
//! byte-exact files, atftp negotiates windowsize, a 100 MB file rolls block numbers over,
//! 20 transfers survive 10 % loss (netem), 300 run at once, and traversal attempts fail.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{need_root_and, Lab, SRV_IP};
use common::{free_port, need_tools, text, Server, TempDir, BIN};
use netbootd::wire::tftp::{emit_ack, emit_error, emit_rrq, ErrorCode, Packet};

const LIMIT: Duration = Duration::from_secs(20);
const CLI_IP: &str = "10.77.0.2";

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A tree to serve: `ipxe/` with an iPXE-like binary, `assets/` with files and a symlink that
/// leads out, and a `secret` beside them that must never be served.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = TempDir::new(name);
        for d in ["ipxe", "assets/boot"] {
            std::fs::create_dir_all(dir.path(d)).unwrap();
        }
        std::fs::write(dir.path("ipxe/ipxe.efi"), pattern(900_000, 1)).unwrap();
        std::fs::write(dir.path("ipxe/undionly.kpxe"), pattern(74_213, 2)).unwrap();
        std::fs::write(dir.path("assets/boot/small.bin"), pattern(200_000, 3)).unwrap();
        std::fs::write(dir.path("assets/readme.txt"), "line one\nline two\r\n").unwrap();
        std::fs::write(dir.path("secret"), "never served\n").unwrap();
        std::os::unix::fs::symlink("../secret", dir.path("assets/escape")).unwrap();
        std::fs::write(dir.path("hardware.yaml"), "{}\n").unwrap();
        Tree { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    fn args(&self) -> Vec<String> {
        [
            "--backend-file-path",
            self.path("hardware.yaml").to_str().unwrap(),
            "--ipxe-dir",
            self.path("ipxe").to_str().unwrap(),
            "--assets-dir",
            self.path("assets").to_str().unwrap(),
            "--dhcp-enabled=false",
            "--syslog-enabled=false",
            "--http-ipxe-binary-enabled=false",
            "--http-ipxe-script-enabled=false",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Loopback: a hand-driven client.

fn loopback_server(tree: &Tree, extra: &[&str]) -> (Server, SocketAddr) {
    let port = free_port();
    let mut args = tree.args();
    args.extend(
        ["--tftp-addr", "127.0.0.1", "--tftp-port", &port.to_string()]
            .iter()
            .map(|s| s.to_string()),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(&args);
    server.wait_for("TFTP on 127.0.0.1", LIMIT);
    (server, format!("127.0.0.1:{port}").parse().unwrap())
}

struct Client {
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl Client {
    fn new() -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        Client {
            socket,
            buf: vec![0; 70_000],
        }
    }

    fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.socket.send_to(bytes, to).unwrap();
    }

    /// The next packet, with its sender; panics after 3 s. A signal that interrupts the wait
    /// (EINTR) does not count as no reply.
    fn recv(&mut self) -> (Packet<'_>, SocketAddr) {
        let (len, from) = loop {
            match self.socket.recv_from(&mut self.buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.expect("a reply"),
            }
        };
        (Packet::parse(&self.buf[..len]).expect("parses"), from)
    }

    /// Reads a whole file after the first reply, ACKing each block (lock-step).
    fn fetch(&mut self, server: SocketAddr, name: &str, options: &[(&str, &str)]) -> Vec<u8> {
        self.send(&emit_rrq(name, "octet", options), server);
        let mut data = Vec::new();
        let mut blksize = 512;
        loop {
            let (packet, from) = self.recv();
            match packet {
                Packet::Oack(pairs) => {
                    for (k, v) in pairs {
                        if k == "blksize" {
                            blksize = v.parse().unwrap();
                        }
                    }
                    self.send(&emit_ack(0), from);
                }
                Packet::Data { block, data: d } => {
                    let last = d.len() < blksize;
                    data.extend_from_slice(d);
                    self.send(&emit_ack(block), from);
                    if last {
                        return data;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// SIGTERM while a transfer runs: new requests are refused, the running transfer finishes
/// byte-exact, and netbootd exits 0.
#[test]
fn sigterm_lets_a_running_transfer_finish_and_exits_0() {
    let tree = Tree::new("tftp-sigterm");
    let (mut server, addr) = loopback_server(&tree, &[]);
    let mut c = Client::new();
    c.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
    let mut data = Vec::new();
    let mut signalled = false;
    loop {
        let (packet, from) = c.recv();
        let Packet::Data { block, data: d } = packet else {
            panic!("unexpected {packet:?}");
        };
        let last = d.len() < 512;
        data.extend_from_slice(d);
        if block == 10 && !signalled {
            server.signal(nix::sys::signal::Signal::SIGTERM);
            server.wait_for("waiting up to 10s for 1 TFTP transfers", LIMIT);
            // A new request now is refused.
            let mut late = Client::new();
            late.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
            match late.recv().0 {
                Packet::Error { message, .. } => assert_eq!(message, "server shutting down"),
                other => panic!("unexpected {other:?}"),
            }
            signalled = true;
        }
        c.send(&emit_ack(block), from);
        if last {
            break;
        }
    }
    assert!(signalled);
    assert_eq!(data, std::fs::read(tree.path("ipxe/ipxe.efi")).unwrap());
    assert_eq!(server.wait_exit(LIMIT), 0);
    let log = server.log(Duration::from_millis(200));
    assert!(log.contains(": complete, 900000 bytes"), "{log}");
    assert!(log.contains("stopped after"), "{log}");
}

/// SIGTERM while a client has stopped answering: the grace period (10 s) runs out, the
/// transfer is ended with an ERROR to the client, and netbootd still exits 0.
#[test]
fn sigterm_ends_a_stalled_transfer_after_the_grace_period() {
    let tree = Tree::new("tftp-sigterm-stalled");
    let (mut server, addr) = loopback_server(&tree, &[]);
    let mut c = Client::new();
    c.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
    let tid = match c.recv() {
        (Packet::Data { block: 1, .. }, tid) => tid,
        other => panic!("{other:?}"),
    };
    // One ACK (a client that never answers at all is given up on after 6 s), then none: the
    // worker retransmits DATA 2, backing off to 5 s between (about 26 s before it gives up).
    c.send(&emit_ack(1), tid);
    assert!(matches!(c.recv().0, Packet::Data { block: 2, .. }));
    c.socket
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let signalled = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_for("waiting up to 10s for 1 TFTP transfers", LIMIT);
    let message = loop {
        assert!(signalled.elapsed() < LIMIT, "no ERROR within {LIMIT:?}");
        match c.recv().0 {
            Packet::Data { block: 2, .. } => continue,
            Packet::Error { message, .. } => break message.to_string(),
            other => panic!("unexpected {other:?}"),
        }
    };
    let ended_after = signalled.elapsed();
    assert_eq!(server.wait_exit(LIMIT), 0);
    let log = server.log(Duration::from_millis(200));
    assert!(
        log.contains("ending 1 TFTP transfers still running after 10s"),
        "{log}"
    );
    assert!(
        message.contains("shutting down"),
        "ERROR says why: {message:?}"
    );
    assert!(
        ended_after >= Duration::from_secs(10) && ended_after < Duration::from_secs(14),
        "ended {ended_after:?} after SIGTERM"
    );
}

#[test]
fn negotiation_is_capped_and_echoed() {
    let tree = Tree::new("tftp-negotiate");
    let (_server, addr) = loopback_server(
        &tree,
        &["--tftp-block-size", "1468", "--tftp-window-size", "16"],
    );
    let mut c = Client::new();
    c.send(
        &emit_rrq(
            "ipxe.efi",
            "octet",
            &[
                ("tsize", "0"),
                ("blksize", "9000"),
                ("windowsize", "64"),
                ("timeout", "3"),
                ("x-unknown", "1"),
            ],
        ),
        addr,
    );
    let (packet, from) = c.recv();
    assert_ne!(from, addr, "a transfer answers from its own port");
    assert_eq!(
        packet,
        Packet::Oack(vec![
            ("blksize".into(), "1468".into()),
            ("tsize".into(), "900000".into()),
            ("timeout".into(), "3".into()),
            ("windowsize".into(), "16".into()),
        ])
    );
    c.send(&emit_error(ErrorCode::OptionRefused, "tsize only"), from);

    // No options: no OACK, DATA 1 of 512 bytes straight away.
    let mut c = Client::new();
    c.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
    match c.recv().0 {
        Packet::Data { block: 1, data } => assert_eq!(data.len(), 512),
        other => panic!("expected DATA 1, got {other:?}"),
    }
}

#[test]
fn a_stranger_gets_error_5_and_the_transfer_goes_on() {
    let tree = Tree::new("tftp-stranger");
    let (mut server, addr) = loopback_server(&tree, &[]);
    let mut owner = Client::new();
    owner.send(&emit_rrq("boot/small.bin", "octet", &[]), addr);
    let (first, tid) = match owner.recv() {
        (Packet::Data { block: 1, data }, from) => (data.to_vec(), from),
        other => panic!("expected DATA 1, got {other:?}"),
    };
    let mut stranger = Client::new();
    stranger.send(&emit_ack(1), tid);
    match stranger.recv() {
        (
            Packet::Error {
                code: ErrorCode::UnknownTransferId,
                ..
            },
            from,
        ) => assert_eq!(from, tid),
        other => panic!("stranger expected ERROR 5, got {other:?}"),
    }
    // The owner continues from block 1 as if nothing happened.
    owner.send(&emit_ack(1), tid);
    let mut data = first;
    loop {
        let (packet, from) = owner.recv();
        assert_eq!(from, tid);
        let Packet::Data { block, data: d } = packet else {
            panic!("expected DATA, got {packet:?}")
        };
        data.extend_from_slice(d);
        let last = d.len() < 512;
        owner.send(&emit_ack(block), tid);
        if last {
            break;
        }
    }
    assert_eq!(
        data,
        std::fs::read(tree.path("assets/boot/small.bin")).unwrap()
    );
    server.wait_for("RRQ \"boot/small.bin\"", LIMIT);
    assert!(server
        .seen
        .last()
        .unwrap()
        .contains("complete, 200000 bytes"));
}

#[test]
fn errors_come_at_once_and_name_the_reason() {
    let tree = Tree::new("tftp-errors");
    let (mut server, addr) = loopback_server(&tree, &[]);
    let mut c = Client::new();
    let cases: &[(&[u8], ErrorCode)] = &[
        (
            &emit_rrq("autoexec.ipxe", "octet", &[]),
            ErrorCode::FileNotFound,
        ),
        (
            &emit_rrq("../secret", "octet", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            &emit_rrq("escape", "octet", &[]),
            ErrorCode::AccessViolation,
        ),
        (&emit_rrq("boot", "octet", &[]), ErrorCode::FileNotFound),
        (
            &emit_rrq("ipxe.efi", "mail", &[]),
            ErrorCode::IllegalOperation,
        ),
        (b"\x00\x02up.bin\x00octet\x00", ErrorCode::AccessViolation),
        (b"\x00\x01no-terminator", ErrorCode::IllegalOperation),
    ];
    for (request, expected) in cases {
        let start = Instant::now();
        c.send(request, addr);
        match c.recv().0 {
            Packet::Error { code, .. } => assert_eq!(code, *expected, "{request:?}"),
            other => panic!("{request:?}: expected ERROR, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_millis(500), "slow error");
    }
    let log = server.log(Duration::from_millis(200));
    assert!(log.contains("RRQ \"autoexec.ipxe\": refused, error 1 (file not found)"));
    assert!(log.contains("RRQ \"../secret\": refused, error 2 (outside the served directories)"));
    assert!(log.contains("RRQ \"escape\": refused, error 2"));
    assert!(log.contains("WRQ \"up.bin\": refused, error 2 (read-only server)"));
}

#[test]
fn names_with_a_mac_or_a_traceparent_find_the_ipxe_binary() {
    let tree = Tree::new("tftp-names");
    let (_server, addr) = loopback_server(&tree, &[]);
    let want = std::fs::read(tree.path("ipxe/undionly.kpxe")).unwrap();
    for name in [
        "undionly.kpxe",
        "/undionly.kpxe",
        "/02:77:00:00:00:50/undionly.kpxe",
        "undionly.kpxe-00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ] {
        assert_eq!(Client::new().fetch(addr, name, &[]), want, "{name}");
    }
}

#[test]
fn netascii_converts_line_ends() {
    let tree = Tree::new("tftp-netascii");
    let (_server, addr) = loopback_server(&tree, &[]);
    let mut c = Client::new();
    c.send(&emit_rrq("readme.txt", "netascii", &[]), addr);
    match c.recv().0 {
        Packet::Data { block: 1, data } => {
            assert_eq!(data, b"line one\r\nline two\r\0\r\n")
        }
        other => panic!("expected DATA 1, got {other:?}"),
    }
}

fn threads_of(server: &Server) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn over_the_cap_a_request_gets_an_error_not_a_thread() {
    let tree = Tree::new("tftp-cap");
    let (mut server, addr) = loopback_server(&tree, &["--tftp-max-transfers", "3"]);
    let idle = threads_of(&server);
    // Three transfers held open: each got DATA 1 and is waiting for its ACK.
    let mut held: Vec<(Client, SocketAddr)> = (0..3)
        .map(|_| {
            let mut c = Client::new();
            c.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
            let (packet, tid) = c.recv();
            assert!(matches!(packet, Packet::Data { block: 1, .. }));
            (c, tid)
        })
        .collect();
    assert_eq!(threads_of(&server), idle + 3);
    let mut extra = Client::new();
    extra.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
    match extra.recv().0 {
        Packet::Error {
            code: ErrorCode::NotDefined,
            message,
        } => assert!(message.contains("busy"), "{message}"),
        other => panic!("expected a busy ERROR, got {other:?}"),
    }
    assert_eq!(
        threads_of(&server),
        idle + 3,
        "no thread for the refused request"
    );
    server.wait_for("refused, error 0 (server busy (3 transfers)", LIMIT);
    // A client that ends its transfer frees its place and its thread.
    let (first, tid) = held.remove(0);
    first.send(&emit_error(ErrorCode::DiskFull, "gave up"), tid);
    server.wait_for("client ended it (error 3: \"gave up\")", LIMIT);
    extra.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
    assert!(matches!(extra.recv().0, Packet::Data { block: 1, .. }));
    assert_eq!(threads_of(&server), idle + 3);
}

/// Issue 15: 128 read requests that never ACK held all 128 slots for 38 s, so one host sending
/// ~3.4 requests a second kept TFTP busy for everyone. Now one address holds at most its share
/// (4 by default), and a first packet never acknowledged gives its slot back after 6 s.
#[test]
fn silent_clients_hold_only_their_share_and_only_for_6_s() {
    let tree = Tree::new("tftp-hog");
    let (mut server, addr) = loopback_server(&tree, &[]);
    let start = Instant::now();
    let mut served = 0;
    let mut refused = 0;
    let hogs: Vec<Client> = (0..10)
        .map(|_| {
            let mut c = Client::new();
            c.send(&emit_rrq("ipxe.efi", "octet", &[]), addr);
            match c.recv().0 {
                Packet::Data { block: 1, .. } => served += 1,
                Packet::Error {
                    code: ErrorCode::NotDefined,
                    message,
                } => {
                    assert!(message.contains("from this address"), "{message}");
                    refused += 1;
                }
                other => panic!("{other:?}"),
            }
            c
        })
        .collect();
    assert_eq!((served, refused), (4, 6));
    // None of the four ever ACKs: each gives up 6 s after its first DATA.
    for _ in 0..4 {
        server.wait_for("timed out, 0 bytes", Duration::from_secs(10));
    }
    let freed = start.elapsed();
    assert!(
        freed >= Duration::from_secs(5) && freed < Duration::from_secs(9),
        "slots freed after {freed:?}"
    );
    drop(hogs);
    let mut next = Client::new();
    let data = next.fetch(addr, "ipxe.efi", &[]);
    assert_eq!(data, std::fs::read(tree.path("ipxe/ipxe.efi")).unwrap());
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Issue 15: after a burst of TFTP transfers the glibc build kept the heap its worker threads
/// had used (26 MB after a flood, from 3 MB). With two allocator arenas and the free memory
/// handed back when the last transfer ends, 128 transfers at once leave under 4 MiB behind
/// (this debug build: about 2.8 MiB, where it kept 5.2 MiB before; the musl build returns to its
/// idle 1.1 MiB by itself).
#[test]
fn memory_goes_back_after_a_burst_of_transfers() {
    need_tools("tftp burst", &["curl"]);
    let tree = Tree::new("tftp-burst");
    let (mut server, addr) = loopback_server(&tree, &["--tftp-max-transfers-per-client", "200"]);
    let pid = server.child.id();
    let url = format!("tftp://{addr}/ipxe.efi");
    // Idle after one transfer: the logger, the first thread and the file's pages are set up.
    let warm = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &url])
        .status()
        .unwrap();
    assert!(warm.success());
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid);
    for _ in 0..2 {
        let clients: Vec<std::process::Child> = (0..128)
            .map(|_| {
                Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "--tftp-blksize", "1468", &url])
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in clients {
            assert!(c.wait().unwrap().success());
        }
    }
    server.wait_for("complete, 900000 bytes", LIMIT);
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid);
    let log = server.log(Duration::from_millis(500));
    assert_eq!(log.matches("complete, 900000 bytes").count(), 257);
    assert!(
        after.saturating_sub(idle) < 4096,
        "RSS {idle} KiB idle, {after} KiB after 256 transfers"
    );
    eprintln!("RSS {idle} KiB idle, {after} KiB after 256 transfers");
}

// ---------------------------------------------------------------------------------------------
// Network namespaces: real clients.

/// netbootd serving TFTP on 10.77.0.1 in the lab's server namespace.
fn lab_server(lab: &Lab, tree: &Tree, extra: &[&str]) -> Server {
    let mut args = tree.args();
    args.extend(["--tftp-addr", SRV_IP].iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = lab.srv.command(&[BIN]);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(&args);
    let mut server = Server::spawn(cmd);
    server.wait_for("TFTP on 10.77.0.1:69", LIMIT);
    server
}

fn lab(name: &str) -> (Lab, Tree) {
    let lab = Lab::new("02:77:00:00:00:50");
    lab.cli_address(&format!("{CLI_IP}/16"));
    (lab, Tree::new(name))
}

const CLIENTS: &[&str] = &["tftp", "atftp", "curl", "busybox", "nft", "cmp"];

/// The command line of one real client fetching `name` into `out`.
fn client_args(client: &str, name: &str, out: &Path, blksize: &str) -> Vec<String> {
    let out = out.to_str().unwrap().to_string();
    let blk = format!("blksize {blksize}");
    let url = format!("tftp://{SRV_IP}/{name}");
    let v: Vec<&str> = match client {
        "tftp-hpa" => vec!["tftp", "-m", "binary", SRV_IP, "-c", "get", name, &out],
        "atftp" => vec![
            "atftp", "--option", &blk, "--option", "tsize 0", "-g", "-r", name, "-l", &out, SRV_IP,
        ],
        "curl" => vec!["curl", "-sS", "--tftp-blksize", blksize, "-o", &out, &url],
        "busybox" => vec![
            "busybox", "tftp", "-g", "-b", blksize, "-r", name, "-l", &out, SRV_IP,
        ],
        other => panic!("no client {other}"),
    };
    v.into_iter().map(String::from).collect()
}

fn spawn_client(lab: &Lab, args: &[String]) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.cli
        .command(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client starts")
}

/// Waits for a client (killed after `limit`); true when it exited 0.
fn finish(mut child: Child, limit: Duration) -> (bool, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            if let Some(mut o) = child.stdout.take() {
                let _ = std::io::Read::read_to_string(&mut o, &mut err);
            }
            return (status.success(), err);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (false, format!("killed after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .args(["-s"])
        .arg(a)
        .arg(b)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn four_real_clients_fetch_an_ipxe_binary_byte_exact() {
    need_root_and("four_real_clients_fetch_an_ipxe_binary_byte_exact", CLIENTS);
    let (lab, tree) = lab("tftp-clients");
    // Twenty clients share one address here: lift the per-address cap (default 4).
    let mut server = lab_server(
        &lab,
        &tree,
        &[
            "--tftp-block-size",
            "1468",
            "--tftp-max-transfers-per-client",
            "64",
        ],
    );
    let out = TempDir::new("tftp-clients-out");
    let want = tree.path("ipxe/ipxe.efi");
    for (client, blksize) in [
        ("tftp-hpa", "512"),
        ("atftp", "1468"),
        ("curl", "1468"),
        ("busybox", "1468"),
    ] {
        let file = out.path(client);
        let args = client_args(client, "ipxe.efi", &file, blksize);
        let (ok, err) = finish(spawn_client(&lab, &args), LIMIT);
        assert!(ok, "{client}: {err}");
        assert!(same_file(&file, &want), "{client}: download differs");
        let (line, _) = server.wait_for("RRQ \"ipxe.efi\"", LIMIT);
        assert!(line.contains("complete, 900000 bytes"), "{line}");
        assert!(
            line.contains(&format!("blksize {blksize}")),
            "{client}: {line}"
        );
    }
    // A missing file fails, a write is refused.
    let args = client_args("curl", "does-not-exist.bin", &out.path("neg"), "1468");
    let (ok, _) = finish(spawn_client(&lab, &args), LIMIT);
    assert!(!ok, "missing file did not fail");
    let put = lab.cli.run_for(
        LIMIT,
        &[
            "tftp",
            SRV_IP,
            "-c",
            "put",
            want.to_str().unwrap(),
            "up.bin",
        ],
    );
    let put_output = text(&put.stdout) + &text(&put.stderr);
    assert!(put_output.contains("read-only"), "WRQ: {put_output}");
    let log = server.log(Duration::from_millis(300));
    assert!(log.contains("RRQ \"does-not-exist.bin\": refused, error 1"));
    assert!(log.contains("WRQ \"up.bin\": refused, error 2"));
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn atftp_gets_windowsize_8_acknowledged() {
    need_root_and("atftp_gets_windowsize_8_acknowledged", CLIENTS);
    let (lab, tree) = lab("tftp-window");
    // Twenty clients share one address here: lift the per-address cap (default 4).
    let mut server = lab_server(
        &lab,
        &tree,
        &[
            "--tftp-block-size",
            "1468",
            "--tftp-max-transfers-per-client",
            "64",
        ],
    );
    let out = TempDir::new("tftp-window-out");
    let file = out.path("ipxe.efi");
    let o = lab.cli.run_for(
        LIMIT,
        &[
            "atftp",
            "--trace",
            "--option",
            "blksize 1468",
            "--option",
            "windowsize 8",
            "--option",
            "tsize 0",
            "-g",
            "-r",
            "ipxe.efi",
            "-l",
            file.to_str().unwrap(),
            SRV_IP,
        ],
    );
    let trace = text(&o.stdout) + &text(&o.stderr);
    assert!(o.status.success(), "atftp: {trace}");
    assert!(
        trace.contains("received OACK") && trace.contains("windowsize: 8"),
        "no windowsize in the OACK: {}",
        trace.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(same_file(&file, &tree.path("ipxe/ipxe.efi")));
    let (line, _) = server.wait_for("RRQ \"ipxe.efi\"", LIMIT);
    assert!(
        line.contains("complete") && line.contains("windowsize 8"),
        "{line}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn a_100_mb_file_at_512_byte_blocks_rolls_over() {
    need_root_and("a_100_mb_file_at_512_byte_blocks_rolls_over", CLIENTS);
    let (lab, tree) = lab("tftp-rollover");
    let big = tree.path("assets/big.bin");
    let block = pattern(1 << 20, 7);
    let mut f = std::fs::File::create(&big).unwrap();
    for i in 0..100u8 {
        let mut b = block.clone();
        b[0] = i; // every MiB differs, so a block served twice or out of place shows
        std::io::Write::write_all(&mut f, &b).unwrap();
    }
    drop(f);
    let mut server = lab_server(&lab, &tree, &[]);
    let out = TempDir::new("tftp-rollover-out");
    let file = out.path("big.bin");
    let args = client_args("tftp-hpa", "big.bin", &file, "512");
    let (ok, err) = finish(spawn_client(&lab, &args), Duration::from_secs(240));
    assert!(ok, "tftp-hpa: {err}");
    assert!(same_file(&file, &big), "100 MB download differs");
    let (line, _) = server.wait_for("RRQ \"big.bin\"", LIMIT);
    assert!(line.contains("complete, 104857600 bytes"), "{line}");
    assert!(line.contains("blksize 512"), "{line}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn twenty_transfers_complete_through_10_percent_loss() {
    need_root_and("twenty_transfers_complete_through_10_percent_loss", CLIENTS);
    let (lab, tree) = lab("tftp-loss");
    // 10 % of UDP datagrams lost each way, on arrival at either end of the veth. (The issue
    // asks for `tc ... netem loss 10%`; this kernel has no sch_netem, so nftables' numgen does
    // the dropping.)
    for ns in [&lab.srv, &lab.cli] {
        ns.run(&[
            "nft",
            "add table inet loss; \
             add chain inet loss in { type filter hook input priority 0; }; \
             add rule inet loss in meta l4proto udp numgen random mod 10 0 drop",
        ]);
    }
    // Twenty clients share one address here: lift the per-address cap (default 4).
    let mut server = lab_server(
        &lab,
        &tree,
        &[
            "--tftp-block-size",
            "1468",
            "--tftp-max-transfers-per-client",
            "64",
        ],
    );
    let out = TempDir::new("tftp-loss-out");
    let want = tree.path("assets/boot/small.bin");
    // atftp 0.8's client is left out here: its trace shows it aborting when an OACK comes
    // again after its ACK 0 was lost ("unexpected OACK"), and stalling when the one extra ACK
    // it sends for a repeated DATA block is lost. Those are client bugs that no server can fix.
    let kinds = ["tftp-hpa", "curl", "busybox"];
    let children: Vec<(String, PathBuf, Child)> = (0..20)
        .map(|i| {
            let client = kinds[i % kinds.len()];
            let file = out.path(&format!("{client}-{i}"));
            let args = client_args(client, "boot/small.bin", &file, "1468");
            (client.to_string(), file.clone(), spawn_client(&lab, &args))
        })
        .collect();
    for (client, file, child) in children {
        let (ok, err) = finish(child, Duration::from_secs(120));
        if !ok {
            let log = server.log(Duration::from_millis(500));
            panic!("{client} {} through loss: {err}\n{log}", file.display());
        }
        assert!(same_file(&file, &want), "{client}: download differs");
    }
    let log = server.log(Duration::from_millis(500));
    let retransmissions: u64 = log
        .lines()
        .filter(|l| l.contains("RRQ \"boot/small.bin\"") && l.contains("complete"))
        .filter_map(|l| {
            l.split(", ")
                .find_map(|p| p.strip_suffix(" retransmissions"))
        })
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    assert!(
        retransmissions > 0,
        "10 % loss caused no retransmission?\n{log}"
    );
}

/// Runs `script` in the client namespace (bounded to 180 s) while sampling the server's thread
/// count; returns the peak and the script's output.
fn run_counting_threads(lab: &Lab, server: &Server, script: &str) -> (usize, String) {
    let mut child = lab
        .cli
        .command(&["sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(180) {
        peak = peak.max(threads_of(server));
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, output) = finish(child, Duration::from_secs(1));
    (peak, output)
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn three_hundred_concurrent_transfers_and_a_bounded_thread_count() {
    need_root_and(
        "three_hundred_concurrent_transfers_and_a_bounded_thread_count",
        CLIENTS,
    );
    let (lab, tree) = lab("tftp-many");
    // 300 clients share one address here: lift the per-address cap (default 4).
    let per_client = ["--tftp-max-transfers-per-client", "400"];
    let mut server = lab_server(
        &lab,
        &tree,
        &["--tftp-max-transfers", "400", per_client[0], per_client[1]],
    );
    let out = TempDir::new("tftp-many-out");
    let want = tree.path("assets/boot/small.bin");
    // One shell starts 300 curl processes at once and waits for them all.
    let script = format!(
        "for i in $(seq 1 300); do curl -sS --retry 0 -o {dir}/f$i tftp://{SRV_IP}/boot/small.bin & done; wait",
        dir = out.0.display()
    );
    let start = Instant::now();
    let (peak, err) = run_counting_threads(&lab, &server, &script);
    assert!(err.trim().is_empty(), "curl errors: {err}");
    for i in 1..=300 {
        assert!(
            same_file(&out.path(&format!("f{i}")), &want),
            "f{i} differs"
        );
    }
    let log = server.log(Duration::from_millis(500));
    let complete = log
        .lines()
        .filter(|l| l.contains("complete, 200000 bytes"))
        .count();
    assert_eq!(complete, 300);
    assert!(peak <= 401, "thread count {peak} above the cap");
    eprintln!(
        "300 transfers in {:?}, peak {peak} threads",
        start.elapsed()
    );

    // Over a cap of 10: some of 60 simultaneous requests are refused, threads stay bounded.
    drop(server);
    let mut server = lab_server(
        &lab,
        &tree,
        &["--tftp-max-transfers", "10", per_client[0], per_client[1]],
    );
    let idle = threads_of(&server);
    let script = format!(
        "for i in $(seq 1 60); do tftp -m binary {SRV_IP} -c get big.bin {dir}/g$i >/dev/null 2>&1 & done; wait",
        dir = out.0.display()
    );
    std::fs::write(tree.path("assets/big.bin"), pattern(4 << 20, 9)).unwrap();
    let (peak, _) = run_counting_threads(&lab, &server, &script);
    let log = server.log(Duration::from_millis(500));
    let refused = log
        .matches("refused, error 0 (server busy (10 transfers)")
        .count();
    let done = log.matches("RRQ \"big.bin\" (").count();
    assert!(refused > 0, "no request was refused over the cap\n{log}");
    assert_eq!(refused + done, 60, "{log}");
    assert!(
        peak <= idle + 10,
        "peak {peak} threads, idle {idle}, cap 10"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn traversal_attempts_are_refused() {
    need_root_and("traversal_attempts_are_refused", CLIENTS);
    let (lab, tree) = lab("tftp-traversal");
    let mut server = lab_server(&lab, &tree, &[]);
    let out = TempDir::new("tftp-traversal-out");
    // tftp-hpa sends the name exactly as given.
    for (i, name) in [
        "../secret",
        "boot/../../secret",
        "..\\secret",
        "/etc/passwd",
        "..%2fsecret",
        "escape",
        tree.path("secret").to_str().unwrap(),
    ]
    .iter()
    .enumerate()
    {
        let file = out.path(&format!("t{i}"));
        let o = lab.cli.run_for(
            LIMIT,
            &[
                "tftp",
                "-m",
                "binary",
                SRV_IP,
                "-c",
                "get",
                name,
                file.to_str().unwrap(),
            ],
        );
        let said = text(&o.stdout) + &text(&o.stderr);
        assert!(said.contains("Error code"), "{name}: {said}");
        let got = std::fs::read(&file).unwrap_or_default();
        assert!(got.is_empty(), "{name}: got {} bytes", got.len());
    }
    let log = server.log(Duration::from_millis(300));
    assert_eq!(log.matches("refused, error").count(), 7, "{log}");
    assert!(!log.contains("complete"), "{log}");
}

#[test]
fn single_port_mode_answers_from_the_listening_port() {
    let tree = Tree::new("tftp-single-port");
    let (mut server, addr) = loopback_server(&tree, &["--tftp-single-port"]);
    let want = std::fs::read(tree.path("ipxe/ipxe.efi")).unwrap();
    let mut c = Client::new();
    c.send(&emit_rrq("ipxe.efi", "octet", &[("blksize", "1024")]), addr);
    let (packet, from) = c.recv();
    assert_eq!(
        from, addr,
        "single-port replies come from the listening port"
    );
    assert_eq!(packet, Packet::Oack(vec![("blksize".into(), "512".into())]));
    // Two transfers at once through the one port, each byte-exact.
    let other = std::thread::spawn(move || Client::new().fetch(addr, "ipxe.efi", &[]));
    c.send(&emit_ack(0), addr);
    let mut data = Vec::new();
    loop {
        let (packet, from) = c.recv();
        assert_eq!(from, addr);
        let Packet::Data { block, data: d } = packet else {
            panic!("expected DATA, got {packet:?}")
        };
        let last = d.len() < 512;
        data.extend_from_slice(d);
        c.send(&emit_ack(block), addr);
        if last {
            break;
        }
    }
    assert_eq!(data, want);
    assert_eq!(other.join().unwrap(), want);
    server.wait_for("complete, 900000 bytes", LIMIT);
    server.wait_for("complete, 900000 bytes", LIMIT);
}
