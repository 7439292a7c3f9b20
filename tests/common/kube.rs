//! A Kubernetes API for the tests (tests/kube.rs, tests/boot.rs): Debian's etcd, the CRD API
//! server (`k8s.io/apiextensions-apiserver`, built by `tests/tools/build-kube-peers.sh`) with
//! Tinkerbell's Hardware CRD, and `tests/tools/kube_core_standin.py` answering the two
//! questions the CRD server delegates to a core kube-apiserver (TokenReview and
//! SubjectAccessReview), on loopback or in a namespace of the test's; certificates made by
//! openssl; objects created, changed and deleted with curl through the real API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::{free_port, peer, text, TempDir};

pub const LIMIT: Duration = Duration::from_secs(30);
pub const USER: &str = "system:serviceaccount:tink:netbootd";

fn apiserver() -> PathBuf {
    peer(
        "NETBOOTD_KUBE_APISERVER",
        "kube/bin/apiextensions-apiserver",
    )
}

fn etcd() -> PathBuf {
    peer("NETBOOTD_ETCD", "kube/etcd/usr/bin/etcd")
}

/// The peers must be there when the test is run on purpose (never a silent pass).
pub fn need_peers(test: &str) {
    for p in [apiserver(), etcd()] {
        assert!(
            p.is_file(),
            "{test}: {} is missing: run tests/tools/build-kube-peers.sh target/peers/kube (tests/run.sh does)",
            p.display()
        );
    }
    super::need_tools(test, &["openssl", "curl", "python3"]);
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

/// A Hardware object: one interface on 10.77.0.0/16 with two classless static routes
/// (option 121), netbooting or not.
pub fn hardware(name: &str, mac: &str, ip: &str, allow_pxe: bool) -> String {
    format!(
        r#"{{"apiVersion":"tinkerbell.org/v1alpha1","kind":"Hardware","metadata":{{"name":"{name}","namespace":"tink"}},"spec":{{"metadata":{{"facility":{{"facility_code":"lab1"}}}},"interfaces":[{{"dhcp":{{"mac":"{mac}","hostname":"{name}","ip":{{"address":"{ip}","netmask":"255.255.0.0","gateway":"10.77.0.1"}},"name_servers":["10.77.0.1"],"lease_time":600,"arch":"x86_64","classless_static_routes":[{{"destination_descriptor":"192.168.0.0/16","router":"10.77.0.254"}},{{"destination_descriptor":"0.0.0.0/0","router":"10.77.0.1"}}]}},"netboot":{{"allowPXE":{allow_pxe}}}}}]}}}}"#
    )
}

/// etcd, the stand-in for the core server, and the CRD API server with Tinkerbell's Hardware
/// CRD installed; in a namespace of the test's (bound to every address) or on loopback.
pub struct Kube {
    pub dir: TempDir,
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
    pub fn start(ns: Option<&Netns>, extra_ips: &[&str]) -> Kube {
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

    pub fn start_api(&mut self, port: u16) {
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

    pub fn wait_served(&self, port: u16) {
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
    pub fn kill_api(&mut self) {
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
    pub fn admin_on(
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

    pub fn admin_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        content_type: &str,
    ) -> (u16, String) {
        self.admin_on(self.api_port, method, path, body, content_type)
    }

    pub fn create_on(&self, port: u16, object: &str) {
        let (status, body) = self.admin_on(
            port,
            "POST",
            "/apis/tinkerbell.org/v1alpha1/namespaces/tink/hardware",
            object,
            "application/json",
        );
        assert_eq!(status, 201, "create: {body}");
    }

    pub fn create(&self, object: &str) {
        self.create_on(self.api_port, object);
    }

    pub fn replace(&self, name: &str, object: &str) {
        let path = format!("/apis/tinkerbell.org/v1alpha1/namespaces/tink/hardware/{name}");
        let (status, body) =
            self.admin_with("PATCH", &path, object, "application/merge-patch+json");
        assert_eq!(status, 200, "patch: {body}");
    }

    pub fn delete(&self, name: &str) {
        let path = format!("/apis/tinkerbell.org/v1alpha1/namespaces/tink/hardware/{name}");
        let (status, body) = self.admin_with("DELETE", &path, "", "");
        assert_eq!(status, 200, "delete: {body}");
    }

    /// Compacts etcd's history up to now (older resource versions can no longer be watched).
    pub fn compact(&self) {
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
    pub fn kubeconfig(&self, name: &str, server: &str, ca: &str, token_file: &Path) -> PathBuf {
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
