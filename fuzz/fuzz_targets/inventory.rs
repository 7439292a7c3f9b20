//! The operator's files: any text loads or is refused with named problems, never a panic, as
//! a hardware file in YAML and in TOML and as a config file. What loads is consistent: no MAC
//! twice, no address twice, and no address a host cannot have; a record left out has an error.
//! The same bytes as SMD's two collections: joined or refused, never a panic.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netbootd::inventory::hostname::Pattern;
use netbootd::inventory::json;
use netbootd::inventory::pixiecore;
use netbootd::inventory::smd::{self, SmdRules};
use netbootd::inventory::{load_str, Format, Profiles, SubnetSettings};
use netbootd::value::Cidr;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for format in [Format::Yaml, Format::Toml] {
        match load_str(&text, format, "fuzz", &Profiles::new()) {
            Ok(loaded) => {
                // A record left out is always explained by an error.
                assert!(loaded.refused == 0 || !loaded.errors.is_empty());
                let mut macs = HashSet::new();
                let mut ips = HashSet::new();
                for m in loaded.inventory.machines() {
                    assert!(macs.insert(m.mac), "MAC {} twice", m.mac);
                    if let Some(ip) = m.ip_address {
                        assert!(!ip.is_multicast() && !ip.is_broadcast(), "{ip}");
                        assert!(ips.insert(ip), "IP {ip} twice");
                    }
                }
            }
            Err(problems) => assert!(!problems.is_empty()),
        }
    }
    let _ = netbootd::config::file::parse(&text, Path::new("fuzz.toml"));
    // SMD's two collections (remote input): any bytes, split in two, load or are refused.
    let (interfaces, components) = data.split_at(data.len() / 2);
    let rules = SmdRules {
        subnets: vec![SubnetSettings {
            name: "all".into(),
            cidr: Cidr::parse("10.0.0.0/8").unwrap(),
            gateway: None,
            name_servers: vec![],
            domain: None,
            lease_time: None,
        }],
        hostnames: [("node", "nid{04d}"), ("default", "{id}-x")]
            .into_iter()
            .map(|(k, p)| (k.to_string(), Pattern::parse(p).unwrap()))
            .collect(),
    };
    // Any bytes as a JSON inventory (--backend-http-url): loaded or refused.
    if let Ok(loaded) = json::load(data, "fuzz", &Profiles::new()) {
        assert!(loaded.refused == 0 || !loaded.errors.is_empty());
    }
    // Any bytes as a pixiecore API answer: a machine or a reason.
    let _ = pixiecore::machine(netbootd::wire::MacAddr([2, 0, 0, 0, 0, 1]), data);
    // Any text as a host-name pattern: parsed or refused, rendered without a panic.
    if let Ok(pattern) = Pattern::parse(&text) {
        let _ = pattern.render(&text, Some(u64::MAX));
    }
    if let Ok(loaded) = smd::load(interfaces, components, &rules) {
        assert!(loaded.refused == 0 || !loaded.errors.is_empty());
        assert!(loaded.errors.len() <= 101);
        let mut macs = HashSet::new();
        for m in loaded.inventory.machines() {
            assert!(macs.insert(m.mac), "MAC {} twice", m.mac);
        }
    }
});
