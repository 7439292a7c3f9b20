//! The asset pull-through cache and Smee's ISO, against the netbootd binary on loopback, an
//! upstream that logs every GET (tests/tools/upstream.py, killed and restarted by the tests)
//! and real clients: curl, atftp and xorriso to build an ISO.
//!
//! - 50 curl and 20 atftp clients get a 200 MB file byte-exact through a cold cache while the
//!   upstream sends it once; the first byte reaches a client long before the download ends.
//! - The upstream killed mid-download: clients get an error, nothing is cached, a miss names
//!   the upstream failure (HTTP 502, TFTP ERROR), cached files keep being served, and a retry
//!   after the upstream returns succeeds.
//! - A cache limit evicts the least recently used files; the ISO source is listed and removable.
//! - A mirror's redirect is followed; a redirect loop is a clean 502.
//! - SHA-256: files listed in the upstream's sums file (made by sha256sum) or pinned in a
//!   profile are cached only with that digest; a mismatch reaches no client whole.
//! - `/iso/<mac>/<name>.iso`: the marker replaced by the machine's kernel arguments, checked
//!   byte by byte, whole and by Range.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, need_tools, Server, TempDir};

const TOOLS: &[&str] = &["python3", "curl", "atftp", "cmp", "xorriso"];

/// The upstream helper: its process and the GET lines it printed.
struct Upstream {
    child: Child,
    gets: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Upstream {
    fn start(dir: &Path, port: u16, rate: u64) -> Upstream {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/upstream.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .arg(port.to_string())
            .arg(rate.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let gets = Arc::new(Mutex::new(Vec::new()));
        let seen = gets.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        Upstream { child, gets, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn gets_of(&self, path: &str) -> usize {
        let want = format!("GET {path} ");
        self.gets
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(&want))
            .count()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A file of `mb` MiB that no period of less than a MiB describes.
fn write_big(path: &Path, mb: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block: Vec<u8> = (0..1 << 20)
        .map(|i: usize| (i * 31 + i / 4099) as u8)
        .collect();
    for m in 0..mb {
        block[..8].copy_from_slice(&(m as u64).to_le_bytes());
        f.write_all(&block).unwrap();
    }
}

/// netbootd with HTTP and TFTP on loopback, its cache below `cache`, `args` added; returns it
/// and its HTTP base URL and TFTP port.
fn start(upstream: &str, cache: &Path, args: &[&str]) -> (Server, String, u16) {
    let (http, tftp) = (free_port(), free_port());
    let (http_s, tftp_s) = (http.to_string(), tftp.to_string());
    let mut all = vec![
        "--dhcp-enabled=false",
        "--syslog-enabled=false",
        "--user=root",
        "--http-addr=127.0.0.1",
        "--http-port",
        &http_s,
        "--tftp-addr=127.0.0.1",
        "--tftp-port",
        &tftp_s,
        "--assets-upstream",
        upstream,
        "--assets-cache-dir",
        cache.to_str().unwrap(),
    ];
    // No machines unless the test names its own hardware file.
    let empty = cache.with_extension("hardware.yaml");
    std::fs::write(&empty, "{}\n").unwrap();
    let empty = format!("--backend-file-path={}", empty.display());
    if !args.iter().any(|a| a.starts_with("--backend-file-path")) {
        all.push(&empty);
    }
    all.extend_from_slice(args);
    let mut server = Server::start(&all);
    server.wait_for("TFTP on 127.0.0.1", Duration::from_secs(20));
    (server, format!("http://127.0.0.1:{http}"), tftp)
}

fn atftp(port: u16, name: &str, out: &Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        "atftp",
        "--option",
        "blksize 8192",
        "-g",
        "-r",
        name,
        "-l",
    ])
    .arg(out)
    .args(["127.0.0.1", &port.to_string()])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

/// curl gets `url` whole and byte for byte `file`.
fn curl_matches(url: &str, file: &Path) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --max-time 60 '{url}' | cmp - '{}' && echo same",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(
        common::text(&o.stdout).contains("same"),
        "{url}: {}",
        common::text(&o.stderr)
    );
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn metric(base: &str, name: &str) -> u64 {
    let (_, body) = common::get(&format!("{base}/metrics"));
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

#[test]
#[ignore = "needs python3, curl, atftp and cmp (./tests/run.sh installs them); 200 MB through the cache"]
fn fifty_http_and_twenty_tftp_clients_share_one_upstream_download() {
    need_tools(
        "fifty_http_and_twenty_tftp_clients_share_one_upstream_download",
        TOOLS,
    );
    let dir = TempDir::new("assets-herd");
    let mirror = dir.path("mirror");
    std::fs::create_dir_all(mirror.join("hook")).unwrap();
    let big = mirror.join("hook/big.bin");
    write_big(&big, 200);
    // 100 MB/s: the download takes about 2 s, so every client overlaps it.
    let upstream = Upstream::start(&mirror, free_port(), 100 << 20);
    let cache = dir.path("cache");
    let (mut server, base, tftp) = start(
        &upstream.url(),
        &cache,
        &[
            "--tftp-block-size=8192",
            "--tftp-max-transfers-per-client=32",
            "--http-max-connections-per-client=64",
        ],
    );
    let started = Instant::now();
    let url = format!("{base}/assets/hook/big.bin");
    let big_s = big.to_str().unwrap().to_string();
    let http: Vec<Child> = (0..50)
        .map(|_| {
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "curl -sS --max-time 120 -w '%{{http_code}} %{{time_starttransfer}} %{{time_total}}' -o /dev/fd/3 '{url}' 3>&1 1>&2 | cmp - '{big_s}' && echo same"
                ))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tftp_clients: Vec<(Child, PathBuf)> = (0..20)
        .map(|i| {
            let out = dir.path(&format!("tftp-{i}"));
            (atftp(tftp, "hook/big.bin", &out).spawn().unwrap(), out)
        })
        .collect();
    let mut first_bytes = Vec::new();
    for child in http {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (common::text(&out.stdout), common::text(&out.stderr));
        assert!(stdout.contains("same"), "curl | cmp: {stdout} {stderr}");
        let fields: Vec<&str> = stderr.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"200"), "{stderr}");
        first_bytes.push(fields[1].parse::<f64>().unwrap());
    }
    let http_done = started.elapsed();
    for (child, out) in tftp_clients {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "atftp: {}", common::text(&o.stderr));
        let cmp = Command::new("cmp").arg(&out).arg(&big).status().unwrap();
        assert!(cmp.success(), "{} differs", out.display());
        std::fs::remove_file(&out).unwrap();
    }
    let all_done = started.elapsed();
    assert_eq!(
        upstream.gets_of("/hook/big.bin"),
        1,
        "{:?}",
        upstream.gets.lock().unwrap()
    );
    first_bytes.sort_by(f64::total_cmp);
    // The upstream needs about 2 s for the file; the first client had bytes long before.
    assert!(
        first_bytes[0] < 1.0,
        "first byte after {:.3}s: not streamed while downloading",
        first_bytes[0]
    );
    let cached = cache.join("hook/big.bin");
    assert_eq!(std::fs::metadata(&cached).unwrap().len(), 200 << 20);
    assert!(files_below(&cache.join(".netbootd-partial")).is_empty());
    assert_eq!(
        metric(&base, "netbootd_assets_upstream_bytes_total"),
        200 << 20
    );
    assert_eq!(metric(&base, "netbootd_assets_cache_misses_total"), 1);
    // A warm request is a hit.
    let warm = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --max-time 60 '{url}' | cmp - '{big_s}' && echo same"
        ))
        .output()
        .unwrap();
    assert!(common::text(&warm.stdout).contains("same"));
    assert!(metric(&base, "netbootd_assets_cache_hits_total") >= 1);
    assert_eq!(upstream.gets_of("/hook/big.bin"), 1);
    eprintln!(
        "50 HTTP clients done in {:.1}s, 20 TFTP clients in {:.1}s; first byte after {:.3}s, median {:.3}s",
        http_done.as_secs_f64(),
        all_done.as_secs_f64(),
        first_bytes[0],
        first_bytes[first_bytes.len() / 2]
    );
    server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
}

#[test]
#[ignore = "needs python3, curl, atftp and cmp (./tests/run.sh installs them)"]
fn a_dead_upstream_caches_nothing_and_cached_files_keep_being_served() {
    need_tools(
        "a_dead_upstream_caches_nothing_and_cached_files_keep_being_served",
        TOOLS,
    );
    let dir = TempDir::new("assets-dead");
    let mirror = dir.path("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    write_big(&mirror.join("initrd.img"), 40);
    write_big(&mirror.join("vmlinuz"), 2);
    let port = free_port();
    // 4 MB/s: the 40 MB initrd takes 10 s, time to kill the upstream half way.
    let mut upstream = Upstream::start(&mirror, port, 4 << 20);
    let cache = dir.path("cache");
    let (mut server, base, tftp) = start(&upstream.url(), &cache, &[]);

    // A small file first: cached, then served while the upstream is gone.
    let (code, _) = common::http_get(&format!("{base}/assets/vmlinuz"), &["-o", "/dev/null"]);
    assert_eq!(code, 200);

    let client = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .arg(format!("{base}/assets/initrd.img"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    upstream.kill();
    let out = client.wait_with_output().unwrap();
    let got = common::text(&out.stdout);
    assert!(!out.status.success(), "curl must see the cut: {got}");
    let received: u64 = got.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(received > 0 && received < 40 << 20, "{got}");
    server.wait_for("download failed", Duration::from_secs(40));
    assert!(
        !cache.join("initrd.img").exists(),
        "a cut download was cached"
    );
    assert!(files_below(&cache.join(".netbootd-partial")).is_empty());

    // A miss now: a clean error naming the upstream failure, over HTTP and TFTP.
    let (code, _) = common::get(&format!("{base}/assets/initrd.img"));
    assert_eq!(code, 502);
    let log = server.log(Duration::from_millis(300));
    assert!(log.contains("upstream:"), "{log}");
    let o = atftp(tftp, "initrd.img", &dir.path("t")).output().unwrap();
    let err = common::text(&o.stderr);
    assert!(
        !o.status.success() && err.contains("upstream"),
        "atftp: {err}"
    );

    // Offline: the cached file is still served, by both protocols.
    let (code, _) = common::http_get(&format!("{base}/assets/vmlinuz"), &["-o", "/dev/null"]);
    assert_eq!(code, 200);
    let o = atftp(tftp, "vmlinuz", &dir.path("v")).output().unwrap();
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    assert!(Command::new("cmp")
        .arg(dir.path("v"))
        .arg(mirror.join("vmlinuz"))
        .status()
        .unwrap()
        .success());

    // The upstream is back: after the failure's 5 s memory, a retry succeeds.
    let upstream = Upstream::start(&mirror, port, 0);
    std::thread::sleep(Duration::from_secs(5));
    curl_matches(
        &format!("{base}/assets/initrd.img"),
        &mirror.join("initrd.img"),
    );
    assert_eq!(upstream.gets_of("/initrd.img"), 1);
    server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
}

#[test]
#[ignore = "needs python3 and curl (./tests/run.sh installs them)"]
fn a_full_cache_evicts_the_least_recently_used_file() {
    need_tools("a_full_cache_evicts_the_least_recently_used_file", TOOLS);
    let dir = TempDir::new("assets-evict");
    let mirror = dir.path("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    for name in ["a", "b", "c", "d"] {
        write_big(&mirror.join(name), 1);
    }
    let upstream = Upstream::start(&mirror, free_port(), 0);
    let cache = dir.path("cache");
    let (mut server, base, _) = start(&upstream.url(), &cache, &["--assets-cache-max=3M"]);
    let fetch = |name: &str| {
        let (code, _) = common::http_get(&format!("{base}/assets/{name}"), &["-o", "/dev/null"]);
        assert_eq!(code, 200, "{name}");
    };
    for name in ["a", "b", "c"] {
        fetch(name);
        std::thread::sleep(Duration::from_millis(1100)); // distinct use times (seconds)
    }
    fetch("a"); // a is now the most recently used; b the least
    std::thread::sleep(Duration::from_millis(1100));
    fetch("d");
    server.wait_for("assets b: evicted", Duration::from_secs(10));
    let present: Vec<bool> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| cache.join(n).exists())
        .collect();
    assert_eq!(present, [true, false, true, true]);
    assert_eq!(metric(&base, "netbootd_assets_cache_evictions_total"), 1);
    let on_disk: u64 = files_below(&cache)
        .iter()
        .filter(|p| !p.to_string_lossy().contains(".netbootd-"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 3 << 20, "{on_disk}");
    // b again: fetched again from the upstream.
    fetch("b");
    assert_eq!(upstream.gets_of("/b"), 2);
    server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
}

#[test]
#[ignore = "needs python3 and curl (./tests/run.sh installs them)"]
fn a_mirror_that_redirects_is_followed_and_a_redirect_loop_is_a_clean_502() {
    need_tools(
        "a_mirror_that_redirects_is_followed_and_a_redirect_loop_is_a_clean_502",
        TOOLS,
    );
    let dir = TempDir::new("assets-redirect");
    let mirror = dir.path("mirror");
    std::fs::create_dir_all(mirror.join("d")).unwrap();
    write_big(&mirror.join("d/vmlinuz"), 2);
    let upstream = Upstream::start(&mirror, free_port(), 0);
    let cache = dir.path("cache");
    let (mut server, base, _) = start(&upstream.url(), &cache, &[]);
    // /moved/d/vmlinuz answers 302 to /d/vmlinuz: the file is served and cached under the
    // name asked for.
    curl_matches(
        &format!("{base}/assets/moved/d/vmlinuz"),
        &mirror.join("d/vmlinuz"),
    );
    let gets = upstream.gets.lock().unwrap().clone();
    assert_eq!(
        gets,
        ["GET /moved/d/vmlinuz 302", "GET /d/vmlinuz 200"],
        "{gets:?}"
    );
    server.wait_for(
        "assets moved/d/vmlinuz: fetched 2097152 bytes",
        Duration::from_secs(10),
    );
    assert_eq!(
        std::fs::read(cache.join("moved/d/vmlinuz")).unwrap(),
        std::fs::read(mirror.join("d/vmlinuz")).unwrap()
    );
    // A redirect loop: three redirects followed, then a 502 naming them, nothing cached.
    let (code, _) = common::get(&format!("{base}/assets/loop/d/vmlinuz"));
    assert_eq!(code, 502);
    let log = server.log(Duration::from_millis(300));
    assert!(log.contains("more than 3 redirects"), "{log}");
    assert_eq!(upstream.gets_of("/loop/d/vmlinuz"), 4);
    assert!(!cache.join("loop").exists());
    server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
}

/// The bytes Smee's ISO handler would send: every marker overwritten by the patch, padded
/// with spaces to the marker's length.
fn patched(iso: &[u8], marker: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut out = iso.to_vec();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if &iso[i..i + marker.len()] == marker {
            let mut with = patch.to_vec();
            with.resize(marker.len(), b' ');
            out[i..i + marker.len()].copy_from_slice(&with);
            i += marker.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
#[ignore = "needs python3, curl and xorriso (./tests/run.sh installs them)"]
fn the_iso_carries_each_machines_kernel_arguments_byte_by_byte() {
    need_tools(
        "the_iso_carries_each_machines_kernel_arguments_byte_by_byte",
        TOOLS,
    );
    let dir = TempDir::new("assets-iso");
    let marker = "NETBOOTD-TEST-MARKER-".repeat(48); // 1,008 bytes, about Hook's 1,024
    let tree = dir.path("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!("linux /boot/vmlinuz {marker}\ninitrd /boot/initramfs\n"),
    )
    .unwrap();
    std::fs::write(tree.join("boot/isolinux.cfg"), format!("append {marker}\n")).unwrap();
    let mirror = dir.path("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let iso_path = mirror.join("hook.iso");
    let o = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "HOOK", "-o"])
        .arg(&iso_path)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(o.status.success(), "xorriso: {}", common::text(&o.stderr));
    let iso = std::fs::read(&iso_path).unwrap();

    let hardware = dir.write(
        "hardware.yaml",
        "02:00:00:00:00:0a:\n  ipAddress: 10.1.2.3\n  subnetMask: 255.255.255.0\n  defaultGateway: 10.1.2.1\n  hostname: node-a\n  nameServers: [10.1.2.53]\n  netboot:\n    allowPxe: true\n    facility: sjc1\n",
    );
    let upstream = Upstream::start(&mirror, free_port(), 0);
    let cache = dir.path("cache");
    let iso_url = format!("{}hook.iso", upstream.url());
    let (mut server, base, _) = start(
        &upstream.url(),
        &cache,
        &[
            "--backend-file-path",
            hardware.to_str().unwrap(),
            "--iso-enabled",
            "--iso-url",
            &iso_url,
            "--iso-magic-string",
            &marker,
            "--iso-static-ipam-enabled",
            "--tink-server=10.0.0.9:42113",
            "--dhcp-syslog-ip=10.0.0.8",
            "--extra-kernel-args=extra=1",
        ],
    );
    let patch = "extra=1 facility=sjc1 console=ttyAMA0 console=ttyS0 console=tty0 console=tty1 console=ttyS1  \
hw_addr=02:00:00:00:00:0a syslog_host=10.0.0.8 grpc_authority=10.0.0.9:42113 tinkerbell_tls=false \
worker_id=02:00:00:00:00:0a ipam=02-00-00-00-00-0a::10.1.2.3:255.255.255.0:10.1.2.1:node-a:10.1.2.53::";
    let want = patched(&iso, marker.as_bytes(), patch.as_bytes());
    assert_ne!(want, iso);
    let got = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .arg(format!("{base}/iso/02:00:00:00:00:0a/hook.iso"))
        .output()
        .unwrap();
    assert!(
        got.stdout == want,
        "the patched ISO differs ({} bytes, want {})",
        got.stdout.len(),
        want.len()
    );
    // A range cutting through a marker.
    let at = iso
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap();
    let (from, to) = (at + 100, at + 4000);
    let part = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-r", &format!("{from}-{to}")])
        .arg(format!("{base}/iso/02:00:00:00:00:0a/hook.iso"))
        .output()
        .unwrap();
    assert!(part.stdout == want[from..=to], "the range differs");
    // Unknown machine, no MAC, not an ISO.
    assert_eq!(
        common::get(&format!("{base}/iso/02:00:00:00:00:0b/hook.iso")).0,
        404
    );
    assert_eq!(common::get(&format!("{base}/iso/nomac/hook.iso")).0, 400);
    assert_eq!(
        common::get(&format!("{base}/iso/02:00:00:00:00:0a/hook.img")).0,
        404
    );
    assert_eq!(upstream.gets_of("/hook.iso"), 1);
    server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    // The source ISO is a cached file like the others: listed, and removable.
    let dir_arg = format!("--assets-cache-dir={}", cache.display());
    let o = common::run(&["cache", "ls", &dir_arg], &[]);
    let out = common::text(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.ends_with(" .netbootd-iso/hook.iso"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        line.split_whitespace().next(),
        Some(&*iso.len().to_string())
    );
    let o = common::run(&["cache", "rm", ".netbootd-iso/hook.iso", &dir_arg], &[]);
    assert!(o.status.success() && !cache.join(".netbootd-iso/hook.iso").exists());
}

#[test]
#[ignore = "needs python3 and curl (./tests/run.sh installs them)"]
fn cache_commands_and_revalidation_with_the_upstream() {
    need_tools("cache_commands_and_revalidation_with_the_upstream", TOOLS);
    let dir = TempDir::new("assets-cli");
    let mirror = dir.path("mirror");
    std::fs::create_dir_all(mirror.join("hook")).unwrap();
    write_big(&mirror.join("hook/vmlinuz"), 1);
    write_big(&mirror.join("hook/initramfs"), 3);
    write_big(&mirror.join("hook/vmlinuz-6.1.0"), 1);
    let upstream = Upstream::start(&mirror, free_port(), 0);
    let cache = dir.path("cache");
    let config = dir.write(
        "netbootd.toml",
        &format!(
            "assets-upstream = \"{}\"\nassets-cache-dir = \"{}\"\n\n[profiles.hook]\nkernel = \"hook/vmlinuz\"\ninitrd = [\"hook/initramfs\"]\n",
            upstream.url(),
            cache.display()
        ),
    );
    let config_s = config.to_str().unwrap();
    // prefetch: both files of the profile, byte-exact; again: cached already.
    let o = common::run(&["cache", "prefetch", "hook", "--config", config_s], &[]);
    let out = common::text(&o.stdout);
    assert!(o.status.success(), "{out}{}", common::text(&o.stderr));
    assert!(out.contains("hook/vmlinuz: fetched 1048576 bytes"), "{out}");
    assert!(
        out.contains("hook/initramfs: fetched 3145728 bytes"),
        "{out}"
    );
    for name in ["hook/vmlinuz", "hook/initramfs"] {
        assert_eq!(
            std::fs::read(cache.join(name)).unwrap(),
            std::fs::read(mirror.join(name)).unwrap()
        );
    }
    let o = common::run(&["cache", "prefetch", "hook", "--config", config_s], &[]);
    assert!(common::text(&o.stdout).contains("hook/vmlinuz: cached already"));
    assert_eq!(upstream.gets_of("/hook/vmlinuz"), 1);
    let o = common::run(&["cache", "prefetch", "nope", "--config", config_s], &[]);
    assert_eq!(o.status.code(), Some(1));
    // ls and rm.
    let o = common::run(&["cache", "ls", "--config", config_s], &[]);
    let out = common::text(&o.stdout);
    assert!(
        out.contains("hook/initramfs") && out.contains("2 files, 4194304 bytes"),
        "{out}"
    );
    let o = common::run(
        &["cache", "rm", "hook/initramfs", "--config", config_s],
        &[],
    );
    assert!(o.status.success() && !cache.join("hook/initramfs").exists());
    let o = common::run(&["cache", "rm", "../etc/passwd", "--config", config_s], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        common::run(&["cache", "--config", config_s], &[])
            .status
            .code(),
        Some(2)
    );

    // Revalidation: after the TTL a plain name is asked about again (304, still served), a
    // name carrying a version never is.
    let (mut server, base, _) = start(&upstream.url(), &cache, &["--assets-cache-ttl=1s"]);
    for name in ["hook/vmlinuz", "hook/vmlinuz-6.1.0"] {
        let url = format!("{base}/assets/{name}");
        assert_eq!(common::http_get(&url, &["-o", "/dev/null"]).0, 200);
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(common::http_get(&url, &["-o", "/dev/null"]).0, 200);
    }
    server.wait_for("assets hook/vmlinuz: unchanged", Duration::from_secs(10));
    let gets = upstream.gets.lock().unwrap().clone();
    assert!(
        gets.contains(&"GET /hook/vmlinuz 304".to_string()),
        "{gets:?}"
    );
    assert_eq!(upstream.gets_of("/hook/vmlinuz-6.1.0"), 1, "{gets:?}");
    assert!(metric(&base, "netbootd_assets_revalidations_total") >= 1);
    server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
}

#[test]
#[ignore = "needs python3, curl, atftp and sha256sum (./tests/run.sh installs them)"]
fn digests_listed_by_the_upstream_or_pinned_in_a_profile_gate_what_is_cached() {
    need_tools(
        "digests_listed_by_the_upstream_or_pinned_in_a_profile_gate_what_is_cached",
        &["python3", "curl", "atftp", "sha256sum"],
    );
    let dir = TempDir::new("assets-sha256");
    let mirror = dir.path("mirror");
    std::fs::create_dir_all(mirror.join("images")).unwrap();
    std::fs::create_dir_all(mirror.join("k")).unwrap();
    write_big(&mirror.join("images/linux"), 2);
    write_big(&mirror.join("images/initrd"), 3);
    write_big(&mirror.join("other"), 1);
    write_big(&mirror.join("k/vmlinuz"), 1);
    // The sums file as Debian's mirrors publish it, by the real sha256sum; then the initrd
    // changes under it (a mirror caught half way through a sync).
    let o = Command::new("sh")
        .arg("-c")
        .arg("cd images && sha256sum ./linux ./initrd > SHA256SUMS")
        .current_dir(&mirror)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    write_big(&mirror.join("images/initrd"), 4);
    let sha256sum = |path: &Path| {
        let o = Command::new("sha256sum").arg(path).output().unwrap();
        common::text(&o.stdout)[..64].to_string()
    };
    let pinned = sha256sum(&mirror.join("k/vmlinuz"));

    let upstream = Upstream::start(&mirror, free_port(), 0);
    let cache = dir.path("cache");
    let config = dir.write(
        "netbootd.toml",
        &format!(
            "[[upstream]]\nprefix = \"deb\"\nurl = \"{u}\"\nsha256sums = \"images/SHA256SUMS\"\n\n\
             [profiles.p]\nkernel = \"k/vmlinuz\"\nsha256 = {{ \"k/vmlinuz\" = \"{pinned}\" }}\n",
            u = upstream.url()
        ),
    );
    let config_arg = format!("--config={}", config.display());
    let (mut server, base, tftp) = start(&upstream.url(), &cache, &[&config_arg]);

    // Listed with its digest: served and cached, its digest recorded.
    curl_matches(
        &format!("{base}/assets/deb/images/linux"),
        &mirror.join("images/linux"),
    );
    server.wait_for("assets deb/images/linux: fetched", Duration::from_secs(20));
    let o = common::run(
        &[
            "cache",
            "ls",
            "--assets-upstream",
            &upstream.url(),
            "--assets-cache-dir",
            cache.to_str().unwrap(),
        ],
        &[],
    );
    let ls = common::text(&o.stdout);
    let want = format!(
        "sha256 {}  deb/images/linux",
        sha256sum(&mirror.join("images/linux"))
    );
    assert!(ls.contains(&want), "{ls}");

    // A different digest: the client never gets the whole file (curl: partial), nothing is
    // cached, and the log says why; TFTP gets an error.
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(format!("{base}/assets/deb/images/initrd"))
        .output()
        .unwrap();
    let got: u64 = common::text(&o.stdout).trim().parse().unwrap();
    assert!(!o.status.success() && got < 4 << 20, "curl got {got} bytes");
    server.wait_for("is not the expected", Duration::from_secs(20));
    assert!(!cache.join("deb/images/initrd").exists());
    let o = atftp(tftp, "deb/images/initrd", &dir.path("t"))
        .output()
        .unwrap();
    let err = common::text(&o.stderr);
    assert!(
        !o.status.success() && err.contains("SHA-256"),
        "atftp: {err}"
    );

    // Outside the sums file's directory: refused before any byte, the file never asked for.
    let (code, _) = common::get(&format!("{base}/assets/deb/other"));
    assert_eq!(code, 502);
    assert_eq!(upstream.gets_of("/other"), 0);

    // Pinned in the profile: the right digest is cached.
    let (code, _) = common::http_get(&format!("{base}/assets/k/vmlinuz"), &["-o", "/dev/null"]);
    assert_eq!(code, 200);
    server.wait_for("assets k/vmlinuz: fetched", Duration::from_secs(20));
    assert_eq!(sha256sum(&cache.join("k/vmlinuz")), pinned);
    assert_eq!(upstream.gets_of("/images/SHA256SUMS"), 2);
    server.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
}
