//! Tinkerbell `Hardware` objects (`apiVersion: tinkerbell.org/v1alpha1`, `kind: Hardware`), as
//! today's Tinkerbell file backend lists them and as the Kubernetes API serves them: each
//! interface with a `dhcp.mac` is one machine. The fields Smee reads are translated into a
//! hardware-file record and checked by the same rules; problems name the object
//! (`namespace/name`), the MAC and the Hardware field (`spec.interfaces[0].dhcp.ip.address`).
//! A MAC in two objects is refused in both (Smee answers neither, silently).

use std::collections::HashMap;

use super::{At, Checker};
use crate::inventory::doc::{normalize_key, Entry, Node, Value};
use crate::inventory::{Format, Machine, Problem};
use crate::wire::MacAddr;

/// Hardware field → hardware-file field, for messages (the record's name first).
const FIELD_NAMES: &[(&str, &str)] = &[
    ("ipAddress", "dhcp.ip.address"),
    ("subnetMask", "dhcp.ip.netmask"),
    ("defaultGateway", "dhcp.ip.gateway"),
    ("hostname", "dhcp.hostname"),
    ("nameServers", "dhcp.name_servers"),
    ("ntpServers", "dhcp.time_servers"),
    ("leaseTime", "dhcp.lease_time"),
    ("arch", "dhcp.arch"),
    ("vlanID", "dhcp.vlan_id"),
    ("domainName", "dhcp.domain_name"),
    ("disabled", "disableDhcp"),
    ("netboot.allowPxe", "netboot.allowPXE"),
    ("netboot.ipxeScriptUrl", "netboot.ipxe.url"),
    ("netboot.ipxeScript", "netboot.ipxe.contents"),
    ("netboot.osieBaseUrl", "netboot.osie.baseURL"),
    ("netboot.osieKernel", "netboot.osie.kernel"),
    ("netboot.osieInitrd", "netboot.osie.initrd"),
    ("classlessRoutes", "dhcp.classless_static_routes"),
];

/// The value at `path` (keys compared as [`normalize_key`] does) below `node`.
fn get<'n>(node: &'n Node, path: &[&str]) -> Option<&'n Node> {
    let mut here = node;
    for key in path {
        let Value::Map(entries) = &here.value else {
            return None;
        };
        let want = normalize_key(key);
        here = &entries
            .iter()
            .find(|e| normalize_key(&e.key) == want)?
            .value;
    }
    Some(here)
}

fn text(node: Option<&Node>) -> Option<&str> {
    match node.map(|n| &n.value) {
        Some(Value::Text(t)) => Some(t.as_str()),
        _ => None,
    }
}

/// `key: value` for the translated record, keeping the value's line.
fn entry(key: &str, value: &Node) -> Entry {
    Entry {
        key: key.to_string(),
        key_line: value.line,
        value: value.clone(),
    }
}

/// `classless_static_routes` (`[{destination_descriptor: 10.0.0.0/8, router: 10.1.1.1}]`) as
/// the record's `classlessRoutes` (`["10.0.0.0/8 10.1.1.1"]`); an entry of another shape is
/// kept as it is, for the record's reader to refuse by name.
fn routes(list: &Node) -> Node {
    let Value::List(items) = &list.value else {
        return list.clone();
    };
    let items = items
        .iter()
        .map(|item| {
            let destination = text(get(item, &["destination_descriptor"]));
            match (destination, text(get(item, &["router"]))) {
                (Some(d), Some(r)) => Node {
                    line: item.line,
                    value: Value::Text(format!("{d} {r}")),
                },
                _ => item.clone(),
            }
        })
        .collect();
    Node {
        line: list.line,
        value: Value::List(items),
    }
}

/// One interface as a hardware-file record.
fn record(iface: &Node, facility: Option<&Node>) -> Node {
    let mut fields = Vec::new();
    for (ours, theirs) in FIELD_NAMES
        .iter()
        .filter(|(o, _)| !o.starts_with("netboot."))
    {
        let path: Vec<&str> = theirs.split('.').collect();
        if let Some(value) = get(iface, &path).filter(|v| v.value != Value::Null) {
            if *ours == "classlessRoutes" {
                fields.push(entry(ours, &routes(value)));
                continue;
            }
            fields.push(entry(ours, value));
        }
    }
    let mut netboot = Vec::new();
    for (ours, theirs) in FIELD_NAMES
        .iter()
        .filter(|(o, _)| o.starts_with("netboot."))
    {
        let path: Vec<&str> = theirs.split('.').collect();
        if let Some(value) = get(iface, &path).filter(|v| v.value != Value::Null) {
            netboot.push(entry(&ours["netboot.".len()..], value));
        }
    }
    if let Some(f) = facility {
        netboot.push(entry("facility", f));
    }
    if !netboot.is_empty() {
        let line = netboot[0].key_line;
        fields.push(Entry {
            key: "netboot".into(),
            key_line: line,
            value: Node {
                line,
                value: Value::Map(netboot),
            },
        });
    }
    Node {
        line: iface.line,
        value: Value::Map(fields),
    }
}

/// Rewrites a problem of a translated record to name the object and the Hardware field.
fn rename(p: &mut Problem, object: &str, interface: usize) {
    let mac = p.mac.take().unwrap_or_default();
    p.mac = Some(format!("{object} {mac}").trim().to_string());
    if let Some(field) = &p.field {
        let theirs = match field.as_str() {
            "mac" => "dhcp.mac",
            ours => FIELD_NAMES
                .iter()
                .find(|(o, _)| *o == ours)
                .map_or(ours, |(_, theirs)| theirs),
        };
        p.field = Some(format!("spec.interfaces[{interface}].{theirs}"));
    }
}

impl Checker<'_> {
    /// A YAML (or JSON) list of Hardware objects.
    pub(in crate::inventory) fn hardware_list(&mut self, items: &[Node]) -> Vec<Machine> {
        let mut owners: HashMap<MacAddr, String> = HashMap::new();
        let mut machines: Vec<Machine> = Vec::new();
        // A MAC seen again in a later object (refused there by the duplicate rule).
        let mut again: Vec<(MacAddr, String)> = Vec::new();
        for item in items {
            let (found, dups) = self.hardware(item);
            again.extend(dups);
            for (object, machine) in found {
                owners.insert(machine.mac, object);
                machines.push(machine);
            }
        }
        for (mac, second) in &again {
            let Some(i) = machines.iter().position(|m| m.mac == *mac) else {
                continue;
            };
            machines.remove(i);
            self.refused += 1;
            let node = Node {
                line: self.mac_lines.get(mac).copied().unwrap_or(0),
                value: Value::Null,
            };
            let first = owners.get(mac).cloned().unwrap_or_default();
            let object = format!("{first} {mac}");
            self.error(
                At {
                    node: &node,
                    mac: Some(&object),
                    field: "",
                },
                format!("{mac} is also in {second}: both are refused"),
            );
        }
        machines
    }

    /// One Hardware object: (its `namespace/name`, machine) per usable interface, and the MACs
    /// it shares with an earlier object.
    #[allow(clippy::type_complexity)]
    fn hardware(&mut self, item: &Node) -> (Vec<(String, Machine)>, Vec<(MacAddr, String)>) {
        let namespace = text(get(item, &["metadata", "namespace"])).unwrap_or("default");
        let object = match text(get(item, &["metadata", "name"])) {
            Some(name) => format!("{namespace}/{name}"),
            None => format!("(object at line {})", item.line),
        };
        let kind = text(get(item, &["kind"]));
        if kind != Some("Hardware") || !matches!(item.value, Value::Map(_)) {
            self.error(
                At {
                    node: item,
                    mac: Some(&object),
                    field: "kind",
                },
                format!("expected a Hardware object (kind: Hardware), found {kind:?}"),
            );
            self.refused += 1;
            return (Vec::new(), Vec::new());
        }
        let facility = get(item, &["spec", "metadata", "facility", "facility_code"]);
        let interfaces = match get(item, &["spec", "interfaces"]).map(|n| &n.value) {
            Some(Value::List(list)) => list.as_slice(),
            _ => &[],
        };
        let (mut out, mut dups) = (Vec::new(), Vec::new());
        for (i, iface) in interfaces.iter().enumerate() {
            let Some(mac_node) = get(iface, &["dhcp", "mac"]) else {
                continue;
            };
            let (errors, warnings) = (self.errors.len(), self.warnings.len());
            let mac_text = text(Some(mac_node)).unwrap_or("").to_string();
            if let Some(mac) =
                MacAddr::parse(mac_text.trim()).filter(|m| self.mac_lines.contains_key(m))
            {
                dups.push((mac, object.clone()));
            }
            let at = At {
                node: mac_node,
                mac: Some(&mac_text),
                field: "mac",
            };
            let machine = match self.mac(at, &mac_text) {
                Some(mac) => self.machine(mac, iface.line, &record(iface, facility), Format::Yaml),
                None => {
                    self.refused += 1;
                    None
                }
            };
            for p in &mut self.errors[errors..] {
                rename(p, &object, i);
            }
            for p in &mut self.warnings[warnings..] {
                rename(p, &object, i);
            }
            if let Some(m) = machine {
                out.push((object.clone(), m));
            }
        }
        (out, dups)
    }
}
