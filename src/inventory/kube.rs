//! Tinkerbell `Hardware` objects as the Kubernetes API serves them (feature `remote`): the set
//! a LIST gives and WATCH events change, kept as one compact JSON object per
//! `namespace/name` (only `apiVersion`, `kind`, `metadata.name`/`namespace` and `spec`: the
//! managed fields and status the API adds are dropped), with the resource version to watch
//! from. Pure: bodies and event lines in, decisions out. Each object is validated when it
//! arrives, by the hardware file's own reader (a list of Hardware objects is a file the file
//! backend takes), so the API's objects and a Tinkerbell YAML file are validated and named
//! alike; a change re-reads only the object that changed, and putting the set into service
//! only adds the checks across objects (a MAC or an address in two of them). The persisted
//! copy in `--state-dir` is such a file.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use super::{load_str, Format, Inventory, Loaded, Machine, Problem, Profiles};
use crate::wire::MacAddr;

/// Problems listed at most (the rest counted), as for a file.
const MAX_ERRORS: usize = 100;

/// What one watch event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An object was added, changed or deleted.
    Applied,
    /// Only the resource version moved on (a bookmark).
    Bookmark,
    /// The version watched from is too old (410 Gone / Expired): list again.
    Expired,
    /// The server reported an error on the stream.
    Failed(String),
}

/// One object: its compact text, and what it gives validated on its own.
#[derive(Clone, Debug, Default)]
struct Object {
    /// `namespace/name`.
    key: String,
    text: String,
    machines: Vec<Machine>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    refused: usize,
}

#[derive(Clone, Debug, Default)]
pub struct HardwareSet {
    /// Sorted by key: the machines come out in the same order in every replica.
    objects: Vec<Object>,
    resource_version: String,
    /// What problems are named after (the API's URL), and the boot profiles machines may name.
    name: String,
    profiles: Profiles,
}

/// A Kubernetes `Status` body's message (`reason: message`), shortened; `None` if the body is
/// not one.
pub fn status_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    status_text(&v)
}

fn status_text(v: &Value) -> Option<String> {
    let message = v.get("message").and_then(Value::as_str);
    let reason = v.get("reason").and_then(Value::as_str);
    let text = match (reason, message) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (None, Some(t)) | (Some(t), None) => t.to_string(),
        (None, None) => return None,
    };
    Some(text.chars().take(300).filter(|c| !c.is_control()).collect())
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |here, key| here.get(key))?.as_str()
}

/// The object's key and its compact form.
fn compact(object: &Value) -> Result<(String, String), String> {
    let name = str_at(object, &["metadata", "name"]).ok_or("an object without metadata.name")?;
    let namespace = str_at(object, &["metadata", "namespace"]).unwrap_or("default");
    let mut out = Map::new();
    let field = |key: &str, default: &str| {
        object
            .get(key)
            .cloned()
            .unwrap_or_else(|| Value::String(default.into()))
    };
    out.insert(
        "apiVersion".into(),
        field("apiVersion", "tinkerbell.org/v1alpha1"),
    );
    out.insert("kind".into(), field("kind", "Hardware"));
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name.into()));
    metadata.insert("namespace".into(), Value::String(namespace.into()));
    out.insert("metadata".into(), Value::Object(metadata));
    out.insert(
        "spec".into(),
        object.get("spec").cloned().unwrap_or(Value::Null),
    );
    Ok((
        format!("{namespace}/{name}"),
        Value::Object(out).to_string(),
    ))
}

/// One object's machines and problems (its text is a one-object Hardware list).
fn validate(key: String, text: String, name: &str, profiles: &Profiles) -> Object {
    let mut object = match load(&format!("[{text}]"), name, profiles) {
        Ok(loaded) => Object {
            machines: loaded.inventory.machines().cloned().collect(),
            errors: loaded.errors,
            warnings: loaded.warnings,
            refused: loaded.refused,
            ..Object::default()
        },
        Err(errors) => Object {
            errors,
            refused: 1,
            ..Object::default()
        },
    };
    object.key = key;
    object.text = text;
    object
}

impl HardwareSet {
    /// An empty set whose problems name `name` and whose machines may name `profiles`.
    pub fn new(name: &str, profiles: &Profiles) -> HardwareSet {
        HardwareSet {
            name: name.to_string(),
            profiles: profiles.clone(),
            ..HardwareSet::default()
        }
    }

    /// New boot profiles (a reloaded configuration): every object is validated again.
    pub fn set_profiles(&mut self, profiles: &Profiles) {
        if *profiles == self.profiles {
            return;
        }
        self.profiles = profiles.clone();
        for object in &mut self.objects {
            let (key, text) = (
                std::mem::take(&mut object.key),
                std::mem::take(&mut object.text),
            );
            *object = validate(key, text, &self.name, &self.profiles);
        }
    }

    fn put(&mut self, key: String, text: String) {
        let object = validate(key, text, &self.name, &self.profiles);
        match self.objects.binary_search_by(|o| o.key.cmp(&object.key)) {
            Ok(i) => self.objects[i] = object,
            Err(i) => self.objects.insert(i, object),
        }
    }

    fn remove(&mut self, key: &str) {
        if let Ok(i) = self.objects.binary_search_by(|o| o.key.as_str().cmp(key)) {
            self.objects.remove(i);
        }
    }

    pub fn resource_version(&self) -> &str {
        &self.resource_version
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// One page of a LIST (`HardwareList`): its items go in, its resource version is kept.
    /// Returns the `continue` token of the next page, if any.
    pub fn add_page(&mut self, body: &[u8]) -> Result<Option<String>, String> {
        let list: Value =
            serde_json::from_slice(body).map_err(|e| format!("the list is not JSON: {e}"))?;
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .ok_or("the list has no items array (not a HardwareList)")?;
        for item in items {
            let (key, text) = compact(item)?;
            self.put(key, text);
        }
        self.resource_version = str_at(&list, &["metadata", "resourceVersion"])
            .ok_or("the list has no metadata.resourceVersion")?
            .to_string();
        Ok(str_at(&list, &["metadata", "continue"])
            .filter(|c| !c.is_empty())
            .map(str::to_string))
    }

    /// One line of a WATCH stream.
    pub fn apply(&mut self, line: &[u8]) -> Result<Change, String> {
        let event: Value =
            serde_json::from_slice(line).map_err(|e| format!("a watch event is not JSON: {e}"))?;
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let object = event
            .get("object")
            .ok_or("a watch event without an object")?;
        if kind == "ERROR" {
            let code = object.get("code").and_then(Value::as_u64);
            let reason = object.get("reason").and_then(Value::as_str);
            if code == Some(410) || matches!(reason, Some("Expired" | "Gone")) {
                return Ok(Change::Expired);
            }
            return Ok(Change::Failed(
                status_text(object).unwrap_or_else(|| "an ERROR event".into()),
            ));
        }
        if let Some(rv) = str_at(object, &["metadata", "resourceVersion"]) {
            self.resource_version = rv.to_string();
        }
        match kind {
            "BOOKMARK" => Ok(Change::Bookmark),
            "ADDED" | "MODIFIED" => {
                let (key, text) = compact(object)?;
                self.put(key, text);
                Ok(Change::Applied)
            }
            "DELETED" => {
                let (key, _) = compact(object)?;
                self.remove(&key);
                Ok(Change::Applied)
            }
            other => Err(format!("a watch event of unknown type {other:?}")),
        }
    }

    /// The set as a Tinkerbell Hardware-list file (JSON, one object per line).
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.objects.iter().map(|o| o.text.len() + 2).sum());
        text.push('[');
        for (i, object) in self.objects.iter().enumerate() {
            text.push_str(if i == 0 { "\n" } else { ",\n" });
            text.push_str(&object.text);
        }
        text.push_str("\n]\n");
        text
    }

    /// The set's machines, as a Hardware-list file with these objects would give them: each
    /// object's own, less a MAC found in two objects (refused in both, each named) and an
    /// address already given to a machine of an earlier object.
    pub fn loaded(&self) -> Loaded {
        // Per MAC: the first object that has it, and how many objects do (one allocation per
        // set, not per machine: this runs for every batch of changes).
        let count: usize = self.objects.iter().map(|o| o.machines.len()).sum();
        let mut owners: HashMap<MacAddr, (usize, usize)> = HashMap::with_capacity(count);
        for (i, object) in self.objects.iter().enumerate() {
            for m in &object.machines {
                let (first, objects) = owners.entry(m.mac).or_insert((i, 0));
                if *first != i || *objects == 0 {
                    *objects += 1;
                }
            }
        }
        let mut loaded = Loaded::default();
        let mut errors: Vec<Problem> = Vec::new();
        let mut ips: HashMap<Ipv4Addr, (MacAddr, usize)> = HashMap::with_capacity(count);
        let mut machines = Vec::with_capacity(count);
        let problem = |key: &str, mac: MacAddr, message: String| Problem {
            file: self.name.clone(),
            line: 0,
            mac: Some(format!("{key} {mac}")),
            field: None,
            message,
        };
        for (i, object) in self.objects.iter().enumerate() {
            errors.extend(object.errors.iter().cloned());
            loaded.warnings.extend(object.warnings.iter().cloned());
            loaded.refused += object.refused;
            for m in &object.machines {
                if owners[&m.mac].1 > 1 {
                    let others: Vec<&str> = self
                        .objects
                        .iter()
                        .enumerate()
                        .filter(|(j, o)| *j != i && o.machines.iter().any(|n| n.mac == m.mac))
                        .map(|(_, o)| o.key.as_str())
                        .collect();
                    let message = format!(
                        "{} is also in {}: both are refused",
                        m.mac,
                        others.join(", ")
                    );
                    errors.push(problem(&object.key, m.mac, message));
                    loaded.refused += 1;
                    continue;
                }
                let addresses = m
                    .ip_address
                    .into_iter()
                    .chain(m.other_addresses.iter().map(|a| a.ip_address));
                let taken = addresses.clone().find_map(|ip| Some(ip).zip(ips.get(&ip)));
                if let Some((ip, (owner, j))) = taken {
                    let message = format!(
                        "duplicate IP: {ip} is already given to {owner} in {}",
                        self.objects[*j].key
                    );
                    errors.push(problem(&object.key, m.mac, message));
                    loaded.refused += 1;
                    continue;
                }
                for ip in addresses {
                    ips.insert(ip, (m.mac, i));
                }
                machines.push(m.clone());
            }
        }
        if errors.len() > MAX_ERRORS {
            let more = errors.len() - MAX_ERRORS;
            errors.truncate(MAX_ERRORS);
            errors.push(Problem {
                file: self.name.clone(),
                line: 0,
                mac: None,
                field: None,
                message: format!("{more} more errors not shown"),
            });
        }
        loaded.errors = errors;
        loaded.inventory = Inventory::new(machines);
        loaded
    }
}

/// Machines from a Hardware list (the set's text, or its copy kept on disk); `name` is used in
/// messages.
pub fn load(text: &str, name: &str, profiles: &Profiles) -> Result<Loaded, Vec<Problem>> {
    // JSON is YAML, but for tabs between tokens (compact JSON has none). The lines are the
    // objects' places in the text, which no one wrote: problems name the object instead.
    let unlined = |problems: &mut Vec<Problem>| problems.iter_mut().for_each(|p| p.line = 0);
    let mut loaded = load_str(text, Format::Yaml, name, profiles).map_err(|mut p| {
        unlined(&mut p);
        p
    })?;
    unlined(&mut loaded.errors);
    unlined(&mut loaded.warnings);
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hw(name: &str, rv: &str, mac: &str, ip: &str) -> String {
        format!(
            r#"{{"apiVersion":"tinkerbell.org/v1alpha1","kind":"Hardware","metadata":{{"name":"{name}","namespace":"tink","resourceVersion":"{rv}","managedFields":[{{"manager":"kubectl"}}]}},"spec":{{"interfaces":[{{"dhcp":{{"mac":"{mac}","ip":{{"address":"{ip}","netmask":"255.255.255.0"}}}},"netboot":{{"allowPXE":true}}}}]}},"status":{{}}}}"#
        )
    }

    fn event(kind: &str, object: &str) -> Vec<u8> {
        format!(r#"{{"type":"{kind}","object":{object}}}"#).into_bytes()
    }

    #[test]
    fn a_list_then_events_give_the_machines_of_the_moment() {
        let mut set = HardwareSet::new("kube", &Profiles::default());
        let page = format!(
            r#"{{"kind":"HardwareList","metadata":{{"resourceVersion":"10","continue":"abc"}},"items":[{}]}}"#,
            hw("m1", "5", "52:54:00:00:00:01", "10.0.0.11")
        );
        assert_eq!(set.add_page(page.as_bytes()), Ok(Some("abc".into())));
        let page = r#"{"metadata":{"resourceVersion":"11"},"items":[]}"#;
        assert_eq!(set.add_page(page.as_bytes()), Ok(None));
        assert_eq!((set.len(), set.resource_version()), (1, "11"));
        let added = event("ADDED", &hw("m2", "12", "52:54:00:00:00:02", "10.0.0.12"));
        assert_eq!(set.apply(&added), Ok(Change::Applied));
        let moved = event(
            "MODIFIED",
            &hw("m1", "13", "52:54:00:00:00:01", "10.0.0.21"),
        );
        assert_eq!(set.apply(&moved), Ok(Change::Applied));
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"Hardware","metadata":{"resourceVersion":"20"}}}"#;
        assert_eq!(set.apply(bookmark), Ok(Change::Bookmark));
        assert_eq!(set.resource_version(), "20");
        let text = set.to_text();
        assert!(
            !text.contains("managedFields") && !text.contains("status"),
            "{text}"
        );
        let loaded = load(&text, "kube", &Profiles::default()).unwrap();
        assert_eq!(loaded.inventory.len(), 2);
        let m1 = loaded
            .inventory
            .by_mac("52:54:00:00:00:01".parse().unwrap())
            .unwrap();
        assert_eq!(m1.ip_address, Some("10.0.0.21".parse().unwrap()));
        let gone = event("DELETED", &hw("m2", "21", "52:54:00:00:00:02", "10.0.0.12"));
        assert_eq!(set.apply(&gone), Ok(Change::Applied));
        assert_eq!(set.loaded().inventory.len(), 1);
        // Nothing left: an empty list, no machines (not an error).
        let gone = event("DELETED", &hw("m1", "22", "52:54:00:00:00:01", "10.0.0.21"));
        set.apply(&gone).unwrap();
        assert!(set.is_empty());
        assert_eq!(
            load(&set.to_text(), "kube", &Profiles::default())
                .unwrap()
                .inventory
                .len(),
            0
        );
    }

    #[test]
    fn expiry_errors_and_garbage_are_told_apart() {
        let mut set = HardwareSet::default();
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 5 (80)","reason":"Expired","code":410}}"#;
        assert_eq!(set.apply(gone), Ok(Change::Expired));
        let denied = br#"{"type":"ERROR","object":{"kind":"Status","message":"internal error","reason":"InternalError","code":500}}"#;
        assert_eq!(
            set.apply(denied),
            Ok(Change::Failed("InternalError: internal error".into()))
        );
        assert!(set.apply(b"{not json").is_err());
        assert!(set
            .apply(br#"{"type":"ADDED","object":{"spec":{}}}"#)
            .is_err());
        assert!(set.add_page(br#"{"kind":"Status","code":403}"#).is_err());
        assert_eq!(
            status_message(br#"{"kind":"Status","reason":"Forbidden","message":"hardware.tinkerbell.org is forbidden"}"#),
            Some("Forbidden: hardware.tinkerbell.org is forbidden".into())
        );
    }

    #[test]
    fn a_mac_or_address_in_two_objects_is_refused_by_name_as_in_a_file() {
        let mut set = HardwareSet::new("kube", &Profiles::default());
        let page = format!(
            r#"{{"metadata":{{"resourceVersion":"3"}},"items":[{},{},{},{}]}}"#,
            hw("a", "1", "52:54:00:00:00:09", "10.0.0.31"),
            hw("b", "2", "52:54:00:00:00:09", "10.0.0.32"),
            hw("c", "3", "52:54:00:00:00:0a", "10.0.0.33"),
            hw("d", "4", "52:54:00:00:00:0b", "10.0.0.33")
        );
        set.add_page(page.as_bytes()).unwrap();
        let loaded = set.loaded();
        let file = load(&set.to_text(), "kube", &Profiles::default()).unwrap();
        for loaded in [&loaded, &file] {
            let macs: Vec<String> = loaded
                .inventory
                .machines()
                .map(|m| m.mac.to_string())
                .collect();
            assert_eq!(macs, ["52:54:00:00:00:0a"]);
            assert_eq!(loaded.refused, 3);
            let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains("tink/a") && e.contains("tink/b")),
                "{errors:?}"
            );
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains("tink/d") && e.contains("duplicate IP: 10.0.0.33")),
                "{errors:?}"
            );
        }
        // A change re-validates that object only; the checks across objects follow.
        let fixed = event("MODIFIED", &hw("b", "5", "52:54:00:00:00:0c", "10.0.0.32"));
        set.apply(&fixed).unwrap();
        assert_eq!(set.loaded().inventory.len(), 3);
    }

    #[test]
    fn routes_and_osie_overrides_are_read_as_smee_reads_them() {
        let mut set = HardwareSet::new("kube", &Profiles::default());
        let object = r#"{"metadata":{"name":"r","namespace":"tink","resourceVersion":"1"},"spec":{"interfaces":[{"dhcp":{"mac":"52:54:00:00:00:21","ip":{"address":"10.0.0.21","netmask":"255.255.255.0","gateway":"10.0.0.1"},"classless_static_routes":[{"destination_descriptor":"192.168.0.0/16","router":"10.0.0.254"}]},"netboot":{"allowPXE":true,"osie":{"baseURL":"http://m.example/hook","kernel":"vmlinuz-x","initrd":"initramfs-x"}}}]}}"#;
        assert_eq!(set.apply(&event("ADDED", object)), Ok(Change::Applied));
        let loaded = set.loaded();
        let m = loaded
            .inventory
            .by_mac("52:54:00:00:00:21".parse().unwrap())
            .unwrap();
        assert_eq!(
            m.routes,
            [(
                "192.168.0.0".parse().unwrap(),
                16,
                "10.0.0.254".parse().unwrap()
            )]
        );
        assert_eq!(
            m.netboot.osie_base_url.as_deref(),
            Some("http://m.example/hook")
        );
        assert_eq!(m.netboot.osie_kernel.as_deref(), Some("vmlinuz-x"));
        assert_eq!(m.netboot.osie_initrd.as_deref(), Some("initramfs-x"));
        // The gateway is ignored by clients that take option 121: said, by name.
        let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("tink/r") && w.contains("0.0.0.0/0 10.0.0.1")),
            "{warnings:?}"
        );
        // A bad route is an error naming the Hardware field.
        let bad = object.replace("192.168.0.0/16", "192.168.0.1/16");
        set.apply(&event("MODIFIED", &bad)).unwrap();
        let errors: Vec<String> = set
            .loaded()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errors.iter().any(
                |e| e.contains("spec.interfaces[0].dhcp.classless_static_routes")
                    && e.contains("host bits")
            ),
            "{errors:?}"
        );
    }
}
