//! The OpenCHAMI SMD source against the running binary on loopback (issue 17). The real SMD
//! cannot be installed here (its Go module is not served: see the issue note), so
//! `tests/tools/smd_standin.py` serves the two collections netbootd reads, takes new entries
//! the way SMD does, and misbehaves on request: a 503 problem body, an empty list, a truncated
//! body, a 30 s stall, a 23 MB body, an HTML page. The snapshot must survive each, a machine
//! added to SMD must be served after the next refresh, and a restart while SMD is down must
//! serve the last good snapshot from the state directory.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, get, http_get, need_tools, run, start_http_only, text, Server, TempDir};

const LIMIT: Duration = Duration::from_secs(20);

struct Standin {
    child: Child,
    base: String,
    /// curl's arguments for reaching it (CA and client certificate over HTTPS).
    curl: Vec<String>,
}

/// The test certificates (tests/fixtures/tls/make.sh says how they were made).
fn tls_file(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

impl Standin {
    fn start() -> Standin {
        Standin::start_with(&[])
    }

    /// With `env` for the stand-in: SMD_TLS_CERT/KEY serve HTTPS, SMD_TLS_CLIENT_CA requires
    /// a client certificate.
    fn start_with(env: &[(&str, String)]) -> Standin {
        let port = free_port();
        let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/smd_standin.py");
        let mut child = Command::new("python3")
            .args([tool, &port.to_string()])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        common::wait_ready(&mut child);
        let tls = env.iter().any(|(k, _)| *k == "SMD_TLS_CERT");
        let client = env.iter().any(|(k, _)| *k == "SMD_TLS_CLIENT_CA");
        let mut curl = Vec::new();
        if tls {
            curl.extend(["--cacert".to_string(), tls_file("ca.pem")]);
        }
        if client {
            curl.extend(["--cert".to_string(), tls_file("client.pem")]);
            curl.extend(["--key".to_string(), tls_file("client.key")]);
        }
        Standin {
            child,
            // The test certificate names localhost only.
            base: if tls {
                format!("https://localhost:{port}")
            } else {
                format!("http://127.0.0.1:{port}")
            },
            curl,
        }
    }

    fn post(&self, path: &str, body: &str) {
        let url = format!("{}{path}", self.base);
        let mut extra = vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ];
        extra.extend(self.curl.iter().map(String::as_str));
        assert_eq!(http_get(&url, &extra).0, 201);
    }

    /// A node with a NID and its BMC, as OpenCHAMI's tooling loads them.
    fn add_node(&self, n: u8) {
        self.post(
            "/hsm/v2/State/Components",
            &format!(
                r#"{{"Components":[{{"ID":"x1000c0s{n}b0n0","Type":"Node","State":"Ready","Enabled":true,"NID":{n},"Arch":"X86"}},{{"ID":"x1000c0s{n}b0","Type":"NodeBMC","State":"Ready","Enabled":true}}]}}"#
            ),
        );
        self.post(
            "/hsm/v2/Inventory/EthernetInterfaces",
            &format!(r#"{{"MACAddress":"02:5D:00:00:00:{n:02X}","ComponentID":"x1000c0s{n}b0n0","IPAddresses":[{{"IPAddress":"10.100.0.{n}"}}]}}"#),
        );
        self.post(
            "/hsm/v2/Inventory/EthernetInterfaces",
            &format!(r#"{{"MACAddress":"02:5b:00:00:00:{n:02x}","ComponentID":"x1000c0s{n}b0","IPAddresses":[{{"IPAddress":"10.254.0.{n}"}}]}}"#),
        );
    }

    fn mode(&self, mode: &str) {
        assert_eq!(get(&format!("{}/control?mode={mode}", self.base)).0, 200);
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONFIG: &str = "osie-url = \"http://10.100.0.254:8080/hook\"\n\
[subnets.compute]\ncidr = \"10.100.0.0/16\"\ngateway = \"10.100.0.254\"\ndns = [\"10.100.0.254\"]\ndomain = \"cluster.example\"\nlease-time = 3600\n\
[subnets.bmc]\ncidr = \"10.254.0.0/16\"\n";

/// netbootd on the SMD at `smd` (refresh 1 s), HTTP on a free loopback port, with `extra`.
fn netbootd_with(dir: &TempDir, smd: &str, extra: &[&str]) -> (Server, String) {
    let config = dir.write("netbootd.toml", CONFIG);
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--backend-smd-url",
        smd,
        "--backend-smd-refresh",
        "1s",
        "--public-ip-interface",
        "lo",
    ];
    args.extend_from_slice(extra);
    start_http_only(&args)
}

/// With a state directory of the test's own (kept across restarts) and a 1 s timeout.
fn netbootd(dir: &TempDir, smd: &str) -> (Server, String) {
    let state = dir.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let state = state.to_str().unwrap().to_string();
    netbootd_with(
        dir,
        smd,
        &["--backend-smd-timeout", "1s", "--state-dir", &state],
    )
}

/// The note each kind of machine gets from /<mac>/auto.ipxe: a node boots (Hook), a BMC gets
/// no boot information, a MAC SMD does not know is unknown.
fn script_status(base: &str, mac: &str) -> u16 {
    get(&format!("{base}/{mac}/auto.ipxe")).0
}

#[test]
fn smd_snapshots_load_refresh_and_survive_bad_answers_and_restarts() {
    need_tools("smd source", &["python3", "curl"]);
    let smd = Standin::start();
    smd.add_node(1);
    smd.add_node(2);
    let dir = TempDir::new("smd-source");
    // `check` fetches SMD once and says what it holds.
    let config = dir.write("netbootd.toml", CONFIG);
    let out = run(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--backend-smd-url",
            &smd.base,
            "--public-ip-interface",
            "lo",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(": 4 machines (2 netboot), 0 entries left out"),
        "{}",
        text(&out.stdout)
    );
    let (mut server, base) = netbootd(&dir, &smd.base);
    server.wait_for("smd: snapshot in service: 4 machines (2 netboot)", LIMIT);
    assert_eq!(script_status(&base, "02:5d:00:00:00:01"), 200);
    let (_, script) = get(&format!("{base}/02:5d:00:00:00:01/auto.ipxe"));
    assert!(script.contains("worker_id=02:5d:00:00:00:01"), "{script}");
    assert_eq!(
        script_status(&base, "02:5b:00:00:00:01"),
        404,
        "a BMC boots nothing"
    );
    assert_eq!(script_status(&base, "02:5d:00:00:00:03"), 404);
    server.wait_for("mac=02:5b:00:00:00:01 allowPxe is false", LIMIT);
    server.wait_for("mac=02:5d:00:00:00:03 unknown machine", LIMIT);
    let health = get(&format!("{base}/healthcheck")).1;
    assert!(
        health.contains("\"source\":{\"name\":\"smd\",\"state\":\"ok\""),
        "{health}"
    );

    // A machine added to SMD is served after the next refresh (1 s here).
    smd.add_node(3);
    let started = Instant::now();
    server.wait_for("smd: snapshot in service: 6 machines", LIMIT);
    assert_eq!(script_status(&base, "02:5d:00:00:00:03"), 200);
    eprintln!(
        "a machine added to SMD was served {:?} later",
        started.elapsed()
    );

    // Every bad answer keeps the snapshot; each is logged once, when it starts.
    for (mode, says) in [
        (
            "503",
            "HTTP 503: /hsm/v2/Inventory/EthernetInterfaces: HSM's database is unhealthy",
        ),
        (
            "empty",
            "an empty list where the snapshot in service has 6 machines",
        ),
        (
            "truncated",
            "/hsm/v2/Inventory/EthernetInterfaces: connection closed after",
        ),
        ("html", "content type \"text/html\" is not JSON"),
        (
            "stall",
            "/hsm/v2/Inventory/EthernetInterfaces: timed out waiting for",
        ),
        ("huge", "more than 100000 entries"),
    ] {
        smd.mode(mode);
        let (line, _) = server.wait_for(says, LIMIT);
        assert!(
            line.contains("[ERROR]") && line.contains("keeping the snapshot of 6 machines"),
            "{line}"
        );
        assert_eq!(script_status(&base, "02:5d:00:00:00:02"), 200, "{mode}");
    }
    let health = get(&format!("{base}/healthcheck")).1;
    assert!(health.contains("\"state\":\"stale\""), "{health}");
    smd.mode("ok");
    server.wait_for("smd: recovered after", LIMIT);
    let metrics = get(&format!("{base}/metrics")).1;
    for series in [
        "netbootd_source_machines{source=\"smd\"} 6",
        "netbootd_source_state{source=\"smd\",state=\"ok\"} 1",
        "netbootd_source_snapshot_age_seconds{source=\"smd\"} ",
        "netbootd_source_refreshes_total{source=\"smd\",result=\"kept\"} ",
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
    // A repeated failure is not logged again at every refresh.
    let repeated = server
        .seen
        .iter()
        .filter(|l| l.contains("HSM's database is unhealthy"))
        .count();
    assert_eq!(repeated, 1, "{:?}", server.seen);
    assert_eq!(server.stop(nix::sys::signal::Signal::SIGTERM, LIMIT), 0);

    // SMD goes away; netbootd restarts and serves the last good snapshot from disk.
    drop(smd);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = run(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--backend-smd-url",
            &dead,
            "--public-ip-interface",
            "lo",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("failed: SMD: /hsm/v2/Inventory/EthernetInterfaces: cannot connect"),
        "{}",
        text(&out.stderr)
    );
    let (mut server, base) = netbootd(&dir, &dead);
    let (line, _) = server.wait_for("serving the last good snapshot", LIMIT);
    assert!(line.contains("(6 machines)"), "{line}");
    assert_eq!(script_status(&base, "02:5d:00:00:00:03"), 200);
    server.wait_for("refresh failed, keeping the snapshot of 6 machines", LIMIT);
    let health = get(&format!("{base}/healthcheck")).1;
    assert!(health.contains("\"state\":\"stale\""), "{health}");
}

/// No snapshot at all (SMD down, nothing on disk): a MAC not found is not "unknown", so
/// auto-proxy gives it nothing rather than the static script; with --backend-smd-max-stale an
/// old snapshot stops being answered.
#[test]
fn without_a_snapshot_no_machine_is_unknown_and_old_snapshots_expire() {
    need_tools("smd pending", &["python3", "curl"]);
    let dir = TempDir::new("smd-pending");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (mut server, base) = netbootd_with(&dir, &dead, &["--dhcp-mode", "auto-proxy"]);
    server.wait_for("refresh failed, keeping the snapshot of 0 machines", LIMIT);
    let (status, _) = get(&format!("{base}/02:5d:00:00:00:09/auto.ipxe"));
    assert_eq!(status, 404);
    server.wait_for("the remote inventory has no usable snapshot", LIMIT);
    let health = get(&format!("{base}/healthcheck")).1;
    assert!(health.contains("\"state\":\"starting\""), "{health}");
    drop(server);

    let smd = Standin::start();
    smd.add_node(1);
    let (mut server, base) = netbootd_with(&dir, &smd.base, &["--backend-smd-max-stale", "2s"]);
    server.wait_for("smd: snapshot in service: 2 machines", LIMIT);
    smd.mode("503");
    server.wait_for("keeping the snapshot of 2 machines", LIMIT);
    server.wait_for("older than --backend-smd-max-stale", LIMIT);
    assert_eq!(script_status(&base, "02:5d:00:00:00:01"), 404);
    smd.mode("ok");
    server.wait_for("smd: snapshot in service: 2 machines", LIMIT);
    assert_eq!(script_status(&base, "02:5d:00:00:00:01"), 200);
}

#[test]
fn smd_settings_are_checked_at_start() {
    let dir = TempDir::new("smd-settings");
    let config = dir.write("netbootd.toml", CONFIG);
    let no_subnets = dir.write("bare.toml", "log-level = \"info\"\n");
    for (args, says) in [
        (
            vec![
                "--config",
                no_subnets.to_str().unwrap(),
                "--backend-smd-url",
                "http://smd:27779",
            ],
            "needs [subnets.NAME] tables",
        ),
        (
            vec![
                "--config",
                config.to_str().unwrap(),
                "--backend-smd-url",
                "http://smd:27779",
                "--backend-smd-ca-cert",
                "/ca.pem",
            ],
            "apply to an https:// URL only",
        ),
        (
            vec![
                "--config",
                config.to_str().unwrap(),
                "--backend-smd-url",
                "https://smd:27779",
                "--backend-smd-client-cert",
                "/client.pem",
            ],
            "go together",
        ),
        (
            vec![
                "--config",
                config.to_str().unwrap(),
                "--backend-smd-url",
                "http://smd:27779",
                "--backend-noop-enabled",
                "--dhcp-mode",
                "auto-proxy",
            ],
            "a remote source combines with the hardware file only",
        ),
        (
            vec![
                "--config",
                config.to_str().unwrap(),
                "--backend-smd-url",
                "http://smd:27779",
                "--backend-smd-refresh",
                "0s",
            ],
            "outside 1s..3600s",
        ),
    ] {
        let mut args = args.clone();
        args.insert(0, "check");
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// `check` against the stand-in with `extra` options: its exit status and what it printed.
fn check_smd(dir: &TempDir, url: &str, extra: &[&str]) -> (bool, String) {
    let config = dir.write("netbootd.toml", CONFIG);
    let mut args = vec![
        "check",
        "--config",
        config.to_str().unwrap(),
        "--backend-smd-url",
        url,
        "--backend-smd-timeout",
        "5s",
        "--public-ip-interface",
        "lo",
    ];
    args.extend_from_slice(extra);
    let out = run(&args, &[]);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn smd_over_https_verifies_the_server_and_presents_a_client_certificate() {
    need_tools("smd source over TLS", &["python3", "curl"]);
    let smd = Standin::start_with(&[
        ("SMD_TLS_CERT", tls_file("server.pem")),
        ("SMD_TLS_KEY", tls_file("server.key")),
        ("SMD_TLS_CLIENT_CA", tls_file("client-ca.pem")),
    ]);
    smd.add_node(1);
    let dir = TempDir::new("smd-tls");
    let (ca, client_ca) = (tls_file("ca.pem"), tls_file("client-ca.pem"));
    let (cert, key) = (tls_file("client.pem"), tls_file("client.key"));
    let with_client = [
        "--backend-smd-ca-cert",
        ca.as_str(),
        "--backend-smd-client-cert",
        cert.as_str(),
        "--backend-smd-client-key",
        key.as_str(),
    ];
    let base = smd.base.clone();
    // Trusted server, client certificate presented.
    let (ok, said) = check_smd(&dir, &base, &with_client);
    assert!(ok && said.contains(": 2 machines (1 netboot)"), "{said}");
    // A server whose CA is not trusted: the system's bundle, or the wrong CA file.
    let (ok, said) = check_smd(&dir, &base, &with_client[2..]);
    assert!(!ok && said.contains("UnknownIssuer"), "{said}");
    let wrong_ca = ["--backend-smd-ca-cert", client_ca.as_str()];
    let (ok, said) = check_smd(&dir, &base, &wrong_ca);
    assert!(!ok && said.contains("UnknownIssuer"), "{said}");
    // The server requires a client certificate: without one the exchange fails.
    let (ok, said) = check_smd(&dir, &base, &with_client[..2]);
    assert!(!ok && said.contains("TLS"), "{said}");
    // An address the certificate does not name.
    let by_address = base.replace("localhost", "127.0.0.1");
    let (ok, said) = check_smd(&dir, &by_address, &with_client);
    assert!(!ok && said.contains("not valid for name"), "{said}");
    // Files that are missing or hold no certificate are named at the start.
    let (ok, said) = check_smd(&dir, &base, &["--backend-smd-ca-cert", "/nonexistent.pem"]);
    assert!(!ok && said.contains("/nonexistent.pem"), "{said}");
    let (ok, said) = check_smd(&dir, &base, &["--backend-smd-ca-cert", key.as_str()]);
    assert!(!ok && said.contains("no PEM certificate"), "{said}");

    // The service refreshes over TLS, and a machine added later is served.
    let mut args = with_client.to_vec();
    args.extend(["--backend-smd-timeout", "5s"]);
    let (mut server, http) = netbootd_with(&dir, &base, &args);
    server.wait_for("smd: snapshot in service: 2 machines (1 netboot)", LIMIT);
    assert_eq!(script_status(&http, "02:5d:00:00:00:01"), 200);
    smd.add_node(2);
    server.wait_for("smd: snapshot in service: 4 machines (2 netboot)", LIMIT);
    assert_eq!(script_status(&http, "02:5d:00:00:00:02"), 200);
}

/// The hardware file and SMD together: the file's entry wins a MAC both hold (an error in
/// `check` and in the log), each source's other machines are served, and a file change goes
/// into service over the SMD snapshot.
#[test]
fn the_hardware_file_is_served_over_smd() {
    need_tools("smd and file", &["python3", "curl"]);
    let smd = Standin::start();
    smd.add_node(1);
    smd.add_node(2);
    let dir = TempDir::new("smd-and-file");
    let file_text = |extra: bool| {
        let mut text = String::from(
            "02:5d:00:00:00:01:\n  ipAddress: 10.100.0.101\n  subnetMask: 255.255.0.0\n  \
             netboot:\n    allowPxe: true\n    ipxeScript: \"#!ipxe\\necho from-the-file\\n\"\n",
        );
        if extra {
            text.push_str(
                "02:77:00:00:00:09:\n  ipAddress: 10.100.9.9\n  subnetMask: 255.255.0.0\n  \
                 netboot:\n    allowPxe: true\n    ipxeScript: \"#!ipxe\\necho file-only\\n\"\n",
            );
        }
        text
    };
    let hw = dir.write("hardware.yaml", &file_text(true));
    let (ok, said) = check_smd(
        &dir,
        &smd.base,
        &["--backend-file-path", hw.to_str().unwrap()],
    );
    assert!(!ok, "{said}");
    assert!(said.contains("ok: 2 machines (2 netboot) in "), "{said}");
    assert!(
        said.contains(": 4 machines (2 netboot), 0 entries left out"),
        "{said}"
    );
    assert!(
        said.contains("error: 02:5d:00:00:00:01: in both the hardware file and the remote source; the file entry is served"),
        "{said}"
    );
    assert!(said.contains("failed: 1 SMD machines clash"), "{said}");

    let (mut server, base) = netbootd_with(
        &dir,
        &smd.base,
        &["--backend-file-path", hw.to_str().unwrap()],
    );
    // The clash is logged as the snapshot goes into service, before the line saying so.
    server.wait_for("inventory: 02:5d:00:00:00:01: in both", LIMIT);
    server.wait_for("smd: snapshot in service: 4 machines (2 netboot)", LIMIT);
    let script = |mac: &str| get(&format!("{base}/{mac}/auto.ipxe"));
    let (status, body) = script("02:5d:00:00:00:01");
    assert!(
        status == 200 && body.contains("from-the-file"),
        "{status} {body}"
    );
    let (status, body) = script("02:5d:00:00:00:02");
    assert!(
        status == 200 && body.contains("worker_id=02:5d:00:00:00:02"),
        "{status} {body}"
    );
    assert_eq!(script("02:77:00:00:00:09").0, 200);
    // The file changes: the new file goes into service over the same SMD snapshot.
    std::fs::write(&hw, file_text(false)).unwrap();
    server.wait_for("inventory reloaded", LIMIT);
    assert_eq!(script("02:77:00:00:00:09").0, 404);
    assert!(script("02:5d:00:00:00:01").1.contains("from-the-file"));
    assert_eq!(script("02:5d:00:00:00:02").0, 200);
}

/// A netbootd inventory in JSON (`--backend-http-url`, the hardware file's shape; the
/// stand-in indents it with tabs, as Go's encoder often does): served, refreshed, every bad
/// answer keeps it, and a restart while the source is down serves the copy kept on disk.
#[test]
fn a_json_inventory_over_http_is_served_refreshed_and_kept() {
    need_tools("http source", &["python3", "curl"]);
    let source = Standin::start();
    let machine = |n: u8| {
        format!(
            r##""02:4a:00:00:00:{n:02x}": {{"ipAddress": "10.100.1.{n}", "subnetMask": "255.255.0.0", "hostname": "json{n}", "netboot": {{"allowPxe": true, "ipxeScript": "#!ipxe\necho from-json-{n}\n"}}}}"##
        )
    };
    let inventory = |count: u8| {
        let entries: Vec<String> = (1..=count).map(machine).collect();
        format!("{{{}}}", entries.join(","))
    };
    source.post("/inventory.json", &inventory(2));
    let url = format!("{}/inventory.json", source.base);
    let dir = TempDir::new("http-source");
    let state = dir.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.write("netbootd.toml", "log-level = \"info\"\n");
    let args = |url: &str| {
        vec![
            "--config".to_string(),
            config.to_str().unwrap().to_string(),
            "--backend-http-url".into(),
            url.to_string(),
            "--backend-http-refresh".into(),
            "1s".into(),
            "--backend-http-timeout".into(),
            "1s".into(),
            "--state-dir".into(),
            state.to_str().unwrap().to_string(),
            "--public-ip-interface".into(),
            "lo".into(),
        ]
    };
    let mut check = vec!["check".to_string()];
    check.extend(args(&url));
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    let out = run(&check, &[]);
    assert!(
        out.status.success()
            && text(&out.stdout).contains(&format!(
                "ok: the JSON inventory at {url}: 2 machines (2 netboot), 0 entries left out"
            )),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let serve = args(&url);
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    let (mut server, base) = start_http_only(&serve);
    server.wait_for("http: snapshot in service: 2 machines (2 netboot)", LIMIT);
    let (status, body) = get(&format!("{base}/02:4a:00:00:00:01/auto.ipxe"));
    assert!(
        status == 200 && body.contains("from-json-1"),
        "{status} {body}"
    );
    source.post("/inventory.json", &inventory(3));
    server.wait_for("http: snapshot in service: 3 machines (3 netboot)", LIMIT);
    assert_eq!(script_status(&base, "02:4a:00:00:00:03"), 200);
    // Unchanged: the source answers 304 to the ETag of the copy in service.
    let deadline = Instant::now() + LIMIT;
    while !get(&format!("{}/control", source.base))
        .1
        .contains("\"not_modified\": 2")
    {
        assert!(
            Instant::now() < deadline,
            "no conditional GET was answered 304"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = get(&format!("{base}/metrics")).1;
    assert!(
        metrics.contains("netbootd_source_refreshes_total{source=\"http\",result=\"current\"}"),
        "{metrics}"
    );
    for (mode, says) in [
        ("503", "HTTP 503"),
        (
            "empty",
            "an empty list where the snapshot in service has 3 machines",
        ),
        ("truncated", "connection closed after"),
        ("html", "content type \"text/html\" is not JSON"),
    ] {
        source.mode(mode);
        let (line, _) = server.wait_for(says, LIMIT);
        assert!(
            line.contains("[ERROR]") && line.contains("keeping the snapshot of 3 machines"),
            "{line}"
        );
        assert_eq!(script_status(&base, "02:4a:00:00:00:03"), 200, "{mode}");
    }
    let health = get(&format!("{base}/healthcheck")).1;
    assert!(
        health.contains("\"source\":{\"name\":\"http\",\"state\":\"stale\""),
        "{health}"
    );
    assert_eq!(server.stop(nix::sys::signal::Signal::SIGTERM, LIMIT), 0);

    // The source goes away: a restart serves the copy kept in the state directory.
    drop(source);
    let dead = format!("http://127.0.0.1:{}/inventory.json", free_port());
    let serve = args(&dead);
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    let (mut server, base) = start_http_only(&serve);
    let (line, _) = server.wait_for("serving the last good snapshot", LIMIT);
    assert!(line.contains("(3 machines)"), "{line}");
    assert_eq!(script_status(&base, "02:4a:00:00:00:02"), 200);
}

/// pixiecore's API (`--backend-pixiecore-url`): the first DHCP request of an iPXE machine in
/// proxy mode asks `/v1/boot/<mac>` in the background; the client's retransmission gets the
/// script URL, and the script boots the kernel, initrd and command line the API gave (its
/// `{{ URL "..." }}` unwrapped). A MAC the API answers 404 for is not answered. In a network
/// namespace of its own (the relay's port 67 on its loopback).
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn pixiecore_api_answers_boot_machines_in_proxy_mode() {
    common::netns::need_root_and("pixiecore source", &["python3", "curl", "ip"]);
    let ns = common::netns::Netns::new("pxc");
    let api_port = 8089;
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/smd_standin.py");
    let mut api = ns
        .command(&["python3", tool, &api_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the stand-in starts");
    common::wait_ready(&mut api);
    let api = Standin {
        child: api,
        base: format!("http://127.0.0.1:{api_port}"),
        curl: Vec::new(),
    };
    let answer = r#"{"kernel":"http://files.example/vmlinuz","initrd":["http://files.example/initrd.img"],"cmdline":"console=ttyS0 ks={{ URL \"http://files.example/ks.cfg\" }}","message":"hello"}"#;
    let post = ns.run(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        answer,
        &format!("{}/v1/boot/52:54:00:00:00:77", api.base),
    ]);
    assert_eq!(text(&post.stdout), "201");

    let dir = TempDir::new("pixiecore");
    let mut cmd = ns.command(&[
        common::BIN,
        "--backend-pixiecore-url",
        &api.base,
        "--dhcp-mode",
        "proxy",
        "--dhcp-addr",
        "127.0.0.1:1067",
        "--public-ip-interface",
        "lo",
        "--tftp-enabled=false",
        "--syslog-enabled=false",
        "--http-addr",
        "127.0.0.1",
        "--http-port",
        "8080",
        "--state-dir",
        dir.0.to_str().unwrap(),
        "--user",
        "root",
    ]);
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let mut server = Server::spawn(cmd);
    server.wait_for("HTTP on 127.0.0.1", LIMIT);
    let probe = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/pxe_probe.py");
    let started = Instant::now();
    let out = ns.run(&["python3", probe, "1067", "52:54:00:00:00:77", "10"]);
    let boot_file = text(&out.stdout);
    assert!(
        boot_file.trim() == "http://127.0.0.1:8080/52:54:00:00:00:77/auto.ipxe",
        "{boot_file:?} {}",
        text(&out.stderr)
    );
    eprintln!("pixiecore: boot file after {:?}", started.elapsed());
    server.wait_for("pixiecore: 52:54:00:00:00:77 found by look-up", LIMIT);
    let script = ns.run(&["curl", "-s", boot_file.trim()]);
    let script = text(&script.stdout);
    assert!(
        script.contains("kernel http://files.example/vmlinuz")
            && script.contains("initrd http://files.example/initrd.img")
            && script.contains("ks=http://files.example/ks.cfg"),
        "{script}"
    );
    // A MAC the API does not know: asked once, never answered.
    let out = ns.run(&["python3", probe, "1067", "52:54:00:00:00:78", "2"]);
    assert_eq!(text(&out.stdout), "");
    let metrics = text(
        &ns.run(&["curl", "-s", "http://127.0.0.1:8080/metrics"])
            .stdout,
    );
    assert!(
        metrics
            .contains("netbootd_source_lookups_total{source=\"pixiecore\",result=\"not_found\"} 1"),
        "{metrics}"
    );
}
