//! Network namespaces made by the tests themselves, removed on drop, with only the processes
//! inside them killed. The topology mirrors the pxelab:
//!
//! ```text
//!   ns srv:  s0 10.77.0.1/16   <== veth ==>   c0 -- br0 (client MAC, no IP)  :ns cli
//!                                             d0 -- (veth) -- p0 10.77.0.3/16 :ns dhcp (optional)
//! ```
//!
//! Tests that use namespaces are `#[ignore = NEEDS_ROOT]` and call [`need_root_and`] first:
//! a plain `cargo test` reports them as ignored, and when they are run (`--include-ignored`,
//! as `tests/run.sh` does) without root or a tool they fail with the reason.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SRV_IP: &str = "10.77.0.1";
pub const PREFIX: u8 = 16;

/// The reason every namespace test carries in its `#[ignore = ...]`: a plain `cargo test` lists
/// it as ignored (never "ok"), and `tests/run.sh` runs it with `--include-ignored`.
pub const NEEDS_ROOT: &str = "needs root and network namespaces: run tests/run.sh";

/// For a test marked `#[ignore = NEEDS_ROOT]`, run on purpose: it must really run, so a
/// missing privilege or tool fails it with the reason (never a silent pass).
pub fn need_root_and(test: &str, tools: &[&str]) {
    let mut missing = super::missing_tools(tools);
    // /proc/self belongs to the effective user.
    let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    if euid != 0 {
        missing.insert(0, "root".into());
    }
    if !missing.is_empty() {
        panic!(
            "{test}: cannot run without {} (run ./tests/run.sh as root: it installs them)",
            missing.join(", ")
        );
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One namespace; on drop, its processes are killed and it is deleted.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("nbt{}-{n}-{role}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs inside the namespace; panics on failure.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs inside the namespace with a time limit; returns the output whatever the status.
    pub fn run_for(&self, limit: Duration, args: &[&str]) -> Output {
        let secs = format!("{}", limit.as_secs().max(1));
        let mut full = vec![
            "timeout", "-k", "2", &secs, "ip", "netns", "exec", &self.name,
        ];
        full.extend_from_slice(args);
        Command::new(full[0])
            .args(&full[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{full:?}: {e}"))
    }

    /// Waits (bounded) until bridge port `port` forwards and the bridge is up: a new bridge
    /// drops frames for about a second.
    pub fn wait_forwarding(&self, port: &str) {
        let state = format!("/sys/class/net/{port}/brport/state");
        let start = Instant::now();
        loop {
            let out = self.run(&["cat", &state, "/sys/class/net/br0/operstate"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.split_whitespace().collect::<Vec<_>>() == ["3", "up"] {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "bridge port {port} not forwarding: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), signal);
            }
            let start = Instant::now();
            while !self.pids().is_empty() && start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The server namespace and the client namespace, joined by a veth pair; clients use `br0`.
pub struct Lab {
    pub srv: Netns,
    pub cli: Netns,
    pub dhcp: Option<Netns>,
    plain_dhcp: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.plain_dhcp.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Lab {
    /// `client_mac` is given to br0, the clients' interface.
    pub fn new(client_mac: &str) -> Lab {
        let srv = Netns::new("srv");
        let cli = Netns::new("cli");
        sh(&[
            "ip", "link", "add", "s0", "netns", &srv.name, "type", "veth", "peer", "name", "c0",
            "netns", &cli.name,
        ]);
        srv.run(&[
            "ip",
            "addr",
            "add",
            &format!("{SRV_IP}/{PREFIX}"),
            "dev",
            "s0",
        ]);
        srv.run(&["ip", "link", "set", "s0", "up"]);
        cli.run(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        cli.run(&["ip", "link", "set", "br0", "address", client_mac]);
        cli.run(&["ip", "link", "set", "c0", "master", "br0", "up"]);
        cli.run(&["ip", "link", "set", "br0", "up"]);
        cli.wait_forwarding("c0");
        // Checksum offload stays on (the default): frames reach netbootd's packet socket with
        // unfinished UDP checksums, as they do from virtio guests.
        Lab {
            srv,
            cli,
            dhcp: None,
            plain_dhcp: None,
        }
    }

    /// Gives the clients' bridge a static address (nmap and relay-style probes need one).
    pub fn cli_address(&self, cidr: &str) {
        self.cli.run(&["ip", "addr", "replace", cidr, "dev", "br0"]);
    }

    pub fn set_client_mac(&self, mac: &str) {
        self.cli.run(&["ip", "-4", "addr", "flush", "dev", "br0"]);
        self.cli.run(&["ip", "link", "set", "br0", "address", mac]);
    }

    /// A namespace for another DHCP server on the clients' segment: `p0`, 10.77.0.3/16,
    /// bridged into br0. It is `self.dhcp`.
    pub fn add_dhcp_segment(&mut self) -> &Netns {
        let ns = Netns::new("dhcp");
        sh(&[
            "ip",
            "link",
            "add",
            "p0",
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            "d0",
            "netns",
            &self.cli.name,
        ]);
        self.cli
            .run(&["ip", "link", "set", "d0", "master", "br0", "up"]);
        ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.0.3/{PREFIX}"),
            "dev",
            "p0",
        ]);
        ns.run(&["ip", "link", "set", "p0", "up"]);
        self.cli.wait_forwarding("d0");
        self.dhcp.insert(ns)
    }

    /// An address-only DHCP server (busybox udhcpd, 10.77.3.10-200) on the clients' segment.
    pub fn start_plain_dhcp(&mut self, dir: &Path) {
        self.start_plain_dhcp_with(dir, "");
    }

    /// [`Lab::start_plain_dhcp`] with more lines for udhcpd.conf (`siaddr 10.77.0.1`: the
    /// site's server names a next server in its own replies).
    pub fn start_plain_dhcp_with(&mut self, dir: &Path, more: &str) {
        self.add_dhcp_segment();
        let ns = self.dhcp.as_ref().unwrap();
        let conf = dir.join("udhcpd.conf");
        let leases = dir.join("udhcpd.leases");
        std::fs::write(&leases, "").unwrap();
        std::fs::write(
            &conf,
            format!(
                "interface p0\nstart 10.77.3.10\nend 10.77.3.200\nmax_leases 190\n\
                 lease_file {}\noption subnet 255.255.0.0\noption router {SRV_IP}\noption lease 3600\n{more}",
                leases.display()
            ),
        )
        .unwrap();
        let child = ns
            .command(&["busybox", "udhcpd", "-f", conf.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("udhcpd starts");
        self.plain_dhcp = Some(child);
        let start = Instant::now();
        loop {
            let out = ns.run(&["ss", "-lun"]);
            if String::from_utf8_lossy(&out.stdout).contains(":67 ") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "udhcpd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// busybox udhcpc in the foreground on br0: one lease, 3 tries a second apart, `hook` as its
/// script.
pub fn udhcpc_args(hook: &Path) -> Vec<&str> {
    vec![
        "busybox",
        "udhcpc",
        "-f",
        "-q",
        "-n",
        "-t",
        "3",
        "-T",
        "1",
        "-i",
        "br0",
        "-s",
        hook.to_str().unwrap(),
    ]
}

/// Writes the hook that dhclient, udhcpc and dhcpcd call: it appends the client's variables to
/// `hook.env` and applies the address inside the client namespace only.
pub fn write_hook(dir: &super::TempDir) -> std::path::PathBuf {
    let env = dir.path("hook.env");
    let hook = dir.write(
        "hook.sh",
        &format!(
            "#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nev=${{reason:-$1}}\n\
             {{ echo \"event=$ev\"; env | sort; }} >> {env}\n\
             case $ev in\n\
               BOUND|RENEW|REBIND|REBOOT) ip addr replace \"$new_ip_address/$new_subnet_mask\" dev \"$interface\" ;;\n\
               bound|renew) ip addr replace \"$ip/$mask\" dev \"$interface\" ;;\n\
             esac\nexit 0\n",
            env = env.display()
        ),
    );
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hook
}

pub fn hook_env(dir: &super::TempDir) -> String {
    std::fs::read_to_string(dir.path("hook.env")).unwrap_or_default()
}

/// The body of `http://10.77.0.1:8080<path>` (netbootd's HTTP), fetched from the client's
/// namespace.
pub fn get_from_client(lab: &Lab, path: &str) -> String {
    let url = format!("http://{SRV_IP}:8080{path}");
    let out = lab.cli.run(&["curl", "-sS", "--max-time", "5", &url]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
