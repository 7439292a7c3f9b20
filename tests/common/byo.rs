//! The site's own DHCP server for the bring-your-own-DHCP tests (tests/byo_dhcp.rs,
//! tests/boot.rs): dnsmasq (Debian's dnsmasq-base), Kea's kea-dhcp4 and ISC dhcpd (both
//! unpacked from Debian's packages by `tests/tools/unpack-dhcp-servers.sh`, never installed
//! as services). Each runs in a namespace of the test's, on the configuration that
//! `netbootd byo-dhcp` generated, wrapped only in what a site adds itself (the interface,
//! the lease file, the subnet), and is stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::{peer, TempDir, BIN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Dnsmasq,
    /// dnsmasq as ProxyDHCP beside another server (busybox udhcpd: the router).
    DnsmasqProxy,
    Kea,
    Isc,
}

impl Peer {
    /// The argument of `netbootd byo-dhcp`.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Dnsmasq => "dnsmasq",
            Peer::DnsmasqProxy => "dnsmasq-proxy",
            Peer::Kea => "kea",
            Peer::Isc => "isc",
        }
    }

    /// What its log says when it acknowledged `ip` to `mac`.
    pub fn ack_line(self, ip: &str, mac: &str) -> Vec<String> {
        match self {
            Peer::Dnsmasq => vec![format!("DHCPACK(p0) {ip} {mac}")],
            Peer::DnsmasqProxy => vec![format!("PXE(s0) {mac}")],
            Peer::Kea => vec!["DHCP4_LEASE_ALLOC".into(), mac.into(), ip.into()],
            Peer::Isc => vec![format!("DHCPACK on {ip} to {mac}")],
        }
    }
}

pub fn kea_dhcp4() -> PathBuf {
    peer("NETBOOTD_KEA_DHCP4", "kea/usr/sbin/kea-dhcp4")
}

pub fn isc_dhcpd() -> PathBuf {
    peer("NETBOOTD_ISC_DHCPD", "isc/usr/sbin/dhcpd")
}

/// The servers must be there when the test is run on purpose (never a silent pass).
pub fn need_servers(test: &str) {
    for p in [kea_dhcp4(), isc_dhcpd()] {
        assert!(
            p.is_file(),
            "{test}: {} is missing: run tests/tools/unpack-dhcp-servers.sh target/peers (tests/run.sh does)",
            p.display()
        );
    }
    super::need_tools(test, &["dnsmasq"]);
}

/// `netbootd byo-dhcp <peer> <args>` run in `ns` (where "auto" finds the server's address),
/// its output written to `dir` and returned with its path.
pub fn generate(peer: Peer, ns: &Netns, args: &[&str], dir: &TempDir) -> (PathBuf, String) {
    let out = ns
        .command(&[BIN, "byo-dhcp", peer.name()])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("netbootd byo-dhcp runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "byo-dhcp {}: {}{text}",
        peer.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.write(&format!("netbootd-{}.conf", peer.name()), &text);
    (path, text)
}

/// A running DHCP server; killed by PID when dropped.
pub struct DhcpServer {
    child: Child,
    pub log: PathBuf,
}

impl Drop for DhcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Addresses the site's server gives machines it has no reservation for (Kea and ISC).
pub const SITE_POOL: (&str, &str) = ("10.77.4.10", "10.77.4.200");

impl DhcpServer {
    /// Starts `peer` in `ns` on `iface` with the generated configuration `generated`.
    pub fn start(
        peer: Peer,
        ns: &Netns,
        iface: &str,
        generated: &Path,
        dir: &TempDir,
    ) -> DhcpServer {
        let log = dir.path(&format!("{}.log", peer.name()));
        let gen = generated.display().to_string();
        let args: Vec<String> = match peer {
            Peer::Dnsmasq | Peer::DnsmasqProxy => [
                "dnsmasq",
                "-k",
                "--port=0",
                "--pid-file=",
                "--log-facility=-",
                "--log-dhcp",
                "--bind-interfaces",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([
                format!("--interface={iface}"),
                format!("--conf-file={gen}"),
                format!("--dhcp-leasefile={}", dir.path("dnsmasq.leases").display()),
            ])
            .collect(),
            Peer::Kea => {
                // The generated members first (they end with a comma), then the site's own.
                let config = dir.write(
                    "kea-dhcp4.conf",
                    &format!(
                        "{{ \"Dhcp4\": {{\n<?include \"{gen}\"?>\n\
                         \"interfaces-config\": {{ \"interfaces\": [ \"{iface}\" ] }},\n\
                         \"lease-database\": {{ \"type\": \"memfile\", \"persist\": false }},\n\
                         \"valid-lifetime\": 600,\n\
                         \"subnet4\": [ {{ \"id\": 1, \"subnet\": \"10.77.0.0/16\", \"pools\": [ {{ \"pool\": \"{}-{}\" }} ] }} ],\n\
                         \"loggers\": [ {{ \"name\": \"kea-dhcp4\", \"severity\": \"INFO\", \"output_options\": [ {{ \"output\": \"stdout\" }} ] }} ]\n}} }}\n",
                        SITE_POOL.0, SITE_POOL.1
                    ),
                );
                vec![
                    kea_dhcp4().display().to_string(),
                    "-c".into(),
                    config.display().to_string(),
                ]
            }
            Peer::Isc => {
                let config = dir.write(
                    "dhcpd.conf",
                    &format!(
                        "authoritative;\ndefault-lease-time 600;\nmax-lease-time 600;\n\
                         subnet 10.77.0.0 netmask 255.255.0.0 {{\n  range {} {};\n}}\n\
                         include \"{gen}\";\n",
                        SITE_POOL.0, SITE_POOL.1
                    ),
                );
                let leases = dir.write("dhcpd.leases", "");
                vec![
                    isc_dhcpd().display().to_string(),
                    "-f".into(),
                    "-d".into(),
                    "-4".into(),
                    "-cf".into(),
                    config.display().to_string(),
                    "-lf".into(),
                    leases.display().to_string(),
                    "-pf".into(),
                    dir.path("dhcpd.pid").display().to_string(),
                    iface.into(),
                ]
            }
        };
        let out = std::fs::File::create(&log).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = ns
            .command(&args)
            .env("KEA_PIDFILE_DIR", &dir.0)
            .env("KEA_LOCKFILE_DIR", &dir.0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let mut server = DhcpServer { child, log };
        server.wait_listening(ns);
        server
    }

    /// Until the server holds UDP port 67 (bounded); fails with its log if it stopped.
    fn wait_listening(&mut self, ns: &Netns) {
        let start = Instant::now();
        loop {
            let out = ns.run(&["ss", "-lun"]);
            if String::from_utf8_lossy(&out.stdout).contains(":67 ") {
                return;
            }
            let stopped = self.child.try_wait().unwrap().is_some();
            assert!(
                !stopped && start.elapsed() < Duration::from_secs(10),
                "the DHCP server did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first log line holding every needle, waiting up to `limit` for it.
    pub fn wait_for(&self, needles: &[String], limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log_text();
            if let Some(line) = log
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n.as_str())))
            {
                return line.to_string();
            }
            assert!(
                start.elapsed() < limit,
                "no server log line with {needles:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
