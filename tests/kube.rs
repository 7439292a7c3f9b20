//! The Kubernetes backend against a real Kubernetes API (tests/common/kube.rs): the CRD API server
//! (`k8s.io/apiextensions-apiserver`, the generic API server code of kube-apiserver, serving
//! Tinkerbell's Hardware CRD with LIST/WATCH/bookmarks/410) on Debian's etcd, both built or
//! unpacked by `tests/tools/build-kube-peers.sh` and started here on private ports with
//! certificates made by openssl. The CRD server hands two questions to a "core" kube-apiserver
//! (is this bearer token valid, may this user list Hardware); no kube-apiserver can be
//! installed here, so `tests/tools/kube_core_standin.py` answers those two, from files the
//! test rewrites (a rotated token). Objects are created, changed and deleted with curl through
//! the real API.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kube::{hardware, need_peers, Kube, LIMIT, USER};
use common::netns::{hook_env, need_root_and, udhcpc_args, write_hook, Lab, Netns};
use common::{free_port, get, run, start_http_only, text, Server, TempDir, BIN};

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
