//! What a configuration reload (SIGHUP) may change in a running server. Pure: from the running
//! settings and config and a freshly loaded pair it works out the config to run on next and
//! every change, each either applied or kept back until a restart.
//!
//! Applied at once: whatever is read per request or per transfer — the log level, addresses
//! and URLs put in replies, iPXE binaries per architecture, TFTP limits, iPXE script settings,
//! the iPXE and assets directories, boot profiles and the hardware file. Kept until a restart:
//! what was fixed when the sockets were bound and root was given up — which services run, the
//! DHCP mode and interface, listen addresses and ports, TFTP single-port, user, group and
//! state directory. A reload never half-applies one of those.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use super::{Config, DhcpMode, Key, LogFormat, LogOutput, Settings};
use crate::value;

/// One option whose value differs between the running and the reloaded configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub option: String,
    pub old: String,
    pub new: String,
    /// Where the new value comes from: `netbootd.toml:3: dhcp.mode`, `--tftp-port (default)`.
    pub origin: String,
}

impl Change {
    /// `tftp-block-size: "512" -> "1468" (netbootd.toml:9: tftp.block-size)`
    pub fn describe(&self) -> String {
        format!(
            "{}: {:?} -> {:?} ({})",
            self.option, self.old, self.new, self.origin
        )
    }
}

/// The outcome of comparing a reloaded configuration with the running one.
#[derive(Debug)]
pub struct Reconciled {
    /// The reloaded configuration with every restart-only value put back to the running one.
    pub config: Config,
    pub applied: Vec<Change>,
    /// Changed in the file (or the environment) but not applied: the process must restart.
    pub needs_restart: Vec<Change>,
}

impl Reconciled {
    pub fn unchanged(&self) -> bool {
        self.applied.is_empty() && self.needs_restart.is_empty()
    }
}

/// How a restart-only value is shown in a message.
trait Shown {
    fn shown(&self) -> String;
}

macro_rules! shown_by_display {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
shown_by_display!(bool, u16, Ipv4Addr, SocketAddrV4);

impl Shown for DhcpMode {
    fn shown(&self) -> String {
        self.as_str().to_string()
    }
}

impl Shown for LogFormat {
    fn shown(&self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }
}

impl Shown for LogOutput {
    fn shown(&self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }
}

impl Shown for Option<String> {
    fn shown(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

impl Shown for PathBuf {
    fn shown(&self) -> String {
        self.display().to_string()
    }
}

/// The options fixed when the sockets were bound and root was given up: each row is the
/// option and its field in [`Config`]. From this one table come [`RESTART_ONLY`] and
/// [`keep_running`].
macro_rules! restart_only {
    ($($option:ident => $($field:ident).+;)*) => {
        const RESTART_ONLY: &[Key] = &[$(Key::$option),*];

        /// Puts every restart-only value of `new` that differs back to the running one, and
        /// reports it: the service keeps running on the value its socket was bound with.
        fn keep_running(running: &Config, new: &mut Config, new_settings: &Settings) -> Vec<Change> {
            let mut needs_restart = Vec::new();
            $(
                if new.$($field).+ != running.$($field).+ {
                    needs_restart.push(Change {
                        option: Key::$option.name(),
                        old: running.$($field).+.shown(),
                        new: new.$($field).+.shown(),
                        origin: new_settings.get(Key::$option).origin(),
                    });
                    new.$($field).+ = running.$($field).+.clone();
                }
            )*
            needs_restart
        }
    };
}

restart_only! {
    dhcp_enabled => dhcp.enabled;
    dhcp_mode => dhcp.mode;
    dhcp_addr => dhcp.addr;
    dhcp_iface => dhcp.iface;
    tftp_enabled => tftp.enabled;
    tftp_addr => tftp.addr;
    tftp_port => tftp.port;
    tftp_single_port => tftp.single_port;
    http_ipxe_binary_enabled => http.ipxe_binary_enabled;
    http_ipxe_script_enabled => http.ipxe_script_enabled;
    http_addr => http.addr;
    http_port => http.port;
    syslog_enabled => syslog.enabled;
    syslog_addr => syslog.addr;
    syslog_port => syslog.port;
    user => user;
    group => group;
    state_dir => state_dir;
    log_format => log_format;
    log_output => log_output;
}

/// Compares `new` with what is running. Restart-only values in `new` are put back to the
/// running ones and reported in `needs_restart`; every other option that changed is reported in
/// `applied`, as are "auto" addresses that now resolve differently and boot profiles.
pub fn reconcile(
    running_settings: &Settings,
    running: &Config,
    new_settings: &Settings,
    mut new: Config,
) -> Reconciled {
    let needs_restart = keep_running(running, &mut new, new_settings);
    let mut applied = changed_settings(running_settings, new_settings);
    let followed = followed_the_host(running, &new, new_settings, &applied);
    applied.extend(followed);
    applied.extend(profile_changes(running, &new));
    Reconciled {
        config: new,
        applied,
        needs_restart,
    }
}

/// Every option whose value changed, less the restart-only ones.
fn changed_settings(running_settings: &Settings, new_settings: &Settings) -> Vec<Change> {
    new_settings
        .list
        .iter()
        .zip(&running_settings.list)
        .filter(|(new, old)| new.value != old.value)
        .filter(|(new, _)| {
            !RESTART_ONLY
                .iter()
                .any(|key| key.spec().field == new.spec.field)
        })
        .map(|(new, old)| Change {
            option: new.spec.name(),
            old: value::redact_url(&old.value),
            new: value::redact_url(&new.value),
            origin: new.origin(),
        })
        .collect()
}

/// Values that changed without their setting changing: "auto" addresses that resolve
/// differently now, and the iPXE directory found again among the default places. `already`
/// holds the changes reported so far.
fn followed_the_host(
    running: &Config,
    new: &Config,
    new_settings: &Settings,
    already: &[Change],
) -> Vec<Change> {
    let origin = |option: Key| new_settings.get(option).origin();
    let mut out = Vec::new();
    // "auto" addresses follow the interface: the same setting can mean a new address.
    let resolved = [
        (
            Key::dhcp_ip_for_packet,
            running.dhcp.ip_for_packet,
            new.dhcp.ip_for_packet,
        ),
        (
            Key::dhcp_syslog_ip,
            running.dhcp.syslog_ip,
            new.dhcp.syslog_ip,
        ),
        (Key::dhcp_tftp_ip, running.dhcp.tftp_ip, new.dhcp.tftp_ip),
    ];
    for (option, old, now) in resolved {
        if old != now
            && !already
                .iter()
                .chain(&out)
                .any(|c| c.option == option.name())
        {
            out.push(Change {
                option: option.name(),
                old: old.to_string(),
                new: now.to_string(),
                origin: format!("{} resolved again", origin(option)),
            });
        }
    }
    if running.ipxe_dir != new.ipxe_dir
        && !already
            .iter()
            .chain(&out)
            .any(|c| c.option == Key::ipxe_dir.name())
    {
        let dir = |d: &Option<PathBuf>| d.as_ref().map(|d| d.shown()).unwrap_or_default();
        out.push(Change {
            option: Key::ipxe_dir.name(),
            old: dir(&running.ipxe_dir),
            new: dir(&new.ipxe_dir),
            origin: "found again among the default directories".into(),
        });
    }

    out
}

/// Boot profiles added, removed or changed.
fn profile_changes(running: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    let profile = |p: Option<&crate::inventory::BootProfile>| match p {
        None => "(none)".to_string(),
        Some(p) => format!(
            "kernel={} initrd={} cmdline={}",
            p.kernel,
            p.initrd.join(","),
            p.cmdline
        ),
    };
    let names = running.profiles.keys().chain(new.profiles.keys());
    let mut seen = std::collections::BTreeSet::new();
    for name in names.filter(|n| seen.insert(n.as_str())) {
        let (old, now) = (running.profiles.get(name), new.profiles.get(name));
        if old != now {
            out.push(Change {
                option: format!("profiles.{name}"),
                old: profile(old),
                new: profile(now),
                origin: "the config file".into(),
            });
        }
    }

    out
}
