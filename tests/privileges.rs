//! Privilege drop: netbootd started as root in a namespace binds the packet socket and ports
//! 67, 69, 80, 514 and 4011, then runs as `--user nobody` with every capability set empty
//! (read from /proc/PID/status), and DHCP, TFTP, HTTP, syslog, inventory reload and
//! configuration reload (SIGHUP) still work.

mod common;

use std::path::Path;
use std::time::Duration;

use common::netns::{need_root_and, udhcpc_args, Lab, SRV_IP};
use common::{text, Server, TempDir, BIN};

const LIMIT: Duration = Duration::from_secs(20);
const CLI_MAC: &str = "02:77:00:00:00:50";

fn hardware(hostname: &str) -> String {
    format!(
        "{CLI_MAC}:\n  ipAddress: 10.77.0.50\n  subnetMask: 255.255.0.0\n  hostname: {hostname}\n  \
         netboot: {{allowPxe: true}}\n  boot: {{kernel: vmlinuz, cmdline: console=ttyS0}}\n"
    )
}

/// The `Name:` line of /proc/PID/status, split into its fields.
fn status_field(pid: u32, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in status"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The lab's server namespace with the iPXE directory, every service on its usual port, started
/// behind `wrapper` (e.g. setpriv) with `extra` arguments.
fn start(lab: &Lab, dir: &TempDir, hw: &Path, wrapper: &[&str], extra: &[&str]) -> Server {
    let mut argv = wrapper.to_vec();
    argv.push(BIN);
    let mut cmd = lab.srv.command(&argv);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "--backend-file-path",
            hw.to_str().unwrap(),
            "--dhcp-iface",
            "s0",
            "--ipxe-dir",
            dir.path("ipxe").to_str().unwrap(),
            "--tftp-addr",
            SRV_IP,
            "--http-addr",
            SRV_IP,
            "--http-port",
            "80",
            "--syslog-addr",
            SRV_IP,
        ])
        .args(extra);
    Server::spawn(cmd)
}

fn assert_no_capabilities(pid: u32) {
    for caps in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(
            status_field(pid, caps),
            vec!["0000000000000000"],
            "{caps} after the drop"
        );
    }
}

/// A lease for br0 from netbootd (through the packet socket opened before the drop), then the
/// reserved address on br0 for the TFTP and HTTP clients.
fn lease(lab: &Lab) {
    let out = lab.cli.run_for(LIMIT, &udhcpc_args(Path::new("/bin/true")));
    assert!(out.status.success(), "udhcpc: {}", text(&out.stderr));
    lab.cli_address("10.77.0.50/16");
}

/// Sends `message` with logger from the clients' side and returns netbootd's log line for it.
fn log_via_syslog(lab: &Lab, server: &mut Server, message: &str) -> String {
    let argv = [
        "logger", "--udp", "--server", SRV_IP, "--port", "514", "-t", "t", message,
    ];
    lab.cli.run(&argv);
    server.wait_for(message, LIMIT).0
}

fn http_script(lab: &Lab) -> String {
    let url = format!("http://{SRV_IP}/{CLI_MAC}/auto.ipxe");
    text(&lab.cli.run_for(LIMIT, &["curl", "-sSf", &url]).stdout)
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn after_binding_it_runs_as_nobody_without_capabilities_and_still_serves() {
    need_root_and("privilege drop", &["ip", "busybox", "curl", "logger"]);
    let dir = TempDir::new("privileges");
    std::fs::create_dir_all(dir.path("ipxe")).unwrap();
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path("ipxe/undionly.kpxe"), &binary).unwrap();
    let hw = dir.write("hardware.yaml", &hardware("before"));
    let profile = |cmdline: &str| {
        format!("[profiles.spare]\nkernel = \"vmlinuz\"\ncmdline = \"{cmdline}\"\n")
    };
    let config = dir.write("netbootd.toml", &profile("one"));
    let lab = Lab::new(CLI_MAC);
    let args = ["--user", "nobody", "--config", config.to_str().unwrap()];
    let mut server = start(&lab, &dir, &hw, &[], &args);
    let (line, _) = server.wait_for("running as user nobody", LIMIT);
    assert!(line.contains("with no capabilities"), "{line}");
    let pid = server.child.id();

    // Every id is nobody's; every capability set is empty.
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let nobody_uid = text(&nobody.stdout).trim().to_string();
    assert_eq!(status_field(pid, "Uid"), vec![nobody_uid.clone(); 4]);
    assert!(status_field(pid, "Gid").iter().all(|g| g != "0"));
    assert_eq!(
        status_field(pid, "Groups").len(),
        1,
        "one group, not root's"
    );
    assert_no_capabilities(pid);
    let sockets = text(&lab.srv.run(&["ss", "-lnup"]).stdout);
    for port in [":67 ", ":69 ", ":514 ", ":4011 "] {
        assert!(sockets.contains(port), "{port} not bound:\n{sockets}");
    }

    // DHCP through the packet socket opened before the drop.
    lease(&lab);
    server.wait_for("-> ACK 10.77.0.50", LIMIT);

    // TFTP: each transfer opens a new socket as nobody.
    let got = dir.path("got.kpxe");
    let out = lab.cli.run_for(
        LIMIT,
        &[
            "curl",
            "-sS",
            "-o",
            got.to_str().unwrap(),
            &format!("tftp://{SRV_IP}/undionly.kpxe"),
        ],
    );
    assert!(out.status.success(), "curl tftp: {}", text(&out.stderr));
    assert_eq!(std::fs::read(&got).unwrap(), binary);

    // HTTP on port 80.
    let script = http_script(&lab);
    assert!(script.contains("kernel"), "{script}");

    // Syslog on port 514.
    let line = log_via_syslog(&lab, &mut server, "after the drop");
    assert!(line.contains("machine=before"), "{line}");

    // The inventory still reloads (the file is readable by nobody).
    dir.write("hardware.yaml", &hardware("after"));
    server.wait_for("inventory reloaded (file changed)", LIMIT);
    let line = log_via_syslog(&lab, &mut server, "after reload");
    assert!(line.contains("machine=after"), "{line}");

    // SIGHUP re-reads the configuration as nobody, and the inventory with its new profiles.
    dir.write("netbootd.toml", &profile("two"));
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for("configuration reloaded (SIGHUP): 1 change applied", LIMIT);
    let log = server.seen.join("\n");
    assert!(log.contains("config reload: profiles.spare"), "{log}");
    assert!(
        log.contains("inventory reloaded (configuration reloaded)"),
        "{log}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn a_named_user_that_does_not_exist_stops_the_start() {
    need_root_and("privilege drop to a missing user", &[]);
    let dir = TempDir::new("privileges-missing");
    let hw = dir.write("hardware.yaml", "{}\n");
    let out = common::run(
        &[
            "--backend-file-path",
            hw.to_str().unwrap(),
            "--dhcp-enabled=false",
            "--tftp-enabled=false",
            "--http-ipxe-binary-enabled=false",
            "--http-ipxe-script-enabled=false",
            "--syslog-enabled=false",
            "--user",
            "no-such-user-here",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot give up root: no user \"no-such-user-here\""),
        "{}",
        text(&out.stderr)
    );
}

/// As systemd starts it (`User=` with `AmbientCapabilities=`): never root, binds with
/// CAP_NET_RAW and CAP_NET_BIND_SERVICE, then empties every capability set and still serves.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn started_unprivileged_with_ambient_capabilities_it_drops_them_after_binding() {
    need_root_and("capability drop", &["ip", "setpriv", "curl", "busybox"]);
    let dir = TempDir::new("privileges-ambient");
    std::fs::create_dir_all(dir.path("ipxe")).unwrap();
    std::fs::write(dir.path("ipxe/undionly.kpxe"), b"ipxe binary").unwrap();
    let hw = dir.write("hardware.yaml", &hardware("ambient"));
    let lab = Lab::new(CLI_MAC);
    let caps = "+net_raw,+net_bind_service";
    let (inh, ambient) = (
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
    );
    let setpriv = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        &inh,
        &ambient,
    ];
    let mut server = start(&lab, &dir, &hw, &setpriv, &[]);
    server.wait_for(
        "its capabilities are dropped now the sockets are bound",
        LIMIT,
    );
    assert_no_capabilities(server.child.id());
    lease(&lab);
    let out = lab.cli.run_for(
        LIMIT,
        &["curl", "-sS", &format!("tftp://{SRV_IP}/undionly.kpxe")],
    );
    assert_eq!(text(&out.stdout), "ipxe binary");
    let script = http_script(&lab);
    assert!(script.contains("kernel"), "{script}");
}
