//! HTTP against the netbootd binary on loopback, with curl: scripts by MAC, by source address
//! and by X-Forwarded-For from a trusted proxy; 404s with their reasons; iPXE binaries and
//! assets with HEAD, Range (206/416), Content-Length and Last-Modified; traversal attempts;
//! health and metrics; and a script request that stays fast beside 200 idle connections and a
//! slow large download.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::need_tools;
use common::{curl, http_get as get, start_http_only, text, Server, TempDir};

const LIMIT: Duration = Duration::from_secs(20);

const HARDWARE: &str = r#"
02:77:00:00:00:50:
  ipAddress: 127.0.0.1
  subnetMask: 255.0.0.0
  hostname: loopback-node
  netboot:
    allowPxe: true
    ipxeScriptUrl: http://example.test/by-ip.ipxe
02:77:00:00:00:51:
  ipAddress: 10.9.9.9
  subnetMask: 255.0.0.0
  hostname: profile-node
  netboot:
    allowPxe: true
  boot:
    kernel: boot/vmlinuz
    initrd: [boot/initrd.img]
    cmdline: console=ttyS0
02:77:00:00:00:52:
  ipAddress: 10.9.9.10
  subnetMask: 255.0.0.0
  netboot:
    allowPxe: false
02:77:00:00:00:53:
  ipAddress: 10.9.9.11
  subnetMask: 255.0.0.0
  netboot:
    allowPxe: true
    ipxeScript: |
      echo inline
      boot
02:77:00:00:00:54:
  ipAddress: 10.9.9.12
  subnetMask: 255.0.0.0
  netboot:
    allowPxe: true
"#;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

struct Site {
    dir: TempDir,
    server: Server,
    base: String,
}

fn site(name: &str, extra: &[&str]) -> Site {
    let dir = TempDir::new(name);
    for d in ["ipxe", "assets/boot"] {
        std::fs::create_dir_all(dir.path(d)).unwrap();
    }
    std::fs::write(dir.path("ipxe/ipxe.efi"), pattern(850_528)).unwrap();
    std::fs::write(dir.path("assets/boot/vmlinuz"), pattern(3_000_000)).unwrap();
    std::fs::write(dir.path("assets/boot/initrd.img"), pattern(100)).unwrap();
    std::fs::write(dir.path("secret"), "never served\n").unwrap();
    std::os::unix::fs::symlink("../secret", dir.path("assets/escape")).unwrap();
    let hw = dir.write("hardware.yaml", HARDWARE);
    let (ipxe, assets) = (dir.path("ipxe"), dir.path("assets"));
    let mut args = vec![
        "--backend-file-path",
        hw.to_str().unwrap(),
        "--ipxe-dir",
        ipxe.to_str().unwrap(),
        "--assets-dir",
        assets.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (server, base) = start_http_only(&args);
    Site { dir, server, base }
}

#[test]
fn scripts_by_mac_by_address_and_by_trusted_forwarded_address() {
    need_tools("http scripts", &["curl"]);
    let mut s = site("http-scripts", &["--trusted-proxies", "127.0.0.0/8"]);
    let chain = "#!ipxe\n\nchain --autofree http://example.test/by-ip.ipxe\n";
    for form in [
        "02:77:00:00:00:50",
        "02-77-00-00-00-50",
        "0277.0000.0050",
        "027700000050",
    ] {
        assert_eq!(
            get(&format!("{}/{form}/auto.ipxe", s.base), &[]),
            (200, chain.into())
        );
    }
    // By source address: loopback is machine .50.
    assert_eq!(
        get(&format!("{}/auto.ipxe", s.base), &[]),
        (200, chain.into())
    );
    // From a trusted proxy, the right-most untrusted X-Forwarded-For address is the machine.
    let (code, body) = get(
        &format!("{}/auto.ipxe", s.base),
        &["-H", "X-Forwarded-For: 6.6.6.6, 10.9.9.9"],
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("boot profile (the machine's own) for 02:77:00:00:00:51"),
        "{body}"
    );
    // The profile's asset URLs use the address the client reached us by.
    assert!(
        body.contains(&format!(
            "kernel {}/assets/boot/vmlinuz console=ttyS0 initrd=initrd.img",
            s.base
        )),
        "{body}"
    );
    assert_eq!(
        get(&format!("{}/02:77:00:00:00:53/auto.ipxe", s.base), &[]),
        (200, "#!ipxe\n\necho inline\nboot\n".into())
    );
    for (mac, why) in [
        ("02:77:00:00:00:52", "allowPxe is false"),
        ("02:77:00:00:00:54", "nothing to boot"),
        ("02:77:00:00:00:99", "unknown machine"),
    ] {
        assert_eq!(
            get(&format!("{}/{mac}/auto.ipxe", s.base), &[]).0,
            404,
            "{mac}"
        );
        let (line, _) = s.server.wait_for(&format!("{mac}/auto.ipxe -> 404"), LIMIT);
        assert!(line.contains(why), "{line}");
    }
}

/// GRUB's configuration over HTTP: by the MAC in GRUB's per-MAC name, by the client's
/// address for plain `grub.cfg`; a machine booting an iPXE script gets a 404 with the reason.
#[test]
fn grub_cfg_by_mac_name_and_by_address() {
    need_tools("http grub.cfg", &["curl"]);
    let mut s = site("http-grub", &["--trusted-proxies", "127.0.0.0/8"]);
    let (code, body) = get(
        &format!("{}/grub/grub.cfg-01-02-77-00-00-00-51", s.base),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("echo 'netbootd: booting 02:77:00:00:00:51 (profile-node)'\n")
            && body.contains("\nlinux (tftp,127.0.0.1)/boot/vmlinuz console=ttyS0\n")
            && body.contains("\ninitrd (tftp,127.0.0.1)/boot/initrd.img\nboot\n"),
        "{body}"
    );
    let (code, body) = get(
        &format!("{}/grub/x86_64-efi/grub.cfg", s.base),
        &["-H", "X-Forwarded-For: 10.9.9.9"],
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("for 02:77:00:00:00:51 (profile-node)"),
        "{body}"
    );
    // An address no machine has (proxy modes): GRUB is told to ask again by its MAC.
    let (code, body) = get(
        &format!("{}/grub/grub.cfg", s.base),
        &["-H", "X-Forwarded-For: 10.9.9.99"],
    );
    assert_eq!(code, 200);
    assert!(
        body.ends_with("\nconfigfile $prefix/grub.cfg-01-$net_default_mac\n"),
        "{body}"
    );
    // Loopback is machine .50, whose boot is an iPXE script URL.
    assert_eq!(get(&format!("{}/grub/grub.cfg", s.base), &[]).0, 404);
    let (line, _) = s.server.wait_for("/grub/grub.cfg -> 404", LIMIT);
    assert!(line.contains("GRUB cannot run"), "{line}");
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    need_tools("http forwarded", &["curl"]);
    let s = site("http-untrusted", &[]);
    // No trusted proxies: the header is ignored and loopback (.50) is the machine.
    let (code, body) = get(
        &format!("{}/auto.ipxe", s.base),
        &["-H", "X-Forwarded-For: 10.9.9.9"],
    );
    assert_eq!(code, 200);
    assert!(body.contains("by-ip.ipxe"), "{body}");
}

#[test]
fn files_with_head_range_length_and_traversal_refused() {
    need_tools("http files", &["curl"]);
    let mut s = site("http-files", &[]);
    let vmlinuz = s.dir.path("assets/boot/vmlinuz");
    // A large file: Content-Length (never chunked), Accept-Ranges, Last-Modified.
    let out = curl(&[
        "-D",
        "-",
        "-o",
        s.dir.path("got").to_str().unwrap(),
        &format!("{}/assets/boot/vmlinuz", s.base),
    ]);
    let headers = text(&out.stdout).to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(headers.contains("content-length: 3000000"), "{headers}");
    assert!(headers.contains("accept-ranges: bytes"), "{headers}");
    assert!(headers.contains("last-modified: "), "{headers}");
    assert!(!headers.contains("transfer-encoding"), "{headers}");
    assert_eq!(
        std::fs::read(s.dir.path("got")).unwrap(),
        std::fs::read(&vmlinuz).unwrap()
    );
    // HEAD: the same headers, no body.
    let out = curl(&["-I", &format!("{}/assets/boot/vmlinuz", s.base)]);
    assert!(text(&out.stdout).contains("Content-Length: 3000000"));
    // One range: 206 with Content-Range and exactly those bytes.
    let out = curl(&[
        "-D",
        s.dir.path("h").to_str().unwrap(),
        "-r",
        "1000-1999",
        &format!("{}/assets/boot/vmlinuz", s.base),
    ]);
    let headers = std::fs::read_to_string(s.dir.path("h")).unwrap();
    assert!(headers.starts_with("HTTP/1.1 206"), "{headers}");
    assert!(
        headers.contains("Content-Range: bytes 1000-1999/3000000"),
        "{headers}"
    );
    assert_eq!(out.stdout, std::fs::read(&vmlinuz).unwrap()[1000..2000]);
    // A range past the end: 416.
    let (code, _) = get(
        &format!("{}/assets/boot/vmlinuz", s.base),
        &["-r", "3000000-"],
    );
    assert_eq!(code, 416);
    // iPXE binaries under any prefix, byte-exact.
    for path in ["/ipxe/ipxe.efi", "/ipxe/02:77:00:00:00:50/ipxe.efi"] {
        let out = curl(&[&format!("{}{path}", s.base)]);
        assert_eq!(
            out.stdout,
            std::fs::read(s.dir.path("ipxe/ipxe.efi")).unwrap(),
            "{path}"
        );
    }
    // Traversal, as sent (curl --path-as-is): all 404, nothing of the secret leaks.
    for path in [
        "/assets/../secret",
        "/assets/%2e%2e/secret",
        "/assets/..%2fsecret",
        "/assets/boot/../../secret",
        "/ipxe/../secret",
        "/assets/escape",
        "/assets//etc/passwd",
        "/../../etc/passwd",
    ] {
        let (code, body) = get(&format!("{}{path}", s.base), &["--path-as-is"]);
        assert_eq!(code, 404, "{path}");
        assert!(!body.contains("never served"), "{path}");
    }
    let log = s.server.log(Duration::from_millis(300));
    assert!(log.contains("GET /assets/escape -> 404"), "{log}");
    assert!(log.contains("leads outside the served directory"), "{log}");
}

#[test]
fn health_and_metrics() {
    need_tools("http health", &["curl"]);
    let mut s = site("http-health", &[]);
    let (code, body) = get(&format!("{}/healthcheck", s.base), &[]);
    assert_eq!(code, 200);
    assert!(body.starts_with("{\"git_rev\":"), "{body}");
    assert!(
        body.contains("\"uptime\":") && body.contains("\"machines\":5"),
        "{body}"
    );
    // Smee's field: its probes and dashboards read `goroutines` (here: the thread count).
    let threads = body
        .split("\"goroutines\":")
        .nth(1)
        .and_then(|r| r.split(',').next());
    assert!(
        threads.is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 1)),
        "{body}"
    );
    get(&format!("{}/02:77:00:00:00:50/auto.ipxe", s.base), &[]);
    get(&format!("{}/nope", s.base), &[]);
    let (code, body) = get(&format!("{}/metrics", s.base), &[]);
    assert_eq!(code, 200);
    for want in [
        "netbootd_http_requests_total{route=\"script\",status=\"200\"} 1",
        "netbootd_http_requests_total{route=\"other\",status=\"404\"} 1",
        "netbootd_inventory_machines 5",
        "# TYPE netbootd_uptime_seconds gauge",
        "netbootd_inventory_loads_total{result=\"ok\"} 1",
    ] {
        assert!(body.contains(want), "{want} missing:\n{body}");
    }
    let loaded_at: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("netbootd_inventory_last_load_timestamp_seconds "))
        .expect("last load time")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        loaded_at <= now && now - loaded_at < 600,
        "{loaded_at} vs {now}"
    );
    // A refused reload is counted; the last good load's time stays.
    s.dir
        .write("hardware.yaml", "02:77:00:00:00:50: [not, closed\n");
    s.server.wait_for("refused", LIMIT);
    let (_, body) = get(&format!("{}/metrics", s.base), &[]);
    assert!(
        body.contains("netbootd_inventory_loads_total{result=\"refused\"} 1")
            && body.contains(&format!(
                "netbootd_inventory_last_load_timestamp_seconds {loaded_at}"
            )),
        "{body}"
    );
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    let to: std::net::SocketAddr = to.parse().unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

#[test]
fn scripts_stay_fast_beside_idle_connections_and_a_slow_download() {
    need_tools("http load", &["curl"]);
    let s = site("http-busy", &[]);
    std::fs::write(s.dir.path("assets/big.bin"), pattern(64 << 20)).unwrap();
    let addr = s.base.trim_start_matches("http://").to_string();
    // 200 connections that send nothing, from ten other hosts (127.0.0.2-11; one address may
    // hold 32).
    let idle: Vec<TcpStream> = (0..200)
        .map(|i| connect_from(&format!("127.0.0.{}", 2 + i % 10), &addr))
        .collect();
    // A slow download of a large file (1 MB/s).
    let mut slow = Command::new("curl")
        .args([
            "-s",
            "--limit-rate",
            "1M",
            "-o",
            "/dev/null",
            &format!("{}/assets/big.bin", s.base),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let (code, body) = get(&format!("{}/02:77:00:00:00:50/auto.ipxe", s.base), &[]);
    let took = start.elapsed();
    assert_eq!(code, 200);
    assert!(body.contains("chain --autofree"));
    assert!(took < Duration::from_secs(1), "script took {took:?}");
    let (_, health) = get(&format!("{}/healthcheck", s.base), &[]);
    assert!(health.contains("\"http_downloads\":1"), "{health}");
    let _ = slow.kill();
    let _ = slow.wait();
    drop(idle);
    eprintln!("script request beside 200 idle connections and a slow download: {took:?}");
}

/// Issue 15: the 15 s "no complete request" limit was a per-read timeout, so a client sending
/// one byte every few seconds kept its connection (and a thread) forever, and 600 of them made
/// every script request get 503. Heads are now read in the poll loop with one deadline for the
/// whole head: 600 trickling connections (20 from each of 30 addresses) cost no threads, script
/// requests from another client keep answering 200, and each trickler is closed with 408 once
/// its head is 15 s late.
#[test]
fn trickling_clients_cannot_stop_scripts_and_are_cut_off_at_the_head_deadline() {
    need_tools("http slowloris", &["curl"]);
    let s = site("http-slowloris", &[]);
    let addr = s.base.trim_start_matches("http://").to_string();
    let opened = Instant::now();
    let mut trickling: Vec<TcpStream> = (0..600)
        .map(|i| {
            let mut c = connect_from(&format!("127.0.1.{}", 1 + i % 30), &addr);
            c.write_all(b"GET /02:77:00:00:00:50/auto.ipxe HTTP/1.1\r\nX-Slow: ")
                .unwrap();
            c
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        // One more byte on every trickling connection, then a script request.
        for c in &mut trickling {
            let _ = c.write_all(b"x");
        }
        let start = Instant::now();
        let (code, body) = get(&format!("{}/02:77:00:00:00:50/auto.ipxe", s.base), &[]);
        slowest = slowest.max(start.elapsed());
        assert_eq!(code, 200, "round {round}: {body}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest script {slowest:?}"
    );
    let (_, health) = get(&format!("{}/healthcheck", s.base), &[]);
    let open: usize = health
        .split("\"http_connections\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        (601..=605).contains(&open),
        "600 trickling + this one: {health}"
    );
    // The head deadline: 15 s after the accept, each trickler gets 408 and is closed.
    let mut first = trickling.swap_remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = first.read_to_string(&mut answer);
    let cut = opened.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(
        cut >= Duration::from_secs(14) && cut < Duration::from_secs(19),
        "cut after {cut:?}"
    );
    eprintln!("scripts beside 600 trickling connections: slowest {slowest:?}; tricklers cut after {cut:?}");
}
