//! The TOML configuration file. Keys are option names (`dhcp-mode = "proxy"`), or the same
//! names split into tables (`[dhcp]` then `mode = "proxy"`); `_` and `-` are alike. Boot
//! profiles live in `[profiles.NAME]` tables, the settings of a remote source's subnets in
//! `[subnets.NAME]` tables, host-name patterns of SMD machines in `[hostnames]`. Unknown keys
//! are errors, with their line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::assets::Sha256;
use super::options;
use crate::inventory::doc::LineIndex;
use crate::inventory::doc::{normalize_key, Entry, Node, Value};
use crate::inventory::{self, hostname, BootProfile, Profiles, SubnetSettings, Subnets};
use crate::value;

/// One option's value as the file gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct FileValue {
    pub text: String,
    pub line: usize,
    /// The key as written, dotted (`dhcp.mode`).
    pub key: String,
}

#[derive(Debug, Default)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// By option name (`dhcp-mode`).
    pub values: BTreeMap<String, FileValue>,
    pub profiles: Profiles,
    pub subnets: Subnets,
    /// `[hostnames]`: a pattern per SMD component type (lowercase) and `default`.
    pub hostnames: hostname::Patterns,
    /// `[[pool]]`: address pools for unknown machines, in file order.
    pub pools: Vec<super::pools::PoolSettings>,
    /// `[[upstream]]`: asset mirrors by path prefix.
    pub upstreams: Vec<super::assets::Upstream>,
    /// The profiles' `sha256` tables: digests of cached assets, by asset path.
    pub pinned: Vec<(String, super::assets::Sha256)>,
}

struct Reader<'a> {
    file: String,
    index: LineIndex,
    out: &'a mut ConfigFile,
    errors: Vec<String>,
}

/// Parses the file's text; every error is one line naming the file, line and key.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, Vec<String>> {
    let file = path.display().to_string();
    let index = LineIndex::new(text);
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| index.line_of(s.start));
        vec![format!("{file}:{line}: {}", e.message().trim())]
    })?;
    let mut out = ConfigFile {
        path: path.to_path_buf(),
        ..ConfigFile::default()
    };
    let mut reader = Reader {
        file,
        index,
        out: &mut out,
        errors: Vec::new(),
    };
    reader.table(table.get_ref(), &[]);
    if reader.errors.is_empty() {
        Ok(out)
    } else {
        Err(reader.errors)
    }
}

impl Reader<'_> {
    fn table(&mut self, table: &DeTable<'_>, path: &[String]) {
        // In file order, so that errors come out in line order.
        let mut entries: Vec<_> = table.iter().collect();
        crate::value::sort_by_key(&mut entries, |(key, _)| key.span().start);
        for (key, value) in entries {
            let mut key_path = path.to_vec();
            key_path.push(key.get_ref().to_string());
            let line = self.index.line_of(key.span().start);
            match value.get_ref() {
                DeValue::Table(inner) if path.is_empty() && key.get_ref() == "profiles" => {
                    self.profiles(inner)
                }
                DeValue::Table(inner) if path.is_empty() && key.get_ref() == "subnets" => {
                    self.subnets(inner)
                }
                DeValue::Table(inner) if path.is_empty() && key.get_ref() == "hostnames" => {
                    self.hostnames(inner)
                }
                DeValue::Array(items) if path.is_empty() && key.get_ref() == "pool" => {
                    self.pools(items, line)
                }
                DeValue::Array(items) if path.is_empty() && key.get_ref() == "upstream" => {
                    self.upstreams(items, line)
                }
                DeValue::Table(inner) => self.table(inner, &key_path),
                _ => self.option(value, &key_path, line),
            }
        }
    }

    fn option(&mut self, value: &Spanned<DeValue<'_>>, key_path: &[String], line: usize) {
        let dotted = key_path.join(".");
        let name = key_path.join("-").to_ascii_lowercase().replace('_', "-");
        let spec = match options::find(&name) {
            Some(spec) if spec.field != "config" => spec,
            Some(_) => {
                return self.errors.push(format!(
                    "{}:{line}: {dotted}: cannot be set in the config file",
                    self.file
                ))
            }
            None => {
                return self
                    .errors
                    .push(format!("{}:{line}: unknown option {dotted:?}", self.file))
            }
        };
        let text = match value.get_ref() {
            DeValue::Array(items) => {
                let parts: Option<Vec<String>> =
                    items.iter().map(|i| scalar_text(i, &self.index)).collect();
                parts.map(|p| p.join(","))
            }
            _ => scalar_text(value, &self.index),
        };
        match text {
            Some(text) => {
                self.out.values.insert(
                    spec.name(),
                    FileValue {
                        text,
                        line,
                        key: dotted,
                    },
                );
            }
            None => self.errors.push(format!(
                "{}:{line}: {dotted}: expected a string, number, boolean or list",
                self.file
            )),
        }
    }

    fn profiles(&mut self, table: &DeTable<'_>) {
        for (name, value) in table.iter() {
            let mut node = inventory::toml::node(value, &self.index);
            let pins = self.take_pins(&mut node, name.get_ref());
            match inventory::boot_profile(&node, &self.file, name.get_ref()) {
                Ok(profile) => {
                    self.add_pins(&profile, name.get_ref(), pins);
                    self.out
                        .profiles
                        .insert(name.get_ref().to_string(), profile);
                }
                Err(problems) => self.errors.extend(problems.iter().map(ToString::to_string)),
            }
        }
    }

    /// Takes a profile's `sha256` table (asset path = digest) out of its node, so the
    /// profile reader sees kernel, initrd and cmdline only.
    fn take_pins(&mut self, node: &mut Node, profile: &str) -> Vec<(String, Sha256, usize)> {
        let mut out = Vec::new();
        let Value::Map(entries) = &mut node.value else {
            return out;
        };
        let Some(at) = entries.iter().position(|e| e.key == "sha256") else {
            return out;
        };
        let entry = entries.remove(at);
        let pins = match entry.value.value {
            Value::Map(pins) => pins,
            _ => vec![Entry {
                key: String::new(),
                key_line: entry.key_line,
                value: Node {
                    line: entry.key_line,
                    value: Value::Null,
                },
            }],
        };
        for pin in pins {
            let text = match &pin.value.value {
                Value::Text(t) => t.as_str(),
                _ => "",
            };
            match super::assets::sha256(text) {
                Ok(d) => out.push((pin.key.trim_start_matches('/').to_string(), d, pin.key_line)),
                Err(why) => self.errors.push(format!(
                    "{}:{}: profiles.{profile}.sha256 {:?}: {why} (a table of asset path = digest)",
                    self.file, pin.key_line, pin.key
                )),
            }
        }
        out
    }

    /// Keeps a profile's pinned digests: each names the profile's kernel or one of its
    /// initrds (a path, not a URL), and no path is pinned to two digests.
    fn add_pins(&mut self, profile: &BootProfile, name: &str, pins: Vec<(String, Sha256, usize)>) {
        for (path, digest, line) in pins {
            let own = std::iter::once(&profile.kernel)
                .chain(&profile.initrd)
                .any(|a| *a == path);
            let other = self.out.pinned.iter().find(|(p, _)| *p == path);
            let why = match other {
                _ if !own => "names neither the profile's kernel nor one of its initrds",
                Some((_, d)) if *d != digest => "another profile pins a different digest",
                Some(_) => continue,
                None => {
                    self.out.pinned.push((path, digest));
                    continue;
                }
            };
            self.errors.push(format!(
                "{}:{line}: profiles.{name}.sha256 {path:?}: {why}",
                self.file
            ));
        }
    }
}

impl Reader<'_> {
    /// `[hostnames]`: `TYPE = "pattern"` per SMD component type, `default` for the rest.
    fn hostnames(&mut self, table: &DeTable<'_>) {
        for (name, value) in table.iter() {
            let line = self.index.line_of(name.span().start);
            let key = name.get_ref().to_ascii_lowercase();
            let parsed = match value.get_ref() {
                DeValue::String(text) => hostname::Pattern::parse(text),
                _ => Err("expected a pattern in quotes, e.g. \"nid{04d}\"".into()),
            };
            match parsed {
                Ok(pattern) => {
                    self.out.hostnames.insert(key, pattern);
                }
                Err(why) => self.errors.push(format!(
                    "{}:{line}: hostnames.{}: {why}",
                    self.file,
                    name.get_ref()
                )),
            }
        }
    }

    /// `[[pool]]`: one table per pool (see [`super::pools::parse_pool`]).
    fn pools(&mut self, items: &[Spanned<DeValue<'_>>], line: usize) {
        for (i, item) in items.iter().enumerate() {
            let node = inventory::toml::node(item, &self.index);
            if !matches!(item.get_ref(), DeValue::Table(_)) {
                self.errors.push(format!(
                    "{}:{line}: pool: expected [[pool]] tables",
                    self.file
                ));
                continue;
            }
            let file = self.file.clone();
            let at = move |line: usize, key: &str, why: String| {
                format!("{file}:{line}: pool[{}].{key}: {why}", i + 1)
            };
            match super::pools::parse_pool(&node, i + 1, &at) {
                Ok(pool) => self.out.pools.push(pool),
                Err(errors) => self.errors.extend(errors),
            }
        }
    }

    /// `[[upstream]]`: one table per mirror (see [`super::assets::parse_upstream`]).
    fn upstreams(&mut self, items: &[Spanned<DeValue<'_>>], line: usize) {
        for (i, item) in items.iter().enumerate() {
            if !matches!(item.get_ref(), DeValue::Table(_)) {
                self.errors.push(format!(
                    "{}:{line}: upstream: expected [[upstream]] tables",
                    self.file
                ));
                continue;
            }
            let node = inventory::toml::node(item, &self.index);
            let file = self.file.clone();
            let at = move |line: usize, key: &str, why: String| {
                format!("{file}:{line}: upstream[{}].{key}: {why}", i + 1)
            };
            match super::assets::parse_upstream(&node, &at) {
                Ok(upstream) => self.out.upstreams.push(upstream),
                Err(errors) => self.errors.extend(errors),
            }
        }
    }

    /// `[subnets.NAME]`: `cidr` (required), `gateway`, `dns` (a list), `domain`, `lease-time`.
    fn subnets(&mut self, table: &DeTable<'_>) {
        for (name, value) in table.iter() {
            let name = name.get_ref().to_string();
            let node = inventory::toml::node(value, &self.index);
            match self.subnet(&name, &node) {
                Ok(subnet) => {
                    self.out.subnets.insert(name, subnet);
                }
                Err(errors) => self.errors.extend(errors),
            }
        }
    }

    fn subnet(&self, name: &str, node: &Node) -> Result<SubnetSettings, Vec<String>> {
        let at = |line: usize, key: &str, why: String| {
            format!("{}:{line}: subnets.{name}.{key}: {why}", self.file)
        };
        let Value::Map(entries) = &node.value else {
            return Err(vec![at(node.line, "", "expected a table".into())]);
        };
        let mut errors = Vec::new();
        let mut cidr = None;
        let (mut gateway, mut name_servers, mut domain, mut lease_time) =
            (None, vec![], None, None);
        for entry in entries {
            let line = entry.value.line;
            let texts = texts_of(&entry.value.value);
            let one = texts.first().copied().unwrap_or("");
            let key = entry.key.as_str();
            let result = match normalize_key(key).as_str() {
                "cidr" => value::Cidr::parse(one)
                    .and_then(|c| match c.addr {
                        std::net::IpAddr::V4(_) => Ok(c),
                        _ => Err("an IPv4 network is needed".into()),
                    })
                    .map(|c| cidr = Some(c)),
                "gateway" => value::ipv4(one).map(|ip| gateway = Some(ip)),
                "dns" | "nameservers" => texts
                    .iter()
                    .map(|t| value::ipv4(t))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|ips| name_servers = ips),
                "domain" => value::host(one).map(|d| domain = Some(d)),
                "leasetime" => one
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .map(|s| lease_time = Some(s))
                    .ok_or_else(|| "expected seconds, 1 or more".to_string()),
                _ => Err("unknown key (cidr, gateway, dns, domain, lease-time)".into()),
            };
            if let Err(why) = result {
                errors.push(at(line, key, why));
            }
        }
        let Some(cidr) = cidr else {
            errors.push(at(node.line, "cidr", "required".into()));
            return Err(errors);
        };
        if let Some(gw) = gateway {
            // A /31 or /32 is a routed point-to-point link: the gateway is outside (RFC 3021).
            if !cidr.contains(gw.into()) && cidr.prefix < 31 {
                errors.push(at(node.line, "gateway", format!("{gw} is outside {cidr}")));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SubnetSettings {
            name: name.to_string(),
            cidr,
            gateway,
            name_servers,
            domain,
            lease_time,
        })
    }
}

/// A table value as text: a string, or a list's strings (anything else: none).
pub(super) fn texts_of(value: &Value) -> Vec<&str> {
    match value {
        Value::Text(t) => vec![t.as_str()],
        Value::List(items) => items
            .iter()
            .filter_map(|i| match &i.value {
                Value::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn scalar_text(value: &Spanned<DeValue<'_>>, index: &LineIndex) -> Option<String> {
    match inventory::toml::node(value, index).value {
        inventory::doc::Value::Text(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_sectioned_keys_name_the_same_options() {
        let text = "log_level = \"debug\"\n[dhcp]\nmode = \"proxy\"\nhttp-ipxe-script-port = 80\n[tftp]\nblock-size = 1468\n\
                    [http]\nport = 8081\n[trusted]\nproxies = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n";
        let file = parse(text, Path::new("n.toml")).unwrap();
        let get = |n: &str| file.values.get(n).map(|v| (v.text.as_str(), v.line));
        assert_eq!(get("log-level"), Some(("debug", 1)));
        assert_eq!(get("dhcp-mode"), Some(("proxy", 3)));
        assert_eq!(get("dhcp-http-ipxe-script-port"), Some(("80", 4)));
        assert_eq!(get("tftp-block-size"), Some(("1468", 6)));
        assert_eq!(
            get("trusted-proxies"),
            Some(("10.0.0.0/8,192.168.0.0/16", 10))
        );
        assert_eq!(file.values["dhcp-mode"].key, "dhcp.mode");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_their_line() {
        let err = parse(
            "dhcp-mode = \"proxy\"\n\n[dhcp]\nmod = 1\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert_eq!(err, ["n.toml:4: unknown option \"dhcp.mod\""]);
        let err = parse("a = \n", Path::new("n.toml")).unwrap_err();
        assert!(err[0].starts_with("n.toml:1: "), "{err:?}");
        let err = parse("config = \"x\"\n", Path::new("n.toml")).unwrap_err();
        assert!(err[0].contains("cannot be set"), "{err:?}");
    }

    #[test]
    fn hostname_patterns_are_read_and_checked() {
        let file = parse(
            "[hostnames]\nNode = \"nid{04d}\"\ndefault = \"{id}\"\n",
            Path::new("n.toml"),
        )
        .unwrap();
        assert_eq!(file.hostnames.len(), 2);
        assert!(file.hostnames.contains_key("node"));
        let err = parse(
            "[hostnames]\nNode = \"nid{4d}\"\nNodeBMC = 3\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert!(
            err.iter()
                .any(|e| e.contains("n.toml:2: hostnames.Node: \"nid{4d}\": unknown placeholder")),
            "{err:?}"
        );
        assert!(
            err.iter()
                .any(|e| e.contains("n.toml:3: hostnames.NodeBMC: expected a pattern")),
            "{err:?}"
        );
    }

    #[test]
    fn subnets_are_read_and_checked() {
        let text = "[subnets.compute]\ncidr = \"10.100.0.0/16\"\ngateway = \"10.100.0.1\"\ndns = [\"10.100.0.2\", \"10.100.0.3\"]\ndomain = \"cluster.example\"\nlease-time = 3600\n[subnets.bmc]\ncidr = \"10.254.0.0/16\"\n";
        let file = parse(text, Path::new("n.toml")).unwrap();
        let compute = &file.subnets["compute"];
        assert_eq!(compute.cidr.to_string(), "10.100.0.0/16");
        assert_eq!(compute.name_servers.len(), 2);
        assert_eq!(
            (compute.lease_time, compute.domain.as_deref()),
            (Some(3600), Some("cluster.example"))
        );
        assert_eq!(file.subnets["bmc"].gateway, None);
        let err = parse(
            "[subnets.x]\ngateway = \"10.0.0.1\"\n[subnets.y]\ncidr = \"10.1.0.0/16\"\ngateway = \"10.2.0.1\"\nrouters = 1\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert!(
            err.iter().any(|e| e.contains("subnets.x.cidr: required")),
            "{err:?}"
        );
        assert!(
            err.iter()
                .any(|e| e.contains("n.toml:6: subnets.y.routers: unknown key")),
            "{err:?}"
        );
    }

    #[test]
    fn profiles_are_validated() {
        let text = "[profiles.debian]\nkernel = \"http://10.0.0.1/vmlinuz\"\ninitrd = [\"http://10.0.0.1/initrd.img\"]\ncmdline = \"console=ttyS0\"\n\
                    [profiles.rescue]\nkernel = \"rescue/vmlinuz\"\ninitrd = \"rescue/initrd\"\n";
        let file = parse(text, Path::new("n.toml")).unwrap();
        assert_eq!(
            file.profiles["debian"].initrd,
            ["http://10.0.0.1/initrd.img"]
        );
        assert_eq!(file.profiles["rescue"].initrd, ["rescue/initrd"]);
        let err = parse(
            "[profiles.bad]\ninitrd = \"x\"\ncmd = \"y\"\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert!(
            err.iter()
                .any(|e| e.contains("n.toml:3:") && e.contains("profiles.bad.cmd")),
            "{err:?}"
        );
        let err = parse(
            "[profiles.bad]\nkernel = \"../etc/passwd\"\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert!(
            err[0].contains("n.toml:2:") && err[0].contains("profiles.bad.kernel"),
            "{err:?}"
        );
    }

    #[test]
    fn profiles_pin_digests_of_their_own_assets() {
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        let text = format!(
            "[profiles.d]\nkernel = \"deb/linux\"\ninitrd = [\"deb/initrd.gz\"]\n\
             sha256 = {{ \"deb/linux\" = \"{a}\", \"deb/initrd.gz\" = \"{b}\" }}\n\
             [profiles.e]\nkernel = \"deb/linux\"\nsha256 = {{ \"deb/linux\" = \"{a}\" }}\n\
             [[upstream]]\nprefix = \"deb\"\nurl = \"http://m/d\"\nsha256sums = \"images/SHA256SUMS\"\n"
        );
        let file = parse(&text, Path::new("n.toml")).unwrap();
        assert_eq!(
            file.pinned,
            [
                ("deb/linux".to_string(), [0xab; 32]),
                ("deb/initrd.gz".to_string(), [0xcd; 32])
            ]
        );
        assert_eq!(file.profiles["d"].kernel, "deb/linux");
        assert_eq!(
            file.upstreams[0].sha256sums.as_deref(),
            Some("images/SHA256SUMS")
        );
        let bad = format!(
            "[profiles.d]\nkernel = \"deb/linux\"\nsha256 = {{ \"deb/other\" = \"{a}\", \"deb/linux\" = \"xy\" }}\n\
             [profiles.e]\nkernel = \"deb/linux\"\nsha256 = {{ \"deb/linux\" = \"{b}\" }}\n\
             [profiles.f]\nkernel = \"deb/linux\"\nsha256 = \"{a}\"\n"
        );
        let err = parse(&bad, Path::new("n.toml")).unwrap_err();
        for expected in [
            "profiles.d.sha256 \"deb/linux\": expected a SHA-256",
            "profiles.d.sha256 \"deb/other\": names neither",
            "n.toml:9: profiles.f.sha256 \"\": expected a SHA-256 digest: 64 hex digits (a table",
        ] {
            assert!(
                err.iter().any(|e| e.contains(expected)),
                "{expected}: {err:?}"
            );
        }
        let other = format!(
            "[profiles.d]\nkernel = \"k\"\nsha256 = {{ k = \"{a}\" }}\n\
             [profiles.e]\nkernel = \"k\"\nsha256 = {{ k = \"{b}\" }}\n"
        );
        let err = parse(&other, Path::new("n.toml")).unwrap_err();
        assert!(
            err[0].contains("another profile pins a different digest"),
            "{err:?}"
        );
    }
}
