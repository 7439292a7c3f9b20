//! The Kubernetes backend against a real Kubernetes API: the CRD API server
//! (`k8s.io/apiextensions-apiserver`, the generic API server code of kube-apiserver, serving
//! Tinkerbell's Hardware CRD with LIST/WATCH/bookmarks/410) on Debian's etcd, both built or
//! unpacked by `tests/tools/build-kube-peers.sh` and started here on private ports with
//! certificates made by openssl. The CRD server hands two questions to a "core" kube-apiserver
//! (is this bearer token valid, may this user list Hardware); no kube-apiserver can be
//! installed here, so `tests/tools/kube_core_standin.py` answers those two, from files the
//! test rewrites (a rotated token). Objects are created, changed and deleted with curl through
//! the real API.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::netns::{hook_env, need_root_and, udhcpc_args, write_hook, Lab, Netns};
use common::{free_port, get, run, start_http_only, text, Server, TempDir, BIN};

const LIMIT: Duration = Duration::from_secs(30);
const USER: &str = "system:serviceaccount:tink:netbootd";

fn peer(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/peers/kube")
            .join(default)
    })
}

fn apiserver() -> PathBuf {
    peer("NETBOOTD_KUBE_APISERVER", "bin/apiextensions-apiserver")
}

fn etcd() -> PathBuf {
    peer("NETBOOTD_ETCD", "etcd/usr/bin/etcd")
}

/// The peers must be there when the test is run on purpose (never a silent pass).
fn need_peers(test: &str) {
    for p in [apiserver(), etcd()] {
        assert!(
            p.is_file(),
            "{test}: {} is missing: run tests/tools/build-kube-peers.sh target/peers/kube (tests/run.sh does)",
            p.display()
        );
    }
    common::need_tools(test, &["openssl", "curl", "python3"]);
}

fn sh_ok(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `args` as a command, inside the namespace `ns` when there is one.
fn command_in(ns: Option<&str>, args: &[String]) -> Command {
    let mut cmd = match ns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n]);
            c.arg(&args[0]);
            c
        }
        None => Command::new(&args[0]),
    };
    cmd.args(&args[1..]);
    cmd
}

/// A Hardware object: one interface, netbooting, on 10.77.0.0/16.
fn hardware(name: &str, mac: &str, ip: &str, allow_pxe: bool) -> String {
    format!(
        r#"{{"apiVersion":"tinkerbell.org/v1alpha1","kind":"Hardware","metadata":{{"name":"{name}","namespace":"tink"}},"spec":{{"metadata":{{"facility":{{"facility_code":"lab1"}}}},"interfaces":[{{"dhcp":{{"mac":"{mac}","hostname":"{name}","ip":{{"address":"{ip}","netmask":"255.255.0.0","gateway":"10.77.0.1"}},"name_servers":["10.77.0.1"],"lease_time":600,"arch":"x86_64"}},"netboot":{{"allowPXE":{allow_pxe}}}}}]}}}}"#
    )
}

/// etcd, the stand-in for the core server, and the CRD API server with Tinkerbell's Hardware
/// CRD installed; in a namespace of the test's (bound to every address) or on loopback.
struct Kube {
    dir: TempDir,
    ns: Option<String>,
    etcd: Child,
    core: Child,
    api: Option<Child>,
    etcd_port: u16,
    pub api_port: u16,
    host: &'static str,
}

impl Drop for Kube {
    fn drop(&mut self) {
        let mut children = vec![&mut self.etcd, &mut self.core];
        children.extend(self.api.as_mut());
        for child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Kube {
    /// `ns`: run inside this namespace, the API on every address (its certificate names
    /// `extra_ips` too); else on loopback.
    fn start(ns: Option<&Netns>, extra_ips: &[&str]) -> Kube {
        let dir = TempDir::new("kube");
        Kube::certificates(&dir, extra_ips);
        let (etcd_port, core_port, api_port) = match ns {
            Some(_) => (2379, 8001, 6443),
            None => (free_port(), free_port(), free_port()),
        };
        dir.write(
            "tokens",
            &format!("tok-1 {USER}\ntok-other system:serviceaccount:tink:other\n"),
        );
        dir.write(
            "allowed",
            &format!("{USER} get hardware\n{USER} list hardware\n{USER} watch hardware\n"),
        );
        dir.write(
            "core.kubeconfig",
            &format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: core\ncontexts:\n- name: core\n  context: {{cluster: core, user: core}}\nclusters:\n- name: core\n  cluster: {{server: \"http://127.0.0.1:{core_port}\"}}\nusers:\n- name: core\n  user: {{}}\n"
            ),
        );
        let ns_name = ns.map(|n| n.name.clone());
        let spawn = |ns_name: &Option<String>, args: Vec<String>, log: &str| -> Child {
            let mut cmd = command_in(ns_name.as_deref(), &args);
            let log = std::fs::File::create(dir.path(log)).unwrap();
            cmd.current_dir(&dir.0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        };
        let etcd_args = vec![
            etcd().display().to_string(),
            "--data-dir".into(),
            dir.path("etcd").display().to_string(),
            "--listen-client-urls".into(),
            format!("http://127.0.0.1:{etcd_port}"),
            "--advertise-client-urls".into(),
            format!("http://127.0.0.1:{etcd_port}"),
            "--listen-peer-urls".into(),
            "http://127.0.0.1:0".into(),
        ];
        let etcd = spawn(&ns_name, etcd_args, "etcd.log");
        let standin =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/kube_core_standin.py");
        let core_args = vec![
            "python3".into(),
            standin.display().to_string(),
            core_port.to_string(),
            dir.path("tokens").display().to_string(),
            dir.path("allowed").display().to_string(),
        ];
        let core = spawn(&ns_name, core_args, "core.log");
        let mut kube = Kube {
            dir,
            ns: ns_name,
            etcd,
            core,
            api: None,
            etcd_port,
            api_port,
            host: if ns.is_some() { "0.0.0.0" } else { "127.0.0.1" },
        };
        kube.start_api(api_port);
        let crd = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tinkerbell/hardware-crd-v1alpha1.yaml");
        let (status, body) = kube.admin_with(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &format!("@{}", crd.display()),
            "application/yaml",
        );
        assert_eq!(status, 201, "the CRD was not created: {body}");
        // The new resource is served once the CRD is established.
        kube.wait_served(api_port);
        kube
    }

    /// A CA, the API server's certificate (loopback and `extra_ips`), an admin client
    /// certificate (group system:masters: always allowed) and a second, unrelated CA.
    fn certificates(dir: &TempDir, extra_ips: &[&str]) {
        let ssl = |args: &[&str]| {
            sh_ok(Command::new("openssl").args(args).current_dir(&dir.0));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca"];
            args.extend(ec);
            let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
            args.extend(["-keyout", &key, "-out", &crt]);
            ssl(&args);
        }
        let mut sans = vec!["IP:127.0.0.1".to_string(), "DNS:localhost".into()];
        sans.extend(extra_ips.iter().map(|ip| format!("IP:{ip}")));
        dir.write(
            "server.ext",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        );
        dir.write("client.ext", "extendedKeyUsage=clientAuth\n");
        for (name, subject, ext) in [
            ("server", "/CN=kube-api", "server.ext"),
            ("admin", "/O=system:masters/CN=admin", "client.ext"),
        ] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let mut args = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
            args.extend(ec);
            ssl(&args);
            ssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                ext,
            ]);
        }
    }

    fn start_api(&mut self, port: u16) {
        let path = |f: &str| self.dir.path(f).display().to_string();
        let mut args = vec![
            apiserver().display().to_string(),
            "--etcd-servers".into(),
            format!("http://127.0.0.1:{}", self.etcd_port),
            "--bind-address".into(),
            self.host.into(),
            "--secure-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path("server.crt"),
            "--tls-private-key-file".into(),
            path("server.key"),
            "--client-ca-file".into(),
            path("ca.crt"),
            "--cert-dir".into(),
            path("certs"),
            "--authentication-skip-lookup".into(),
            // Each token asked about every time (a rotated-out token fails at once).
            "--authentication-token-webhook-cache-ttl=0s".into(),
        ];
        for flag in [
            "--kubeconfig",
            "--authentication-kubeconfig",
            "--authorization-kubeconfig",
        ] {
            args.extend([flag.to_string(), path("core.kubeconfig")]);
        }
        // No core server to ask about namespaces, webhooks or flow control.
        args.extend([
            "--disable-admission-plugins".into(),
            "NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook".into(),
            "--enable-priority-and-fairness=false".into(),
        ]);
        let mut cmd = command_in(self.ns.as_deref(), &args);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path("api.log"))
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the API server starts");
        self.api = Some(child);
        let start = Instant::now();
        loop {
            let (status, _) = self.admin_on(
                port,
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                "",
                "",
            );
            if status == 200 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the API server did not come up: {}",
                std::fs::read_to_string(self.dir.path("api.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_served(&self, port: u16) {
        let start = Instant::now();
        while self
            .admin_on(
                port,
                "GET",
                "/apis/tinkerbell.org/v1alpha1/hardware",
                "",
                "",
            )
            .0
            != 200
        {
            assert!(start.elapsed() < LIMIT, "Hardware is not served");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the API server at once (SIGKILL: no graceful end of the watches).
    fn kill_api(&mut self) {
        if let Some(mut child) = self.api.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn curl_in_ns(&self, args: &[String]) -> Output {
        let mut all: Vec<String> = ["curl", "-sS", "--max-time", "10"]
            .map(String::from)
            .to_vec();
        all.extend_from_slice(args);
        let mut cmd = command_in(self.ns.as_deref(), &all);
        cmd.stdin(Stdio::null()).output().expect("curl runs")
    }

    /// A request as the cluster's admin (client certificate) to the API on `port`.
    fn admin_on(
        &self,
        port: u16,
        method: &str,
        path: &str,
        body: &str,
        content_type: &str,
    ) -> (u16, String) {
        let file = |f: &str| self.dir.path(f).display().to_string();
        let mut args = vec![
            "--cacert".into(),
            file("ca.crt"),
            "--cert".into(),
            file("admin.crt"),
            "--key".into(),
            file("admin.key"),
            "-X".into(),
            method.into(),
            "-w".into(),
            "\n%{http_code}".into(),
        ];
        if !body.is_empty() {
            args.extend([
                "-H".into(),
                format!("Content-Type: {content_type}"),
                "--data-binary".into(),
                body.into(),
            ]);
        }
        args.push(format!("https://127.0.0.1:{port}{path}"));
        let out = text(&self.curl_in_ns(&args).stdout);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.parse().unwrap_or(0), body.to_string())
    }

    fn admin_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        content_type: &str,
    ) -> (u16, String) {
        self.admin_on(self.api_port, method, path, body, content_type)
    }

    fn create_on(&self, port: u16, object: &str) {
        let (status, body) = self.admin_on(
            port,
            "POST",
            "/apis/tinkerbell.org/v1alpha1/namespaces/tink/hardware",
            object,
            "application/json",
        );
        assert_eq!(status, 201, "create: {body}");
    }

    fn create(&self, object: &str) {
        self.create_on(self.api_port, object);
    }

    fn replace(&self, name: &str, object: &str) {
        let path = format!("/apis/tinkerbell.org/v1alpha1/namespaces/tink/hardware/{name}");
        let (status, body) =
            self.admin_with("PATCH", &path, object, "application/merge-patch+json");
        assert_eq!(status, 200, "patch: {body}");
    }

    fn delete(&self, name: &str) {
        let path = format!("/apis/tinkerbell.org/v1alpha1/namespaces/tink/hardware/{name}");
        let (status, body) = self.admin_with("DELETE", &path, "", "");
        assert_eq!(status, 200, "delete: {body}");
    }

    /// Compacts etcd's history up to now (older resource versions can no longer be watched).
    fn compact(&self) {
        let url = |p: &str| format!("http://127.0.0.1:{}{p}", self.etcd_port);
        let out = self.curl_in_ns(&[
            "-X".into(),
            "POST".into(),
            "-d".into(),
            "{\"key\":\"AA==\"}".into(),
            url("/v3/kv/range"),
        ]);
        let body = text(&out.stdout);
        let revision = body
            .split("\"revision\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no etcd revision in {body}"))
            .to_string();
        let out = self.curl_in_ns(&[
            "-X".into(),
            "POST".into(),
            "-d".into(),
            format!("{{\"revision\":\"{revision}\",\"physical\":true}}"),
            url("/v3/kv/compaction"),
        ]);
        assert!(out.status.success(), "compaction: {}", text(&out.stderr));
    }

    /// A kubeconfig for netbootd: the CA inline, the token from `token_file`.
    fn kubeconfig(&self, name: &str, server: &str, ca: &str, token_file: &Path) -> PathBuf {
        let ca = std::fs::read(self.dir.path(ca)).unwrap();
        let ca = base64(&ca);
        self.dir.write(
            name,
            &format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: lab\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: netbootd\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: netbootd\n  user:\n    tokenFile: {}\n",
                token_file.display()
            ),
        )
    }
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The status of `/<mac>/auto.ipxe`: 200 for a machine that boots, 404 otherwise.
fn script_status(base: &str, mac: &str) -> u16 {
    get(&format!("{base}/{mac}/auto.ipxe")).0
}

/// Polls until `/<mac>/auto.ipxe` answers `want`; how long it took.
fn until_status(base: &str, mac: &str, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        if script_status(base, mac) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < LIMIT,
            "{mac} never answered {want} (now {})",
            script_status(base, mac)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn healthcheck_source(base: &str) -> String {
    let (_, body) = get(&format!("{base}/healthcheck"));
    body.split("\"source\":").nth(1).unwrap_or("").to_string()
}

const M1: &str = "52:54:00:aa:00:01";
const M2: &str = "52:54:00:aa:00:02";
const M3: &str = "52:54:00:aa:00:03";
const M4: &str = "52:54:00:aa:00:04";
const UNKNOWN: &str = "52:54:00:aa:00:99";

fn netbootd(kubeconfig: &Path, state: &Path) -> (Server, String) {
    start_http_only(&[
        "--public-ip-interface",
        "lo",
        "--osie-url",
        "http://192.0.2.1/osie",
        "--backend-kube-enabled=true",
        "--backend-kube-config",
        kubeconfig.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--log-level",
        "info",
    ])
}

#[test]
#[ignore = "needs the Kubernetes API server and etcd that tests/run.sh builds (target/peers/kube)"]
fn hardware_is_listed_watched_and_kept_through_api_outages() {
    need_peers("kube watch");
    let mut kube = Kube::start(None, &[]);
    kube.create(&hardware("m1", M1, "10.77.0.11", true));
    kube.create(&hardware("m2", M2, "10.77.0.12", true));
    let token = kube.dir.write("token", "tok-1\n");
    let config = kube.kubeconfig(
        "netbootd.kubeconfig",
        &format!("https://127.0.0.1:{}", kube.api_port),
        "ca.crt",
        &token,
    );
    let state = kube.dir.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let (mut server, base) = netbootd(&config, &state);
    server.wait_for("kube: snapshot in service: 2 machines", LIMIT);
    assert_eq!(script_status(&base, M1), 200);
    assert_eq!(script_status(&base, UNKNOWN), 404);

    // Created, changed, deleted while running: each shows within 2 s.
    kube.create(&hardware("m3", M3, "10.77.0.13", true));
    let created = until_status(&base, M3, 200);
    kube.replace("m2", &hardware("m2", M2, "10.77.0.12", false));
    let changed = until_status(&base, M2, 404);
    kube.delete("m3");
    let deleted = until_status(&base, M3, 404);
    for (what, took) in [
        ("created", created),
        ("changed", changed),
        ("deleted", deleted),
    ] {
        assert!(took < Duration::from_secs(2), "{what}: {took:?}");
    }
    eprintln!("kube watch: created {created:?}, changed {changed:?}, deleted {deleted:?}");
    server.wait_for(
        "kube: Hardware changed: 2 machines going into service (0 added, 1 removed, 0 changed)",
        LIMIT,
    );

    // A MAC in two objects: both refused, each named.
    kube.create(&hardware("m4", M1, "10.77.0.14", true));
    let (line, _) = server.wait_for("is also in", LIMIT);
    assert!(
        line.contains("tink/m1") && line.contains("tink/m4"),
        "{line}"
    );
    until_status(&base, M1, 404);
    kube.delete("m4");
    until_status(&base, M1, 200);
    assert!(healthcheck_source(&base).contains("\"state\":\"ok\""));

    // The API server dies: the cache serves, and says it is stale.
    kube.kill_api();
    server.wait_for(
        "kube: refresh failed, keeping the snapshot of 2 machines",
        LIMIT,
    );
    assert_eq!(script_status(&base, M1), 200);
    assert!(
        healthcheck_source(&base).contains("\"state\":\"stale\""),
        "{}",
        healthcheck_source(&base)
    );

    // The token rotates (the old one stops working); meanwhile, through a second API server
    // on the same etcd, an object is added and the history compacted. When the first API
    // server returns, the version netbootd watched from is gone (410): it lists again, with
    // the new token.
    kube.dir.write("tokens", &format!("tok-2 {USER}\n"));
    std::fs::write(&token, "tok-2\n").unwrap();
    let other_port = free_port();
    kube.start_api(other_port);
    kube.wait_served(other_port);
    kube.create_on(other_port, &hardware("m4", M4, "10.77.0.14", true));
    kube.compact();
    kube.kill_api();
    let port = kube.api_port;
    kube.start_api(port);
    server.wait_for("listing again", LIMIT);
    until_status(&base, M4, 200);
    server.wait_for("kube: recovered after", LIMIT);
    assert!(healthcheck_source(&base).contains("\"state\":\"ok\""));
    // Watched again: a change shows within 2 s.
    kube.replace("m4", &hardware("m4", M4, "10.77.0.14", false));
    assert!(until_status(&base, M4, 404) < Duration::from_secs(2));

    // The API down again, netbootd restarted: it serves the set it kept in --state-dir
    // (written within 10 s of the last change).
    kube.kill_api();
    let kept = state.join("kube.last-good.json");
    let latest = |text: String| text.matches("\"allowPXE\":false").count() == 2;
    let start = Instant::now();
    while !latest(std::fs::read_to_string(&kept).unwrap_or_default()) {
        assert!(start.elapsed() < LIMIT, "the watched set was not kept");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
    let (mut server, base) = netbootd(&config, &state);
    server.wait_for("serving the last good snapshot", LIMIT);
    assert_eq!(script_status(&base, M1), 200);
    assert_eq!(script_status(&base, M2), 404, "m2 does not netboot");
    assert_eq!(script_status(&base, UNKNOWN), 404);
    // And when the API returns, the set is listed and watched again.
    kube.start_api(port);
    server.wait_for("kube: recovered after", LIMIT);
    kube.delete("m1");
    assert!(until_status(&base, M1, 404) < Duration::from_secs(2));
}

/// `netbootd check` against the cluster: counts, and each access problem as a clear error.
#[test]
#[ignore = "needs the Kubernetes API server and etcd that tests/run.sh builds (target/peers/kube)"]
fn check_lists_the_cluster_and_names_access_problems() {
    need_peers("kube check");
    let kube = Kube::start(None, &[]);
    kube.create(&hardware("m1", M1, "10.77.0.11", true));
    kube.create(&hardware("bad", "52:54:00:aa:00:05", "10.77.0.300", true));
    let server = format!("https://127.0.0.1:{}", kube.api_port);
    let check = |config: &Path, extra: &[&str]| {
        let mut args = vec![
            "check",
            "--public-ip-interface",
            "lo",
            "--backend-kube-enabled=true",
            "--backend-kube-config",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = run(&args, &[]);
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    let token = kube.dir.write("token", "tok-1\n");
    let good = kube.kubeconfig("good", &server, "ca.crt", &token);
    let (code, out) = check(&good, &[]);
    assert!(
        out.contains("1 machines (1 netboot), 1 entries left out"),
        "{out}"
    );
    assert!(out.contains("tink/bad"), "the bad object is named: {out}");
    assert!(
        out.contains("tink/bad 52:54:00:aa:00:05: spec.interfaces[0].dhcp.ip.address"),
        "{out}"
    );
    assert_eq!(
        code,
        Some(0),
        "an entry left out is a warning, as for the other sources: {out}"
    );
    let (_, out) = check(&good, &["--backend-kube-namespace", "elsewhere"]);
    assert!(
        out.contains("namespaces/elsewhere/hardware") && out.contains("0 machines"),
        "{out}"
    );

    let wrong_ca = kube.kubeconfig("wrong-ca", &server, "other-ca.crt", &token);
    let (code, out) = check(&wrong_ca, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TLS") && out.contains("certificate"), "{out}");

    let stranger = kube.dir.write("stranger", "tok-unknown\n");
    let (code, out) = check(
        &kube.kubeconfig("stranger.kubeconfig", &server, "ca.crt", &stranger),
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("HTTP 401"), "{out}");

    let other = kube.dir.write("other", "tok-other\n");
    let (code, out) = check(
        &kube.kubeconfig("other.kubeconfig", &server, "ca.crt", &other),
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("HTTP 403") && out.contains("Forbidden"),
        "{out}"
    );

    let (code, out) = check(
        &kube.kubeconfig("lines.kubeconfig", &server, "ca.crt", &good),
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("not one token"),
        "a kubeconfig as the token file: {out}"
    );

    let exec = kube.dir.write(
        "exec.kubeconfig",
        &std::fs::read_to_string(&good).unwrap().replace(
            &format!("tokenFile: {}", token.display()),
            "exec: {command: aws}",
        ),
    );
    let (code, out) = check(&exec, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("exec plugin"), "{out}");
    drop(kube);
}

/// Two netbootd processes on two segments (each its own namespaces, as two racks would be)
/// watch the same API and answer the same MAC identically; a change reaches both.
#[test]
#[ignore = "needs root, network namespaces and the Kubernetes peers: run tests/run.sh"]
fn two_replicas_on_two_segments_answer_identically() {
    need_root_and("kube replicas", &["busybox", "ip"]);
    need_peers("kube replicas");
    const MAC: &str = "02:77:00:00:00:50";
    let labs = [Lab::new(MAC), Lab::new(MAC)];
    // The API's own namespace, one link to each server namespace.
    let api_ns = Netns::new("kapi");
    for (i, lab) in labs.iter().enumerate() {
        let (a, k) = (format!("a{i}"), format!("10.78.{i}.1/24"));
        common::netns::sh(&[
            "ip",
            "link",
            "add",
            &a,
            "netns",
            &api_ns.name,
            "type",
            "veth",
            "peer",
            "name",
            "k0",
            "netns",
            &lab.srv.name,
        ]);
        api_ns.run(&["ip", "addr", "add", &k, "dev", &a]);
        api_ns.run(&["ip", "link", "set", &a, "up"]);
        lab.srv
            .run(&["ip", "addr", "add", &format!("10.78.{i}.2/24"), "dev", "k0"]);
        lab.srv.run(&["ip", "link", "set", "k0", "up"]);
    }
    let kube = Kube::start(Some(&api_ns), &["10.78.0.1", "10.78.1.1"]);
    kube.create(&hardware("cli0", MAC, "10.77.0.50", true));
    let token = kube.dir.write("token", "tok-1\n");
    let config = kube.kubeconfig(
        "netbootd.kubeconfig",
        "https://10.78.0.1:6443",
        "ca.crt",
        &token,
    );
    let dir = TempDir::new("kube-replicas");
    std::fs::create_dir_all(dir.path("ipxe")).unwrap();
    let mut servers = Vec::new();
    for (i, lab) in labs.iter().enumerate() {
        let api = format!("https://10.78.{i}.1:6443");
        let mut cmd = lab.srv.command(&[BIN]);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args([
                "--backend-kube-enabled=true",
                "--backend-kube-config",
                config.to_str().unwrap(),
                "--backend-kube-api",
                &api,
                "--dhcp-iface",
                "s0",
                "--ipxe-dir",
                dir.path("ipxe").to_str().unwrap(),
                "--tftp-enabled=false",
                "--syslog-enabled=false",
                "--http-ipxe-binary-enabled=false",
                "--http-ipxe-script-enabled=false",
            ]);
        let mut server = Server::spawn(cmd);
        server.wait_for("kube: snapshot in service: 1 machines", LIMIT);
        servers.push(server);
    }
    let lease = |lab: &Lab, dir: &TempDir| {
        let hook = write_hook(dir);
        let _ = std::fs::remove_file(dir.path("hook.env"));
        let out = lab
            .cli
            .run_for(Duration::from_secs(20), &udhcpc_args(&hook));
        assert!(out.status.success(), "udhcpc: {}", text(&out.stderr));
        let env = hook_env(dir);
        let mut fields: Vec<String> = env
            .lines()
            .filter(|l| {
                [
                    "ip=",
                    "subnet=",
                    "router=",
                    "dns=",
                    "hostname=",
                    "lease=",
                    "serverid=",
                    "boot_file=",
                    "siaddr=",
                    "staticroutes=",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .map(str::to_string)
            .collect();
        fields.sort();
        fields.dedup();
        fields
    };
    let dirs = [TempDir::new("kube-cli0"), TempDir::new("kube-cli1")];
    let first = lease(&labs[0], &dirs[0]);
    let second = lease(&labs[1], &dirs[1]);
    assert!(first.contains(&"ip=10.77.0.50".to_string()), "{first:?}");
    // classless_static_routes, as option 121.
    assert!(
        first.contains(&"staticroutes=192.168.0.0/16 10.77.0.254 0.0.0.0/0 10.77.0.1".to_string()),
        "{first:?}"
    );
    assert!(first.contains(&"hostname=cli0".to_string()), "{first:?}");
    assert_eq!(first, second, "the two segments answer alike");
    eprintln!("kube replicas: both segments leased {first:?}");
    // A change in the API reaches both.
    let path = "/apis/tinkerbell.org/v1alpha1/namespaces/tink/hardware/cli0";
    let (status, body) = kube.admin_with(
        "PATCH",
        path,
        &hardware("cli0", MAC, "10.77.0.60", true),
        "application/merge-patch+json",
    );
    assert_eq!(status, 200, "{body}");
    for server in &mut servers {
        server.wait_for(
            "kube: Hardware changed: 1 machines going into service (0 added, 0 removed, 1 changed)",
            LIMIT,
        );
    }
    let first = lease(&labs[0], &dirs[0]);
    let second = lease(&labs[1], &dirs[1]);
    assert!(first.contains(&"ip=10.77.0.60".to_string()), "{first:?}");
    assert_eq!(
        first, second,
        "the two segments answer alike after the change"
    );
    drop(servers);
    drop(kube);
}

/// In a pod: the Smee environment of `etc/kubernetes/deployment.yaml` and the service account
/// (KUBERNETES_SERVICE_HOST/_PORT, token and CA under /var/run/secrets/...), given to netbootd
/// in a mount namespace of its own (a private /run), so nothing on the host changes.
#[test]
#[ignore = "needs root (a private mount namespace) and the Kubernetes peers: run tests/run.sh"]
fn in_a_pod_the_service_account_and_the_smee_environment_work() {
    need_root_and("kube in-cluster", &["unshare", "mount"]);
    need_peers("kube in-cluster");
    let kube = Kube::start(None, &[]);
    kube.create(&hardware("m1", M1, "10.77.0.11", true));
    let account = kube.dir.path("serviceaccount");
    std::fs::create_dir_all(&account).unwrap();
    std::fs::copy(kube.dir.path("ca.crt"), account.join("ca.crt")).unwrap();
    std::fs::write(account.join("token"), "tok-1\n").unwrap();
    std::fs::write(account.join("namespace"), "tink-system\n").unwrap();
    // The deployment's environment, as a pod would get it.
    let deployment = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/kubernetes/deployment.yaml"),
    )
    .unwrap();
    let mut env: Vec<(String, String)> = deployment
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("- {name: ")?;
            let (name, rest) = l.split_once(", value: \"")?;
            Some((name.to_string(), rest.split('"').next()?.to_string()))
        })
        .collect();
    assert!(
        env.iter()
            .any(|(k, v)| k == "SMEE_BACKEND_KUBE_ENABLED" && v == "true"),
        "{env:?}"
    );
    for (k, v) in &mut env {
        if k == "SMEE_PUBLIC_IP_INTERFACE" {
            *v = "lo".into();
        }
        if k == "NETBOOTD_STATE_DIR" {
            *v = kube.dir.path("state").display().to_string();
        }
    }
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io && \
         ln -s {} /run/secrets/kubernetes.io/serviceaccount && exec {BIN} check",
        account.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", kube.api_port.to_string())
        .envs(env);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("in-cluster service account") && all.contains("1 machines"),
        "{all}"
    );
    // The token rotates on disk: the next request uses the new one.
    kube.dir.write("tokens", &format!("tok-2 {USER}\n"));
    std::fs::write(account.join("token"), "tok-2\n").unwrap();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(account.join("token"), "tok-1\n").unwrap();
    let out = cmd.output().unwrap();
    assert!(text(&out.stdout).contains("HTTP 401") || text(&out.stderr).contains("HTTP 401"));
}
