//! The inventory of machines: the model (every field of Smee's `hardware.yaml` plus netbootd's
//! boot profiles), the YAML and TOML readers, validation with file/line/MAC/field messages,
//! indexes by MAC and IP, and [`InventoryStore`], which swaps whole snapshots on reload;
//! [`smd`] builds the same model from OpenCHAMI SMD's collections (feature `remote`), naming
//! machines by [`hostname`] patterns, and [`json`] from the hardware file's shape in JSON.
//!
//! Everything here is pure: [`crate::io::files::load_inventory`] reads the file.

pub mod doc;
pub mod hostname;
#[cfg(feature = "remote")]
pub mod json;
#[cfg(feature = "remote")]
pub mod kube;
#[cfg(feature = "remote")]
pub mod pixiecore;
mod record;
#[cfg(feature = "remote")]
pub mod smd;
mod store;
pub mod toml;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub use record::boot_profile;
pub use store::InventoryStore;

use crate::wire::MacAddr;

/// The formats a hardware file can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    /// TOML for `*.toml`, YAML for everything else (`hardware.yaml`, `.yml`, no extension).
    pub fn for_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Format::Toml,
            _ => Format::Yaml,
        }
    }
}

/// Lease time given to machines whose record has none (Smee sends 0, which makes clients
/// renew in a loop: a DHCP flood).
pub const DEFAULT_LEASE_TIME: u32 = 86400;

/// One machine, as validated. Field names follow Smee's `hardware.yaml`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Machine {
    pub mac: MacAddr,
    pub ip_address: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub default_gateway: Option<Ipv4Addr>,
    pub name_servers: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain_name: Option<String>,
    pub broadcast_address: Option<Ipv4Addr>,
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Seconds; never 0 (see [`DEFAULT_LEASE_TIME`]).
    pub lease_time: u32,
    pub domain_search: Vec<String>,
    /// netbootd's own (Tinkerbell's `classless_static_routes`): option 121, as (destination,
    /// prefix width, router).
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    pub vlan_id: Option<u16>,
    pub arch: Option<String>,
    /// A remote source's own name for the machine (SMD's xname) and number (its NID), for
    /// `--ipxe-script-url-template`.
    pub xname: Option<String>,
    pub nid: Option<u64>,
    /// Addresses on other networks (a remote source may hold one per network): a request from
    /// a network one of them lies in is given that one instead of `ip_address`.
    pub other_addresses: Vec<Addressing>,
    pub disabled: bool,
    pub netboot: Netboot,
    /// netbootd's own: what to boot when there is no per-machine iPXE script.
    pub boot: Option<Boot>,
}

/// Smee's `netboot` section.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Netboot {
    pub allow_pxe: bool,
    pub ipxe_script_url: Option<String>,
    pub ipxe_script: Option<String>,
    pub facility: Option<String>,
    pub console: Option<String>,
    /// netbootd's own: the iPXE binary this machine's firmware gets, whatever its architecture.
    pub ipxe_binary: Option<String>,
    /// netbootd's own: which boot loader the firmware gets (`None`: `--dhcp-loaders` by
    /// architecture, else iPXE).
    pub loader: Option<Loader>,
    /// netbootd's own (Tinkerbell's `netboot.osie`): the Hook script's download URL, kernel and
    /// initrd file names instead of `--osie-url`'s and the defaults.
    pub osie_base_url: Option<String>,
    pub osie_kernel: Option<String>,
    pub osie_initrd: Option<String>,
}

/// The boot loader a machine's firmware is given: iPXE, which runs the machine's script, or
/// GRUB (through shim under Secure Boot), which reads its `grub.cfg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    Ipxe,
    Grub,
}

/// A kernel, its initrds and command line. A kernel or initrd is either an absolute URL
/// (http, https, tftp) or a path below `--assets-dir` (served at `/assets/<path>`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BootProfile {
    pub kernel: String,
    pub initrd: Vec<String>,
    pub cmdline: String,
}

/// A machine's boot settings: a named profile from the config, with the machine's own
/// `kernel`, `initrd` and `cmdline` overriding it field by field. Resolved when loaded.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Boot {
    pub profile: Option<String>,
    pub resolved: BootProfile,
}

/// An address with the settings of its network.
#[derive(Clone, Debug, PartialEq)]
pub struct Addressing {
    pub ip_address: Ipv4Addr,
    pub subnet_mask: Ipv4Addr,
    pub default_gateway: Option<Ipv4Addr>,
    pub name_servers: Vec<Ipv4Addr>,
    pub domain_name: Option<String>,
    pub lease_time: u32,
}

/// Do `a` and `b` lie in the same network under `mask`?
fn same_network(a: Ipv4Addr, b: Ipv4Addr, mask: Ipv4Addr) -> bool {
    let mask = u32::from(mask);
    u32::from(a) & mask == u32::from(b) & mask
}

impl Machine {
    /// Will this machine be given boot information?
    pub fn netboots(&self) -> bool {
        self.netboot.allow_pxe && !self.disabled
    }

    /// This machine as seen from the network `network` lies in (a relay's giaddr, or the
    /// server's address on the interface the request came in on): the machine with that
    /// network's address when one of its other addresses lies there, else `None` (its own
    /// address stands; coresmd always offers the first).
    pub fn on_network(&self, network: Ipv4Addr) -> Option<Machine> {
        let own_fits = match (self.ip_address, self.subnet_mask) {
            (Some(ip), Some(mask)) => same_network(ip, network, mask),
            _ => true,
        };
        if own_fits {
            return None;
        }
        let other = self
            .other_addresses
            .iter()
            .find(|a| same_network(a.ip_address, network, a.subnet_mask))?;
        Some(Machine {
            ip_address: Some(other.ip_address),
            subnet_mask: Some(other.subnet_mask),
            default_gateway: other.default_gateway,
            name_servers: other.name_servers.clone(),
            domain_name: other.domain_name.clone(),
            lease_time: other.lease_time,
            broadcast_address: None,
            ..self.clone()
        })
    }
}

/// Named boot profiles from the config file, shared by many machines.
pub type Profiles = BTreeMap<String, BootProfile>;

/// What a remote source that holds only addresses (SMD) does not say about a subnet: the
/// config file's `[subnets.NAME]` tables.
#[derive(Clone, Debug, PartialEq)]
pub struct SubnetSettings {
    /// The table's name (`[subnets.NAME]`): SMD addresses whose `Network` is this name take
    /// these settings.
    pub name: String,
    pub cidr: crate::value::Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub name_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: Option<u32>,
}

/// By name (`[subnets.NAME]`).
pub type Subnets = BTreeMap<String, SubnetSettings>;

/// A message about the inventory, naming where it applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub mac: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: no line to name (a file that cannot be opened, an object from an API).
        match self.line {
            0 => write!(f, "{}: ", self.file)?,
            line => write!(f, "{}:{line}: ", self.file)?,
        }
        if let Some(mac) = &self.mac {
            write!(f, "{mac}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A validated, immutable set of machines with its indexes.
#[derive(Debug, Default)]
pub struct Inventory {
    machines: Vec<Machine>,
    by_mac: HashMap<MacAddr, usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    /// A remote source has no usable snapshot (none yet, or too old to answer from): a MAC
    /// that is not here may be known there, so it is not treated as unknown.
    pending: bool,
    /// Two sources served as one (the hardware file over a remote source): the fields above
    /// are empty and every look-up goes to the layers.
    layers: Option<Box<Layers>>,
}

/// The hardware file's machines over a remote source's: a machine of the lower layer whose
/// MAC or any address the upper one holds is hidden (the file entry wins).
#[derive(Debug)]
struct Layers {
    upper: Arc<Inventory>,
    lower: Arc<Inventory>,
    /// Lower machines hidden by the upper layer.
    hidden: usize,
    hidden_netboot: usize,
}

/// A machine two sources both hold, by MAC or by address: the upper one is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clash {
    pub mac: MacAddr,
    /// The address both hold, when they clash by address (with another MAC).
    pub ip: Option<Ipv4Addr>,
    pub upper_mac: MacAddr,
}

impl fmt::Display for Clash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            None => write!(
                f,
                "{}: in both the hardware file and the remote source; the file entry is served",
                self.mac
            ),
            Some(ip) => write!(
                f,
                "{}: its address {ip} belongs to {} in the hardware file; not served",
                self.mac, self.upper_mac
            ),
        }
    }
}

impl Inventory {
    /// Builds the indexes. The caller has already refused duplicate MACs and IPs.
    fn new(machines: Vec<Machine>) -> Inventory {
        let by_mac = machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.mac, i))
            .collect();
        let by_ip = machines
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                let others = m.other_addresses.iter().map(|a| a.ip_address);
                m.ip_address
                    .into_iter()
                    .chain(others)
                    .map(move |ip| (ip, i))
            })
            .collect();
        Inventory {
            machines,
            by_mac,
            by_ip,
            pending: false,
            layers: None,
        }
    }

    /// `upper` (the hardware file) served over `lower` (a remote source), with what clashes.
    pub fn layered(upper: Arc<Inventory>, lower: Arc<Inventory>) -> (Inventory, Vec<Clash>) {
        let mut clashes = Vec::new();
        let (mut hidden, mut hidden_netboot) = (0, 0);
        for m in lower.machines() {
            let clash = Layers::clash(&upper, m);
            if let Some(clash) = clash {
                hidden += 1;
                hidden_netboot += usize::from(m.netboots());
                clashes.push(clash);
            }
        }
        let layers = Layers {
            upper,
            lower,
            hidden,
            hidden_netboot,
        };
        let inventory = Inventory {
            layers: Some(Box::new(layers)),
            ..Inventory::default()
        };
        (inventory, clashes)
    }

    /// This inventory with `extra` machines added (a remote source's look-up of a MAC that was
    /// missing). A machine whose MAC or address is already here is not added: returned apart.
    pub fn with_added(&self, extra: Vec<Machine>) -> (Inventory, Vec<Machine>) {
        let mut machines = self.machines.clone();
        let mut refused = Vec::new();
        for m in extra {
            let clash = self.by_mac(m.mac).is_some()
                || m.ip_address.is_some_and(|ip| self.by_ip(ip).is_some())
                || machines[self.machines.len()..].iter().any(|n| {
                    n.mac == m.mac || (n.ip_address.is_some() && n.ip_address == m.ip_address)
                });
            if clash {
                refused.push(m);
            } else {
                machines.push(m);
            }
        }
        let mut inventory = Inventory::new(machines);
        inventory.pending = self.pending;
        (inventory, refused)
    }

    /// This inventory without the machines of `macs` (a per-MAC source's answers that
    /// expired). Not for layered inventories.
    pub fn without(&self, macs: &[MacAddr]) -> Inventory {
        let machines = self
            .machines
            .iter()
            .filter(|m| !macs.contains(&m.mac))
            .cloned()
            .collect();
        let mut inventory = Inventory::new(machines);
        inventory.pending = self.pending;
        inventory
    }

    /// An empty inventory standing in for a remote source that has no usable snapshot.
    pub fn pending() -> Inventory {
        Inventory {
            pending: true,
            ..Inventory::default()
        }
    }

    /// True when a MAC not found here may still be a known machine (see [`Inventory::pending`]).
    pub fn is_pending(&self) -> bool {
        match &self.layers {
            Some(l) => l.upper.is_pending() || l.lower.is_pending(),
            None => self.pending,
        }
    }

    pub fn by_mac(&self, mac: MacAddr) -> Option<&Machine> {
        match &self.layers {
            Some(l) => l
                .upper
                .by_mac(mac)
                .or_else(|| l.visible(l.lower.by_mac(mac)?)),
            None => self.by_mac.get(&mac).map(|&i| &self.machines[i]),
        }
    }

    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Machine> {
        match &self.layers {
            Some(l) => l.upper.by_ip(ip).or_else(|| l.visible(l.lower.by_ip(ip)?)),
            None => self.by_ip.get(&ip).map(|&i| &self.machines[i]),
        }
    }

    /// Every machine served (with layers: the upper ones, then the lower ones not hidden).
    pub fn machines(&self) -> Box<dyn Iterator<Item = &Machine> + '_> {
        match &self.layers {
            Some(l) => Box::new(
                l.upper
                    .machines()
                    .chain(l.lower.machines().filter(|m| l.visible(m).is_some())),
            ),
            None => Box::new(self.machines.iter()),
        }
    }

    pub fn len(&self) -> usize {
        match &self.layers {
            Some(l) => l.upper.len() + l.lower.len() - l.hidden,
            None => self.machines.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn netboot_count(&self) -> usize {
        match &self.layers {
            Some(l) => l.upper.netboot_count() + l.lower.netboot_count() - l.hidden_netboot,
            None => self.machines.iter().filter(|m| m.netboots()).count(),
        }
    }

    /// What changed from `old` to `self`: (added, removed, changed) machine counts (of
    /// inventories read from one source, not layered).
    pub fn diff(&self, old: &Inventory) -> (usize, usize, usize) {
        let added = self
            .machines
            .iter()
            .filter(|m| old.by_mac(m.mac).is_none())
            .count();
        let removed = old
            .machines
            .iter()
            .filter(|m| self.by_mac(m.mac).is_none())
            .count();
        let changed = self
            .machines
            .iter()
            .filter(|m| old.by_mac(m.mac).is_some_and(|o| o != *m))
            .count();
        (added, removed, changed)
    }
}

impl Layers {
    /// Why the upper layer hides `m` of the lower one, if it does.
    fn clash(upper: &Inventory, m: &Machine) -> Option<Clash> {
        if upper.by_mac(m.mac).is_some() {
            return Some(Clash {
                mac: m.mac,
                ip: None,
                upper_mac: m.mac,
            });
        }
        let others = m.other_addresses.iter().map(|a| a.ip_address);
        m.ip_address.into_iter().chain(others).find_map(|ip| {
            upper.by_ip(ip).map(|owner| Clash {
                mac: m.mac,
                ip: Some(ip),
                upper_mac: owner.mac,
            })
        })
    }

    /// `m` of the lower layer, unless the upper one hides it.
    fn visible<'a>(&self, m: &'a Machine) -> Option<&'a Machine> {
        Layers::clash(&self.upper, m).is_none().then_some(m)
    }
}

/// A usable file: the good machines, the warnings, and the records left out for an error.
#[derive(Debug, Default)]
pub struct Loaded {
    pub inventory: Inventory,
    pub warnings: Vec<Problem>,
    /// Each error (file, line, MAC, field); every record with one is left out.
    pub errors: Vec<Problem>,
    /// How many records were left out.
    pub refused: usize,
}

impl Loaded {
    /// `--strict` (and the config file's profiles): any record with an error refuses the
    /// whole file, as before per-record validation.
    pub fn strict(self, strict: bool) -> Result<Loaded, Vec<Problem>> {
        if strict && !self.errors.is_empty() {
            Err(self.errors)
        } else {
            Ok(self)
        }
    }
}

/// Parses and validates hardware-file text. `file` is only used in messages. A file that
/// does not parse (or is not a map of machines) is `Err`; a record with an error is left out
/// and its errors listed in [`Loaded::errors`] (up to a cap), so that one `netbootd check`
/// run shows everything to fix while the good records serve.
pub fn load_str(
    text: &str,
    format: Format,
    file: &str,
    profiles: &Profiles,
) -> Result<Loaded, Vec<Problem>> {
    let syntax_error = |e: doc::DocError| {
        let message = e.message;
        vec![Problem {
            file: file.to_string(),
            line: e.line,
            mac: None,
            field: None,
            message,
        }]
    };
    let mut checker = record::Checker::new(file, profiles);
    let mut machines = Vec::new();
    let rest = match format {
        // Machines are validated as the parser completes them (see yaml::parse_streaming).
        Format::Yaml => yaml::parse_streaming(text, &mut |entry| {
            machines.extend(checker.top_entry(&entry, format))
        }),
        Format::Toml => toml::parse(text),
    }
    .map_err(syntax_error)?;
    machines.extend(checker.machines(&rest, format));
    checker.finish(machines).map(|checked| Loaded {
        inventory: Inventory::new(checked.machines),
        warnings: checked.warnings,
        errors: checked.errors,
        refused: checked.refused,
    })
}

#[cfg(test)]
mod tests;
