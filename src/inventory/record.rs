//! Validation of machine records: [`Node`] → [`Machine`], collecting every error and warning
//! with the file, line, MAC and field it concerns. Readers of one field accept what Smee
//! accepts (numbers where strings are expected, `yes`/`no` booleans); cross-field rules catch
//! what would break a network (duplicate MACs or IPs, non-contiguous masks, gateways outside
//! the subnet) and text that could break out of a DHCP option or an iPXE script line.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::doc::{normalize_key, Entry, Node, Value};
use super::Format;
use super::{Boot, BootProfile, Machine, Problem, Profiles, DEFAULT_LEASE_TIME};
use crate::value;
use crate::wire::MacAddr;

/// Errors reported before the rest are summarised.
const MAX_ERRORS: usize = 100;

mod tinkerbell;

const MACHINE_FIELDS: &[&str] = &[
    "mac",
    "ipAddress",
    "subnetMask",
    "defaultGateway",
    "nameServers",
    "hostname",
    "domainName",
    "broadcastAddress",
    "ntpServers",
    "leaseTime",
    "domainSearch",
    "classlessRoutes",
    "vlanID",
    "arch",
    "disabled",
    "netboot",
    "boot",
];
const NETBOOT_FIELDS: &[&str] = &[
    "allowPxe",
    "ipxeScriptUrl",
    "ipxeScript",
    "facility",
    "console",
    "ipxeBinary",
    "loader",
    "osieBaseUrl",
    "osieKernel",
    "osieInitrd",
];
const MACHINE_BOOT_FIELDS: &[&str] = &["profile", "kernel", "initrd", "cmdline"];
const PROFILE_FIELDS: &[&str] = &["kernel", "initrd", "cmdline"];

/// Where a value sits, for messages.
#[derive(Clone, Copy)]
struct At<'a> {
    node: &'a Node,
    mac: Option<&'a str>,
    field: &'a str,
}

/// The known fields found in one map, by canonical name.
struct Fields<'n> {
    found: Vec<(&'static str, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn node(&self, name: &str) -> Option<&'n Node> {
        self.found
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, node)| *node)
    }
}

/// What checking found: the good machines, warnings, and the errors that left records out.
pub(super) struct Checked {
    pub machines: Vec<Machine>,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
    pub refused: usize,
}

pub(super) struct Checker<'a> {
    file: &'a str,
    profiles: &'a Profiles,
    errors: Vec<Problem>,
    suppressed: usize,
    /// Records left out because of an error in them.
    refused: usize,
    /// An error that makes the whole file unusable (not a map of machines).
    fatal: bool,
    warnings: Vec<Problem>,
    mac_lines: HashMap<MacAddr, usize>,
    ip_owners: HashMap<Ipv4Addr, (MacAddr, usize)>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(file: &'a str, profiles: &'a Profiles) -> Checker<'a> {
        Checker {
            file,
            profiles,
            errors: Vec::new(),
            suppressed: 0,
            refused: 0,
            fatal: false,
            warnings: Vec::new(),
            mac_lines: HashMap::new(),
            ip_owners: HashMap::new(),
        }
    }

    /// The good machines, and every warning and error; `Err` when the file as a whole is
    /// unusable. Each error left its record out (counted in `refused`).
    pub(super) fn finish(mut self, machines: Vec<Machine>) -> Result<Checked, Vec<Problem>> {
        if self.suppressed > 0 {
            let line = self.errors.last().map_or(0, |p| p.line);
            let message = format!("{} more errors not shown", self.suppressed);
            self.errors.push(Problem {
                file: self.file.to_string(),
                line,
                mac: None,
                field: None,
                message,
            });
        }
        if self.fatal {
            return Err(self.errors);
        }
        Ok(Checked {
            machines,
            warnings: self.warnings,
            errors: self.errors,
            refused: self.refused,
        })
    }

    /// How many errors so far, shown or not: a record that adds one is left out.
    fn error_count(&self) -> usize {
        self.errors.len() + self.suppressed
    }

    fn problem(&self, line: usize, mac: Option<&str>, field: &str, message: String) -> Problem {
        let field = (!field.is_empty()).then(|| field.to_string());
        Problem {
            file: self.file.to_string(),
            line,
            mac: mac.map(str::to_string),
            field,
            message,
        }
    }

    fn error(&mut self, at: At, message: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.suppressed += 1;
            return;
        }
        let problem = self.problem(at.node.line, at.mac, at.field, message.into());
        self.errors.push(problem);
    }

    fn warn(&mut self, at: At, message: impl Into<String>) {
        let problem = self.problem(at.node.line, at.mac, at.field, message.into());
        self.warnings.push(problem);
    }

    /// The top level: Smee's map keyed by MAC (YAML), or `[[machine]]` tables with `mac` (TOML).
    pub(super) fn machines(&mut self, doc: &Node, format: Format) -> Vec<Machine> {
        let top = At {
            node: doc,
            mac: None,
            field: "",
        };
        let entries = match &doc.value {
            Value::Null => return Vec::new(),
            Value::Map(entries) => entries,
            // Tinkerbell's file backend: a list of Hardware objects.
            Value::List(items)
                if format == Format::Yaml
                    && items.iter().all(|i| matches!(i.value, Value::Map(_))) =>
            {
                return self.hardware_list(items)
            }
            _ => {
                self.error(top, "expected a map of machines keyed by MAC address, or a list of Tinkerbell Hardware objects");
                self.fatal = true;
                return Vec::new();
            }
        };
        entries
            .iter()
            .flat_map(|entry| self.top_entry(entry, format))
            .collect()
    }

    /// One entry of the top-level map: a machine keyed by MAC (YAML) or the `machine` tables.
    pub(super) fn top_entry(&mut self, entry: &Entry, format: Format) -> Vec<Machine> {
        let key_node = Node {
            line: entry.key_line,
            value: Value::Null,
        };
        match format {
            Format::Yaml => {
                let at = At {
                    node: &key_node,
                    mac: Some(&entry.key),
                    field: "",
                };
                let Some(mac) = self.mac(at, &entry.key) else {
                    self.refused += 1;
                    return Vec::new();
                };
                self.machine(mac, entry.key_line, &entry.value, format)
                    .into_iter()
                    .collect()
            }
            Format::Toml if normalize_key(&entry.key) == "machine" => {
                let tables = match &entry.value.value {
                    Value::List(items) => items.iter().collect(),
                    Value::Map(_) => vec![&entry.value],
                    _ => Vec::new(),
                };
                tables
                    .into_iter()
                    .filter_map(|table| {
                        let before = self.error_count();
                        let machine = self.toml_machine(table);
                        if machine.is_none() && self.error_count() > before {
                            self.refused += 1;
                        }
                        machine
                    })
                    .collect()
            }
            Format::Toml => {
                let at = At {
                    node: &key_node,
                    mac: None,
                    field: &entry.key,
                };
                self.warn(at, "unknown table ignored (machines go in [[machine]])");
                Vec::new()
            }
        }
    }

    fn toml_machine(&mut self, table: &Node) -> Option<Machine> {
        let mac_node = match &table.value {
            Value::Map(entries) => entries
                .iter()
                .find(|e| normalize_key(&e.key) == "mac")
                .map(|e| &e.value),
            _ => None,
        };
        let Some(mac_node) = mac_node else {
            self.error(
                At {
                    node: table,
                    mac: None,
                    field: "mac",
                },
                "[[machine]] needs a mac",
            );
            return None;
        };
        let text = self.text(At {
            node: mac_node,
            mac: None,
            field: "mac",
        })?;
        let mac = self.mac(
            At {
                node: mac_node,
                mac: Some(&text),
                field: "mac",
            },
            &text,
        )?;
        self.machine(mac, table.line, table, Format::Toml)
    }

    fn mac(&mut self, at: At, text: &str) -> Option<MacAddr> {
        let Some(mac) = MacAddr::parse(text.trim()) else {
            self.error(
                at,
                "not a MAC address (expected aa:bb:cc:dd:ee:ff, aa-bb-..., aabb.ccdd.eeff)",
            );
            return None;
        };
        if let Some(why) = not_a_machine_mac(mac) {
            self.error(at, format!("{mac} {why}: no machine has it"));
            return None;
        }
        if let Some(first) = self.mac_lines.insert(mac, at.node.line) {
            self.mac_lines.insert(mac, first);
            self.error(
                at,
                format!("duplicate MAC: {mac} is already defined at line {first}"),
            );
            return None;
        }
        Some(mac)
    }

    /// One record; `None` (and counted as refused, YAML) when it has an error: the other
    /// records still serve. Its address is then free for a later record.
    fn machine(
        &mut self,
        mac: MacAddr,
        line: usize,
        node: &Node,
        format: Format,
    ) -> Option<Machine> {
        let before = self.error_count();
        let machine = self.machine_fields(mac, line, node, format);
        if self.error_count() == before {
            return machine;
        }
        if let Some(ip) = machine.and_then(|m| m.ip_address) {
            if self
                .ip_owners
                .get(&ip)
                .is_some_and(|(owner, _)| *owner == mac)
            {
                self.ip_owners.remove(&ip);
            }
        }
        if format == Format::Yaml {
            self.refused += 1;
        }
        None
    }

    fn machine_fields(
        &mut self,
        mac: MacAddr,
        line: usize,
        node: &Node,
        format: Format,
    ) -> Option<Machine> {
        let mac_text = mac.to_string();
        let mac_s = Some(mac_text.as_str());
        let whole = At {
            node,
            mac: mac_s,
            field: "",
        };
        if node.value == Value::Null {
            self.warn(whole, "empty record");
        }
        let fields = self.fields(whole, MACHINE_FIELDS, "")?;
        let at = |name: &'static str| {
            fields.node(name).map(|n| At {
                node: n,
                mac: mac_s,
                field: name,
            })
        };
        let mut m = Machine {
            mac,
            lease_time: DEFAULT_LEASE_TIME,
            ..Machine::default()
        };

        if let (Some(at), Format::Yaml) = (at("mac"), format) {
            self.warn(at, "ignored: in hardware.yaml the MAC is the map key");
        }
        m.ip_address = at("ipAddress").and_then(|a| self.ipv4(a));
        m.subnet_mask = at("subnetMask").and_then(|a| self.ipv4(a));
        m.default_gateway = at("defaultGateway").and_then(|a| self.optional_ipv4(a));
        m.broadcast_address = at("broadcastAddress").and_then(|a| self.optional_ipv4(a));
        m.name_servers = at("nameServers")
            .map(|a| self.list(a, Self::tolerated_ipv4))
            .unwrap_or_default();
        m.ntp_servers = at("ntpServers")
            .map(|a| self.list(a, Self::tolerated_ipv4))
            .unwrap_or_default();
        m.hostname = at("hostname").and_then(|a| self.word(a));
        m.domain_name = at("domainName").and_then(|a| self.word(a));
        m.domain_search = at("domainSearch")
            .map(|a| self.list(a, Self::word))
            .unwrap_or_default();
        m.routes = at("classlessRoutes")
            .map(|a| self.list(a, Self::route))
            .unwrap_or_default();
        if let (Some(a), Some(gw)) = (at("classlessRoutes"), m.default_gateway) {
            if !m.routes.is_empty() && !m.routes.iter().any(|r| r.1 == 0) {
                self.warn(
                    a,
                    format!("a client that takes these routes (option 121) ignores defaultGateway (RFC 3442): add \"0.0.0.0/0 {gw}\" to keep its default route"),
                );
            }
        }
        m.arch = at("arch").and_then(|a| self.word(a));
        m.disabled = at("disabled")
            .and_then(|a| self.boolean(a))
            .unwrap_or(false);
        m.vlan_id = at("vlanID").and_then(|a| self.vlan(a));
        if let Some(a) = at("leaseTime") {
            m.lease_time = self.lease_time(a);
        }
        if let Some(a) = at("netboot") {
            self.netboot(a, &mut m);
        }
        m.boot = at("boot").and_then(|a| self.machine_boot(a));
        self.check_addresses(&m, line, &fields);
        Some(m)
    }

    /// The addressing rules that need several fields at once.
    fn check_addresses(&mut self, m: &Machine, line: usize, fields: &Fields) {
        let mac_text = m.mac.to_string();
        let mac = Some(mac_text.as_str());
        let line_node = Node {
            line,
            value: Value::Null,
        };
        let at = |name: &'static str| At {
            node: fields.node(name).unwrap_or(&line_node),
            mac,
            field: name,
        };
        let Some(ip) = m.ip_address else {
            if fields.node("ipAddress").is_none() {
                self.warn(
                    at("ipAddress"),
                    "no address: this machine gets boot information only in proxy modes",
                );
            }
            return;
        };
        if let Some(why) = not_a_host_address(ip) {
            self.error(at("ipAddress"), format!("{ip} {why}"));
            return;
        }
        if ip.is_loopback() {
            self.warn(
                at("ipAddress"),
                format!("{ip} is a loopback address: only a client on this host can have it"),
            );
        }
        if let Some((owner, owner_line)) = self.ip_owners.insert(ip, (m.mac, line)) {
            self.ip_owners.insert(ip, (owner, owner_line));
            self.error(
                at("ipAddress"),
                format!("duplicate IP: {ip} is already given to {owner} at line {owner_line}"),
            );
        }
        let Some(mask) = m.subnet_mask else {
            if fields.node("subnetMask").is_none() {
                self.error(at("subnetMask"), "required when ipAddress is set");
            }
            return;
        };
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            self.error(
                at("subnetMask"),
                format!("{mask} is not a contiguous netmask"),
            );
            return;
        }
        let network = u32::from(ip) & bits;
        let broadcast = network | !bits;
        if let Some(gw) = m.default_gateway {
            // A /31 (RFC 3021) or /32 is a routed point-to-point link: the gateway is outside.
            if u32::from(gw) & bits != network && bits.leading_ones() < 31 {
                self.error(
                    at("defaultGateway"),
                    format!(
                        "{gw} is outside the subnet {}/{}",
                        Ipv4Addr::from(network),
                        bits.leading_ones()
                    ),
                );
            } else if gw == ip {
                self.warn(at("defaultGateway"), "is the machine's own address");
            }
        }
        if let Some(b) = m.broadcast_address {
            if u32::from(b) != broadcast {
                self.warn(
                    at("broadcastAddress"),
                    format!(
                        "{b} is not the subnet's broadcast address {}",
                        Ipv4Addr::from(broadcast)
                    ),
                );
            }
        }
        if bits.leading_ones() <= 30 && (u32::from(ip) == network || u32::from(ip) == broadcast) {
            self.error(
                at("ipAddress"),
                format!("{ip} is the network or broadcast address of its subnet"),
            );
        }
    }

    fn netboot(&mut self, at: At, m: &mut Machine) {
        let Some(fields) = self.fields(at, NETBOOT_FIELDS, "netboot.") else {
            return;
        };
        let sub = |name: &'static str, full: &'static str| {
            fields.node(name).map(|n| At {
                node: n,
                mac: at.mac,
                field: full,
            })
        };
        let nb = &mut m.netboot;
        nb.allow_pxe = sub("allowPxe", "netboot.allowPxe")
            .and_then(|a| self.boolean(a))
            .unwrap_or(false);
        nb.ipxe_script_url =
            sub("ipxeScriptUrl", "netboot.ipxeScriptUrl").and_then(|a| self.url(a));
        nb.ipxe_script = sub("ipxeScript", "netboot.ipxeScript")
            .and_then(|a| self.text(a))
            .filter(|s| !s.is_empty());
        nb.facility = sub("facility", "netboot.facility").and_then(|a| self.word(a));
        nb.console = sub("console", "netboot.console").and_then(|a| self.line(a));
        nb.ipxe_binary = sub("ipxeBinary", "netboot.ipxeBinary")
            .and_then(|a| self.checked(a, |t| value::binary_name(t).map(|()| t.to_string())));
        nb.loader = sub("loader", "netboot.loader").and_then(|a| {
            self.checked(a, |t| match t {
                "ipxe" => Ok(super::Loader::Ipxe),
                "grub" => Ok(super::Loader::Grub),
                _ => Err("expected ipxe or grub".into()),
            })
        });
        nb.osie_base_url = sub("osieBaseUrl", "netboot.osieBaseUrl").and_then(|a| self.url(a));
        nb.osie_kernel = sub("osieKernel", "netboot.osieKernel").and_then(|a| self.word(a));
        nb.osie_initrd = sub("osieInitrd", "netboot.osieInitrd").and_then(|a| self.word(a));
        if let (Some(_), Some(_), Some(a)) = (
            &nb.ipxe_script_url,
            &nb.ipxe_script,
            sub("ipxeScript", "netboot.ipxeScript"),
        ) {
            self.warn(a, "ignored: ipxeScriptUrl is also set and wins");
        }
    }

    fn machine_boot(&mut self, at: At) -> Option<Boot> {
        let fields = self.fields(at, MACHINE_BOOT_FIELDS, "boot.")?;
        let (kernel, initrd, cmdline) = self.boot_parts(at, &fields);
        let profile_at = fields.node("profile").map(|n| At {
            node: n,
            mac: at.mac,
            field: "boot.profile",
        });
        let profile = profile_at.and_then(|a| self.word(a));
        let base = match (&profile, profile_at) {
            (Some(name), Some(a)) => match self.profiles.get(name) {
                Some(p) => p.clone(),
                None => {
                    let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
                    self.error(
                        a,
                        format!(
                            "unknown profile {name:?} (the config defines: {})",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    return None;
                }
            },
            _ => BootProfile::default(),
        };
        let resolved = BootProfile {
            kernel: kernel.unwrap_or(base.kernel),
            initrd: initrd.unwrap_or(base.initrd),
            cmdline: cmdline.unwrap_or(base.cmdline),
        };
        if resolved.kernel.is_empty() {
            self.error(at, "no kernel: set boot.kernel or boot.profile");
            return None;
        }
        Some(Boot { profile, resolved })
    }

    /// `kernel`, `initrd` (one or a list) and `cmdline`, as given (None when absent).
    fn boot_parts(
        &mut self,
        at: At,
        fields: &Fields,
    ) -> (Option<String>, Option<Vec<String>>, Option<String>) {
        let prefix = if at.field.is_empty() {
            String::new()
        } else {
            format!("{}.", at.field)
        };
        let names: Vec<String> = ["kernel", "initrd", "cmdline"]
            .iter()
            .map(|n| format!("{prefix}{n}"))
            .collect();
        let sub = |i: usize, name: &str| fields.node(name).map(|n| (n, i));
        let kernel = sub(0, "kernel").and_then(|(n, i)| {
            self.boot_source(At {
                node: n,
                mac: at.mac,
                field: &names[i],
            })
        });
        let initrd = sub(1, "initrd").map(|(n, i)| {
            let at = At {
                node: n,
                mac: at.mac,
                field: &names[i],
            };
            self.items(at)
                .into_iter()
                .filter_map(|item| self.boot_source(At { node: item, ..at }))
                .collect()
        });
        let cmdline = sub(2, "cmdline").and_then(|(n, i)| {
            self.line(At {
                node: n,
                mac: at.mac,
                field: &names[i],
            })
        });
        (kernel, initrd, cmdline)
    }

    /// Reads a map's known fields; warns about unknown ones and refuses duplicates.
    fn fields<'n>(
        &mut self,
        at: At<'n>,
        known: &[&'static str],
        prefix: &str,
    ) -> Option<Fields<'n>> {
        let entries = match &at.node.value {
            Value::Map(entries) => entries.as_slice(),
            Value::Null => &[],
            _ => {
                self.error(at, "expected a map of fields");
                return None;
            }
        };
        let mut found: Vec<(&'static str, &'n Node)> = Vec::new();
        for entry in entries {
            let key_at = At {
                node: &entry.value,
                mac: at.mac,
                field: &entry.key,
            };
            let wanted = normalize_key(&entry.key);
            match known.iter().find(|k| normalize_key(k) == wanted) {
                None => {
                    let name = format!("{prefix}{}", entry.key);
                    self.warn(
                        At {
                            field: &name,
                            ..key_at
                        },
                        "unknown field ignored",
                    );
                }
                Some(name) => {
                    if let Some((_, first)) = found.iter().find(|(n, _)| n == name) {
                        let message = format!("given twice (first at line {})", first.line);
                        let full = format!("{prefix}{name}");
                        self.error(
                            At {
                                field: &full,
                                ..key_at
                            },
                            message,
                        );
                    } else {
                        found.push((name, &entry.value));
                    }
                }
            }
        }
        Some(Fields { found })
    }

    // ---- readers of single values; each records its own error and returns None ----

    fn text(&mut self, at: At) -> Option<String> {
        match &at.node.value {
            Value::Null => None,
            Value::Text(text) => Some(text.clone()),
            _ => {
                self.error(at, "expected a single value");
                None
            }
        }
    }

    /// The elements of a list, or the value itself when a single value is given.
    fn items<'n>(&mut self, at: At<'n>) -> Vec<&'n Node> {
        match &at.node.value {
            Value::Null => Vec::new(),
            Value::List(items) => items.iter().collect(),
            Value::Text(_) => vec![at.node],
            Value::Map(_) => {
                self.error(at, "expected a list");
                Vec::new()
            }
        }
    }

    fn checked<T>(&mut self, at: At, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let text = self.text(at)?;
        match parse(text.trim()) {
            Ok(v) => Some(v),
            Err(why) => {
                self.error(at, format!("{text:?}: {why}"));
                None
            }
        }
    }

    fn ipv4(&mut self, at: At) -> Option<Ipv4Addr> {
        self.checked(at, |t| {
            if t.is_empty() {
                Err("not an IPv4 address".into())
            } else {
                value::ipv4(t)
            }
        })
    }

    /// An address Smee ignores when empty: an empty value is a warning and no value.
    fn optional_ipv4(&mut self, at: At) -> Option<Ipv4Addr> {
        if matches!(&at.node.value, Value::Text(t) if t.trim().is_empty()) {
            self.warn(at, "empty: ignored");
            return None;
        }
        self.ipv4(at)
    }

    /// A list entry Smee drops when it is not an address: a warning, never an error (the
    /// value is not used, so nothing can be injected by it).
    fn tolerated_ipv4(&mut self, at: At) -> Option<Ipv4Addr> {
        let Value::Text(text) = &at.node.value else {
            return self.ipv4(at);
        };
        match value::ipv4(text.trim()) {
            Ok(ip) => Some(ip),
            Err(why) => {
                let why = if text.trim().is_empty() {
                    "empty".to_string()
                } else {
                    why
                };
                self.warn(at, format!("{text:?}: {why}: entry ignored"));
                None
            }
        }
    }

    /// A list read element by element with `read` (a single value is a list of one).
    fn list<T>(&mut self, at: At, read: fn(&mut Self, At) -> Option<T>) -> Vec<T> {
        self.items(at)
            .into_iter()
            .filter_map(|n| read(self, At { node: n, ..at }))
            .collect()
    }

    /// One word that is safe inside a DHCP option, a kernel argument or an iPXE line.
    fn word(&mut self, at: At) -> Option<String> {
        self.checked(at, |t| {
            if t.len() > 255 {
                Err("longer than 255 bytes".into())
            } else if t
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '$' || c == '"' || c == '\\')
            {
                Err("contains spaces, quotes, $, \\ or control characters".into())
            } else {
                Ok(t.to_string())
            }
        })
        .filter(|t| !t.is_empty())
    }

    fn line(&mut self, at: At) -> Option<String> {
        self.checked(at, value::single_line)
            .filter(|t| !t.is_empty())
    }

    /// A classless static route: `DESTINATION/WIDTH ROUTER` (`via` between the two allowed).
    fn route(&mut self, at: At) -> Option<(Ipv4Addr, u8, Ipv4Addr)> {
        self.checked(at, |t| {
            let bad = || format!("not a route such as \"10.0.0.0/8 10.77.0.254\" ({t:?})");
            let words: Vec<&str> = t.split_whitespace().filter(|w| *w != "via").collect();
            let [destination, router] = words[..] else {
                return Err(bad());
            };
            let (net, width) = destination.split_once('/').ok_or_else(bad)?;
            let net: Ipv4Addr = net.parse().map_err(|_| bad())?;
            let width: u8 = width.parse().ok().filter(|w| *w <= 32).ok_or_else(bad)?;
            let router: Ipv4Addr = router.parse().map_err(|_| bad())?;
            let mask = u32::MAX.checked_shl(32 - u32::from(width)).unwrap_or(0);
            if u32::from(net) & !mask != 0 {
                return Err(format!("{destination} has host bits set beyond /{width}"));
            }
            Ok((net, width, router))
        })
    }

    fn url(&mut self, at: At) -> Option<String> {
        let text = self.text(at)?;
        if text.trim().is_empty() {
            return None;
        }
        self.checked(at, |t| value::url(t, &["http", "https", "tftp"]))
    }

    fn boot_source(&mut self, at: At) -> Option<String> {
        self.checked(at, |t| {
            if t.contains("://") {
                return value::url(t, &["http", "https", "tftp"]);
            }
            let unsafe_path = t.is_empty()
                || t.starts_with('/')
                || t.split('/').any(|part| part == "..")
                || t.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '\\');
            if unsafe_path {
                Err(
                    "expected an http(s)/tftp URL or a relative path below the assets directory"
                        .into(),
                )
            } else {
                Ok(t.to_string())
            }
        })
    }

    fn boolean(&mut self, at: At) -> Option<bool> {
        self.checked(at, value::boolean)
    }

    fn vlan(&mut self, at: At) -> Option<u16> {
        let text = self.text(at)?;
        if text.trim().is_empty() {
            return None;
        }
        self.checked(at, |t| match t.parse::<u16>() {
            Ok(0) => Ok(0),
            Ok(id @ 1..=4094) => Ok(id),
            _ => Err("expected a VLAN ID 1..4094".into()),
        })
        .filter(|id| *id != 0)
    }

    fn lease_time(&mut self, at: At) -> u32 {
        match self.checked(at, |t| {
            t.parse::<u32>()
                .map_err(|_| "expected seconds 0..4294967295".to_string())
        }) {
            Some(0) => {
                self.warn(
                    at,
                    format!("0 would make clients renew constantly; using {DEFAULT_LEASE_TIME}"),
                );
                DEFAULT_LEASE_TIME
            }
            Some(seconds) => seconds,
            None => DEFAULT_LEASE_TIME,
        }
    }
}

/// Why a MAC can be no machine's: broadcast, multicast (group bit set) or all zeros.
pub(super) fn not_a_machine_mac(mac: MacAddr) -> Option<&'static str> {
    match mac.0 {
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] => Some("is the broadcast address"),
        [0, 0, 0, 0, 0, 0] => Some("is all zeros"),
        [first, ..] if first & 1 == 1 => Some("is a multicast address"),
        _ => None,
    }
}

/// Why an address can be no host's: multicast, reserved, "this network", limited broadcast.
pub(super) fn not_a_host_address(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_broadcast() {
        Some("is the limited broadcast address")
    } else if ip.is_multicast() {
        Some("is a multicast address (224.0.0.0/4)")
    } else if ip.octets()[0] >= 240 {
        Some("is reserved (240.0.0.0/4)")
    } else if ip.octets()[0] == 0 {
        Some("is in 0.0.0.0/8 (\"this network\")")
    } else {
        None
    }
}

/// Validates one `[profiles.NAME]` table of the config file.
pub fn boot_profile(node: &Node, file: &str, name: &str) -> Result<BootProfile, Vec<Problem>> {
    let none = Profiles::new();
    let mut checker = Checker::new(file, &none);
    let field = format!("profiles.{name}");
    let at = At {
        node,
        mac: None,
        field: &field,
    };
    let mut profile = BootProfile::default();
    if let Some(fields) = checker.fields(at, PROFILE_FIELDS, &format!("{field}.")) {
        let (kernel, initrd, cmdline) = checker.boot_parts(at, &fields);
        profile = BootProfile {
            kernel: kernel.unwrap_or_default(),
            initrd: initrd.unwrap_or_default(),
            cmdline: cmdline.unwrap_or_default(),
        };
        if profile.kernel.is_empty() && checker.errors.is_empty() {
            checker.error(at, "a profile needs a kernel");
        }
    }
    // The config file is strict: an unknown key in a profile is an error, not a warning.
    let mut problems = checker.errors;
    problems.extend(checker.warnings);
    crate::value::sort_by_key(&mut problems, |p| p.line);
    if problems.is_empty() {
        Ok(profile)
    } else {
        Err(problems)
    }
}
