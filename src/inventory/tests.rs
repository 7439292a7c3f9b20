//! Tests of loading and validation: Smee compatibility, and the exact messages for bad input.

use std::net::Ipv4Addr;

use super::*;

const EVERY_FIELD: &str = include_str!("../../tests/fixtures/smee-every-field.yaml");

fn load(text: &str) -> Result<Loaded, Vec<Problem>> {
    load_str(text, Format::Yaml, "hw.yaml", &Profiles::new())
}

/// The errors of a file: those that refuse it whole, or those that left records out.
fn errors(text: &str) -> Vec<String> {
    let problems = match load(text) {
        Err(problems) => problems,
        Ok(loaded) => loaded.errors,
    };
    assert!(!problems.is_empty(), "should have errors");
    problems.iter().map(ToString::to_string).collect()
}

fn warnings(text: &str) -> Vec<String> {
    load(text)
        .expect("should load")
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn mac(s: &str) -> MacAddr {
    MacAddr::parse(s).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn a_smee_file_with_every_field_loads_with_the_right_values() {
    let loaded = load(EVERY_FIELD).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let inv = &loaded.inventory;
    assert_eq!((inv.len(), inv.netboot_count()), (4, 2));
    let m = inv.by_mac(mac("52:54:00:12:34:56")).unwrap();
    let want = Machine {
        mac: mac("52:54:00:12:34:56"),
        ip_address: Some(ip("10.77.0.51")),
        subnet_mask: Some(ip("255.255.0.0")),
        default_gateway: Some(ip("10.77.0.1")),
        name_servers: vec![ip("1.1.1.1"), ip("8.8.8.8")],
        hostname: Some("node1".into()),
        domain_name: Some("lab.example".into()),
        broadcast_address: Some(ip("10.77.255.255")),
        ntp_servers: vec![ip("10.77.0.1")],
        lease_time: 86400,
        domain_search: vec!["lab.example".into(), "example".into()],
        routes: Vec::new(),
        vlan_id: Some(16),
        arch: Some("x86_64".into()),
        xname: None,
        nid: None,
        other_addresses: Vec::new(),
        disabled: false,
        netboot: Netboot {
            allow_pxe: true,
            ipxe_script_url: Some("http://10.77.0.1/boot.ipxe".into()),
            ipxe_script: None,
            facility: Some("onprem".into()),
            console: Some("ttyS0,115200".into()),
            ipxe_binary: None,
            loader: None,
            osie_base_url: None,
            osie_kernel: None,
            osie_initrd: None,
        },
        boot: None,
    };
    assert_eq!(m, &want);
    let cli = inv.by_ip(ip("10.77.0.50")).unwrap();
    assert_eq!(cli.mac, mac("02:77:00:00:00:50"));
    assert_eq!(
        cli.vlan_id,
        Some(17),
        "numbers where Smee has strings are accepted"
    );
    assert_eq!(
        cli.lease_time, DEFAULT_LEASE_TIME,
        "a missing leaseTime is not 0"
    );
    assert!(cli
        .netboot
        .ipxe_script
        .as_deref()
        .unwrap()
        .starts_with("#!ipxe\necho hello"));
    let noboot = inv.by_mac(mac("52:54:00:aa:bb:cc")).unwrap();
    assert!(!noboot.netboots() && !noboot.disabled);
    assert!(inv.by_mac(mac("52:54:00:aa:bb:cd")).unwrap().disabled);
    assert!(inv.by_mac(mac("52:54:00:00:00:00")).is_none());
    assert!(inv.by_ip(ip("10.77.0.99")).is_none());
}

#[test]
fn field_name_case_and_mac_forms_do_not_matter() {
    let canonical = load("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.255.0\n  netboot:\n    allowPxe: true\n").unwrap();
    for variant in [
        "52:54:00:AB:CD:EF:\n  IPADDRESS: 10.0.0.5\n  SubnetMask: 255.255.255.0\n  NetBoot:\n    allowpxe: true\n",
        "52-54-00-ab-cd-ef:\n  ipaddress: 10.0.0.5\n  subnetmask: 255.255.255.0\n  netboot:\n    ALLOWPXE: \"true\"\n",
        "\"5254.00ab.cdef\":\n  ip_address: 10.0.0.5\n  subnet_mask: 255.255.255.0\n  netboot:\n    allow_pxe: yes\n",
    ] {
        let loaded = load(variant).unwrap_or_else(|e| panic!("{variant}: {e:?}"));
        assert!(
            loaded.inventory.machines().eq(canonical.inventory.machines()),
            "{variant}"
        );
        assert!(loaded.warnings.is_empty());
    }
}

#[test]
fn unknown_fields_warn_once_each_and_are_ignored() {
    let w = warnings("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.255.0\n  rack: r12\n  netboot:\n    allowPxe: true\n    osie: {x: 1}\n");
    assert_eq!(
        w,
        [
            "hw.yaml:4: 52:54:00:ab:cd:ef: rack: unknown field ignored",
            "hw.yaml:7: 52:54:00:ab:cd:ef: netboot.osie: unknown field ignored",
        ]
    );
}

#[test]
fn bad_input_names_file_line_mac_and_field() {
    let cases: &[(&str, &str)] = &[
        ("52:54:00:ab:cd:zz:\n  ipAddress: 10.0.0.5\n",
         "hw.yaml:1: 52:54:00:ab:cd:zz: not a MAC address (expected aa:bb:cc:dd:ee:ff, aa-bb-..., aabb.ccdd.eeff)"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n52-54-00-AB-CD-EF:\n  ipAddress: 10.0.0.6\n  subnetMask: 255.0.0.0\n",
         "hw.yaml:4: 52-54-00-AB-CD-EF: duplicate MAC: 52:54:00:ab:cd:ef is already defined at line 1"),
        ("52:54:00:ab:cd:01:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n52:54:00:ab:cd:02:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n",
         "hw.yaml:5: 52:54:00:ab:cd:02: ipAddress: duplicate IP: 10.0.0.5 is already given to 52:54:00:ab:cd:01 at line 1"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.300\n  subnetMask: 255.0.0.0\n",
         "hw.yaml:2: 52:54:00:ab:cd:ef: ipAddress: \"10.0.0.300\": not an IPv4 address"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.255.0\n",
         "hw.yaml:3: 52:54:00:ab:cd:ef: subnetMask: 255.0.255.0 is not a contiguous netmask"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.255.0\n  defaultGateway: 10.0.1.1\n",
         "hw.yaml:4: 52:54:00:ab:cd:ef: defaultGateway: 10.0.1.1 is outside the subnet 10.0.0.0/24"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n",
         "hw.yaml:1: 52:54:00:ab:cd:ef: subnetMask: required when ipAddress is set"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n  leaseTime: -1\n",
         "hw.yaml:4: 52:54:00:ab:cd:ef: leaseTime: \"-1\": expected seconds 0..4294967295"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n  vlanID: 5000\n",
         "hw.yaml:4: 52:54:00:ab:cd:ef: vlanID: \"5000\": expected a VLAN ID 1..4094"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n  netboot:\n    allowPxe: perhaps\n",
         "hw.yaml:5: 52:54:00:ab:cd:ef: netboot.allowPxe: \"perhaps\": expected true or false"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n  hostname: \"a b\"\n",
         "hw.yaml:4: 52:54:00:ab:cd:ef: hostname: \"a b\": contains spaces, quotes, $, \\ or control characters"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n  netboot:\n    facility: \"x\\nkernel evil\"\n",
         "hw.yaml:5: 52:54:00:ab:cd:ef: netboot.facility: \"x\\nkernel evil\": contains spaces, quotes, $, \\ or control characters"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n  netboot:\n    ipxeScriptUrl: \"javascript:alert(1)\"\n",
         "hw.yaml:5: 52:54:00:ab:cd:ef: netboot.ipxeScriptUrl: \"javascript:alert(1)\": expected a http or https or tftp URL"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  ipaddress: 10.0.0.6\n  subnetMask: 255.0.0.0\n",
         "hw.yaml:3: 52:54:00:ab:cd:ef: ipAddress: given twice (first at line 2)"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: [10.0.0.5]\n  subnetMask: 255.0.0.0\n",
         "hw.yaml:2: 52:54:00:ab:cd:ef: ipAddress: expected a single value"),
        ("- 52:54:00:ab:cd:ef\n", "hw.yaml:1: expected a map of machines keyed by MAC address"),
        ("52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: [255.0.0.0\n", "hw.yaml:4: "),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert!(
            got[0].starts_with(want),
            "for\n{text}\nwant {want}\ngot  {got:?}"
        );
    }
}

#[test]
fn all_errors_are_reported_at_once_up_to_a_cap() {
    let mut text = String::new();
    for i in 0..150 {
        text.push_str(&format!(
            "02:00:00:00:00:{i:02x}:\n  ipAddress: bad\n  subnetMask: 255.0.0.0\n"
        ));
    }
    let got = errors(&text);
    assert_eq!(got.len(), 101);
    assert!(
        got[100].ends_with("50 more errors not shown"),
        "{}",
        got[100]
    );
}

#[test]
fn soft_problems_are_warnings() {
    let w = warnings(
        "52:54:00:ab:cd:ef:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.255.0\n  leaseTime: 0\n  broadcastAddress: 10.0.0.254\n  netboot:\n    ipxeScriptUrl: http://x/a\n    ipxeScript: \"#!ipxe\"\n\
         52:54:00:ab:cd:00:\n  hostname: proxy-only\n",
    );
    assert_eq!(
        w,
        [
            "hw.yaml:4: 52:54:00:ab:cd:ef: leaseTime: 0 would make clients renew constantly; using 86400",
            "hw.yaml:8: 52:54:00:ab:cd:ef: netboot.ipxeScript: ignored: ipxeScriptUrl is also set and wins",
            "hw.yaml:5: 52:54:00:ab:cd:ef: broadcastAddress: 10.0.0.254 is not the subnet's broadcast address 10.0.0.255",
            "hw.yaml:9: 52:54:00:ab:cd:00: ipAddress: no address: this machine gets boot information only in proxy modes",
        ]
    );
}

#[test]
fn yaml_anchors_share_settings() {
    let text = "defaults: &d\n  subnetMask: 255.255.255.0\n  defaultGateway: 10.0.0.1\n";
    // `defaults` is not a MAC: refused, as Smee would fail on it.
    assert!(errors(text)[0].contains("not a MAC address"));
    let text = "52:54:00:00:00:01: &d\n  subnetMask: 255.255.255.0\n  defaultGateway: 10.0.0.1\n  ipAddress: 10.0.0.2\n\
                52:54:00:00:00:02:\n  <<: *d\n  ipAddress: 10.0.0.3\n";
    let inv = load(text).unwrap().inventory;
    let m = inv.by_mac(mac("52:54:00:00:00:02")).unwrap();
    assert_eq!(
        (m.ip_address, m.default_gateway),
        (Some(ip("10.0.0.3")), Some(ip("10.0.0.1")))
    );
}

#[test]
fn empty_files_are_empty_inventories() {
    for text in ["", "---\n", "# nothing yet\n"] {
        assert!(load(text).unwrap().inventory.is_empty());
    }
}

#[test]
fn toml_hardware_files_load_the_same_model() {
    let toml = "[[machine]]\nmac = \"52:54:00:12:34:56\"\nipAddress = \"10.77.0.51\"\nsubnet_mask = \"255.255.0.0\"\n\
                defaultGateway = \"10.77.0.1\"\nnameServers = [\"1.1.1.1\", \"8.8.8.8\"]\nhostname = \"node1\"\n\
                domainName = \"lab.example\"\nbroadcastAddress = \"10.77.255.255\"\nntpServers = [\"10.77.0.1\"]\n\
                leaseTime = 86400\ndomainSearch = [\"lab.example\", \"example\"]\nvlanID = 16\narch = \"x86_64\"\ndisabled = false\n\
                [machine.netboot]\nallowPxe = true\nipxeScriptUrl = \"http://10.77.0.1/boot.ipxe\"\nfacility = \"onprem\"\nconsole = \"ttyS0,115200\"\n";
    let from_toml = load_str(toml, Format::Toml, "hw.toml", &Profiles::new()).unwrap();
    let from_yaml = load(EVERY_FIELD).unwrap();
    assert_eq!(
        from_toml.inventory.machines().next(),
        from_yaml.inventory.machines().next()
    );
    let bad = load_str(
        "[[machine]]\nipAddress = \"10.0.0.1\"\n[[machine]]\nmac = \"zz\"\n",
        Format::Toml,
        "hw.toml",
        &Profiles::new(),
    )
    .unwrap();
    assert_eq!(bad.refused, 2);
    let bad = bad.errors;
    assert_eq!(
        bad[0].to_string(),
        "hw.toml:1: mac: [[machine]] needs a mac"
    );
    assert_eq!(bad[1].to_string(), "hw.toml:4: zz: mac: not a MAC address (expected aa:bb:cc:dd:ee:ff, aa-bb-..., aabb.ccdd.eeff)");
}

#[test]
fn boot_profiles_resolve_with_machine_overrides() {
    let mut profiles = Profiles::new();
    profiles.insert(
        "debian".into(),
        BootProfile {
            kernel: "debian/vmlinuz".into(),
            initrd: vec!["debian/initrd.img".into()],
            cmdline: "console=ttyS0".into(),
        },
    );
    let text = "52:54:00:00:00:01:\n  ipAddress: 10.0.0.2\n  subnetMask: 255.0.0.0\n  boot:\n    profile: debian\n    cmdline: console=ttyS1 quiet\n\
                52:54:00:00:00:02:\n  ipAddress: 10.0.0.3\n  subnetMask: 255.0.0.0\n  boot:\n    kernel: http://10.0.0.1/k\n    initrd: http://10.0.0.1/i\n";
    let inv = load_str(text, Format::Yaml, "hw.yaml", &profiles)
        .unwrap()
        .inventory;
    let one = inv
        .by_mac(mac("52:54:00:00:00:01"))
        .unwrap()
        .boot
        .clone()
        .unwrap();
    assert_eq!(one.profile.as_deref(), Some("debian"));
    assert_eq!(
        one.resolved,
        BootProfile {
            kernel: "debian/vmlinuz".into(),
            initrd: vec!["debian/initrd.img".into()],
            cmdline: "console=ttyS1 quiet".into()
        }
    );
    let two = inv
        .by_mac(mac("52:54:00:00:00:02"))
        .unwrap()
        .boot
        .clone()
        .unwrap();
    assert_eq!(two.resolved.initrd, ["http://10.0.0.1/i"]);

    let bad = load_str(
        "52:54:00:00:00:01:\n  boot:\n    profile: ubuntu\n",
        Format::Yaml,
        "hw.yaml",
        &profiles,
    )
    .unwrap()
    .errors;
    assert_eq!(bad[0].to_string(), "hw.yaml:3: 52:54:00:00:00:01: boot.profile: unknown profile \"ubuntu\" (the config defines: debian)");
    let bad = load_str(
        "52:54:00:00:00:01:\n  boot:\n    cmdline: x\n",
        Format::Yaml,
        "hw.yaml",
        &profiles,
    )
    .unwrap()
    .errors;
    assert_eq!(
        bad[0].to_string(),
        "hw.yaml:2: 52:54:00:00:00:01: boot: no kernel: set boot.kernel or boot.profile"
    );
    let bad = load_str(
        "52:54:00:00:00:01:\n  boot:\n    kernel: /etc/shadow\n",
        Format::Yaml,
        "hw.yaml",
        &profiles,
    )
    .unwrap()
    .errors;
    assert!(
        bad[0]
            .to_string()
            .starts_with("hw.yaml:3: 52:54:00:00:00:01: boot.kernel: \"/etc/shadow\""),
        "{}",
        bad[0]
    );
}

#[test]
fn diff_counts_changes() {
    let old = load("02:00:00:00:00:01:\n  hostname: a\n02:00:00:00:00:02:\n  hostname: b\n")
        .unwrap()
        .inventory;
    let new = load("02:00:00:00:00:02:\n  hostname: B\n02:00:00:00:00:03:\n  hostname: c\n")
        .unwrap()
        .inventory;
    assert_eq!(new.diff(&old), (1, 1, 1));
}

/// Very deep nesting is refused by the parsers' depth limits instead of overflowing the stack
/// (which would abort the process, uncatchably).
#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let depth = 100_000;
    let yaml = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(load_str(&yaml, Format::Yaml, "deep.yaml", &Profiles::new()).is_err());
    let yaml = format!("a: {}1{}", "{b: ".repeat(depth), "}".repeat(depth));
    assert!(load_str(&yaml, Format::Yaml, "deep.yaml", &Profiles::new()).is_err());
    let toml = format!("a = {}1{}", "[".repeat(depth), "]".repeat(depth));
    assert!(load_str(&toml, Format::Toml, "deep.toml", &Profiles::new()).is_err());
    let toml = format!("a = {}1{}", "{b = ".repeat(depth), "}".repeat(depth));
    assert!(load_str(&toml, Format::Toml, "deep.toml", &Profiles::new()).is_err());
}

#[test]
fn ipxe_binary_is_a_plain_file_name() {
    let ok =
        load("02:00:00:00:00:01:\n  netboot:\n    allowPxe: true\n    ipxeBinary: snponly.efi\n")
            .unwrap();
    let m = ok.inventory.by_mac(mac("02:00:00:00:00:01")).unwrap();
    assert_eq!(m.netboot.ipxe_binary.as_deref(), Some("snponly.efi"));
    for bad in ["../etc/passwd", "a b", "x/ipxe.efi", ".hidden"] {
        let e = errors(&format!(
            "02:00:00:00:00:01:\n  netboot:\n    ipxeBinary: \"{bad}\"\n"
        ));
        assert!(
            e.iter().any(|l| l.contains("netboot.ipxeBinary")),
            "{bad}: {e:?}"
        );
    }
}

/// Entries no real machine can have are refused, each naming its field; loopback is a warning
/// (the loopback tests use it).
#[test]
fn impossible_macs_and_addresses_are_refused() {
    let one = |mac: &str, ip: &str, mask: &str| {
        format!("{mac}:\n  ipAddress: {ip}\n  subnetMask: {mask}\n")
    };
    for (mac, why) in [
        ("ff:ff:ff:ff:ff:ff", "is the broadcast address"),
        ("01:00:5e:00:00:01", "is a multicast address"),
        ("00:00:00:00:00:00", "is all zeros"),
    ] {
        let errors = load(&one(mac, "10.0.0.5", "255.255.255.0")).unwrap().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains(why), "{}", errors[0]);
    }
    for (ip, mask, why) in [
        ("224.0.0.9", "255.0.0.0", "multicast"),
        ("239.1.2.3", "255.255.255.0", "multicast"),
        ("240.0.0.1", "255.0.0.0", "reserved"),
        ("255.255.255.255", "255.255.255.0", "limited broadcast"),
        ("0.1.2.3", "255.0.0.0", "this network"),
        ("10.0.0.0", "255.255.255.0", "network or broadcast"),
        ("10.0.0.255", "255.255.255.0", "network or broadcast"),
    ] {
        let errors = load(&one("02:00:00:00:00:01", ip, mask)).unwrap().errors;
        assert_eq!(errors.len(), 1, "{ip}: {errors:?}");
        let text = errors[0].to_string();
        assert!(text.contains("ipAddress") && text.contains(why), "{text}");
    }
    // /31 and /32 have no network or broadcast address to avoid (RFC 3021).
    let p2p = load(&one("02:00:00:00:00:01", "10.0.0.0", "255.255.255.254")).unwrap();
    assert!(p2p.errors.is_empty() && p2p.inventory.len() == 1);
    let loaded = load(&one("02:00:00:00:00:01", "127.0.0.5", "255.0.0.0")).unwrap();
    assert!(
        loaded.warnings[0].to_string().contains("loopback"),
        "{:?}",
        loaded.warnings
    );
}

/// Smee's own fixture ends with a record whose `ipAddress` is "3": Smee serves the other four.
/// Here as our own file of the same shape: the bad record is left out, named, and counted.
#[test]
fn a_bad_record_is_left_out_and_the_others_serve() {
    let good = |mac: &str, ip: &str| {
        format!("{mac}:\n  ipAddress: \"{ip}\"\n  subnetMask: \"255.255.255.0\"\n  defaultGateway: \"192.0.2.1\"\n  netboot:\n    allowPxe: true\n")
    };
    let text = format!(
        "---\n{}{}{}{}02:00:5e:10:00:09: # bad data\n  ipAddress: \"3\"\n  subnetMask: \"255.255.255.0\"\n",
        good("02:00:5e:10:00:01", "192.0.2.11"),
        good("02:00:5e:10:00:02", "192.0.2.12"),
        good("02:00:5e:10:00:03", "192.0.2.13"),
        good("02:00:5e:10:00:04", "192.0.2.14"),
    );
    let loaded = load(&text).unwrap();
    assert_eq!((loaded.inventory.len(), loaded.refused), (4, 1));
    assert_eq!(
        loaded.errors[0].to_string(),
        "hw.yaml:27: 02:00:5e:10:00:09: ipAddress: \"3\": not an IPv4 address"
    );
    assert!(loaded.inventory.by_mac(mac("02:00:5e:10:00:04")).is_some());
    assert!(loaded.inventory.by_mac(mac("02:00:5e:10:00:09")).is_none());
    // --strict: the whole file is refused, as before.
    assert_eq!(load(&text).unwrap().strict(true).unwrap_err().len(), 1);
    // A refused record does not hold its address: a later record may have it.
    let text = "02:00:00:00:00:01:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.255.0\n  defaultGateway: 10.9.9.9\n02:00:00:00:00:02:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.255.0\n";
    let loaded = load(text).unwrap();
    assert_eq!((loaded.inventory.len(), loaded.refused), (1, 1));
    assert!(loaded.inventory.by_ip(ip("10.0.0.5")).is_some());
    // A syntax error still refuses the file.
    assert!(load("02:00:00:00:00:01:\n  ipAddress: [10.0.0.5\n").is_err());
}

/// What Smee tolerates is a warning with the value ignored, never an error; what could end up
/// in a script or an option is still refused.
#[test]
fn values_smee_tolerates_are_warnings() {
    let text = "02:00:00:00:00:01:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.255.0\n  defaultGateway: \"\"\n  broadcastAddress: \"\"\n  nameServers: [1.1.1.1, dns.example, \"\"]\n  ntpServers: [\"\", 10.0.0.1]\n";
    let loaded = load(text).unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let m = loaded.inventory.by_mac(mac("02:00:00:00:00:01")).unwrap();
    assert_eq!((m.default_gateway, m.broadcast_address), (None, None));
    assert_eq!(m.name_servers, [ip("1.1.1.1")]);
    assert_eq!(m.ntp_servers, [ip("10.0.0.1")]);
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.contains(&"hw.yaml:4: 02:00:00:00:00:01: defaultGateway: empty: ignored".to_string()),
        "{w:?}"
    );
    assert!(w.contains(&"hw.yaml:6: 02:00:00:00:00:01: nameServers: \"dns.example\": not an IPv4 address: entry ignored".to_string()), "{w:?}");
    assert_eq!(w.len(), 5, "{w:?}");
    // A gateway outside a /31 or /32 is a routed point-to-point link (RFC 3021).
    for mask in ["255.255.255.254", "255.255.255.255"] {
        let text = format!("02:00:00:00:00:01:\n  ipAddress: 10.0.0.5\n  subnetMask: {mask}\n  defaultGateway: 10.0.0.1\n");
        let loaded = load(&text).unwrap();
        assert!(
            loaded.errors.is_empty() && loaded.inventory.len() == 1,
            "{mask}: {:?}",
            loaded.errors
        );
    }
    // Still refused: text that would break a script line or an option.
    for bad in [
        "hostname: \"a reboot\"",
        "netboot:\n    facility: \"x\\nkernel evil\"",
    ] {
        let text = format!(
            "02:00:00:00:00:01:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.0.0.0\n  {bad}\n"
        );
        let loaded = load(&text).unwrap();
        assert_eq!((loaded.refused, loaded.inventory.len()), (1, 0), "{bad}");
    }
}

/// A remote look-up adds machines to a snapshot; one whose MAC or address is taken is not.
#[test]
fn machines_found_by_look_up_join_the_snapshot_unless_they_clash() {
    let base = load("02:00:00:00:00:01:\n  ipAddress: 10.0.0.1\n  subnetMask: 255.0.0.0\n")
        .unwrap()
        .inventory;
    let machine = |m: &str, ip: &str| Machine {
        mac: mac(m),
        ip_address: Some(self::ip(ip)),
        ..Machine::default()
    };
    let (merged, refused) = base.with_added(vec![
        machine("02:00:00:00:00:02", "10.0.0.2"),
        machine("02:00:00:00:00:01", "10.0.0.3"),
        machine("02:00:00:00:00:04", "10.0.0.1"),
        machine("02:00:00:00:00:05", "10.0.0.2"),
    ]);
    assert_eq!(merged.len(), 2);
    assert!(merged
        .by_ip(ip("10.0.0.2"))
        .is_some_and(|m| m.mac == mac("02:00:00:00:00:02")));
    assert_eq!(refused.len(), 3);
    assert!(!merged.is_pending());
    let (merged, _) =
        Inventory::pending().with_added(vec![machine("02:00:00:00:00:02", "10.0.0.2")]);
    assert!(merged.is_pending() && merged.len() == 1);
}

/// The hardware file over a remote source: a MAC in both is the file's; a remote machine with
/// an address the file gives another MAC is hidden; the rest of both is served; a remote
/// source with no snapshot yet leaves unknown MACs pending.
#[test]
fn the_file_is_served_over_a_remote_source_and_wins_every_clash() {
    let file = load(
        "02:00:00:00:00:01:\n  ipAddress: 10.0.0.1\n  subnetMask: 255.0.0.0\n  netboot: {allowPxe: true}\n\
         02:00:00:00:00:02:\n  ipAddress: 10.0.0.2\n  subnetMask: 255.0.0.0\n",
    )
    .unwrap()
    .inventory;
    let machine = |m: &str, ip: &str, pxe: bool| Machine {
        mac: mac(m),
        ip_address: Some(self::ip(ip)),
        netboot: Netboot {
            allow_pxe: pxe,
            ..Netboot::default()
        },
        ..Machine::default()
    };
    let (remote, _) = Inventory::default().with_added(vec![
        machine("02:00:00:00:00:01", "10.0.0.11", true),
        machine("02:00:00:00:00:03", "10.0.0.2", true),
        machine("02:00:00:00:00:04", "10.0.0.4", true),
    ]);
    let (file, remote) = (Arc::new(file), Arc::new(remote));
    let (both, clashes) = Inventory::layered(file.clone(), remote.clone());
    let names: Vec<String> = clashes.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "02:00:00:00:00:01: in both the hardware file and the remote source; the file entry is served",
            "02:00:00:00:00:03: its address 10.0.0.2 belongs to 02:00:00:00:00:02 in the hardware file; not served",
        ]
    );
    assert_eq!(
        both.by_mac(mac("02:00:00:00:00:01")).unwrap().ip_address,
        Some(ip("10.0.0.1"))
    );
    assert_eq!(both.by_mac(mac("02:00:00:00:00:03")), None);
    assert_eq!(
        both.by_ip(ip("10.0.0.11")),
        None,
        "the hidden remote entry's address"
    );
    assert_eq!(
        both.by_ip(ip("10.0.0.4")).unwrap().mac,
        mac("02:00:00:00:00:04")
    );
    assert_eq!((both.len(), both.netboot_count()), (3, 2));
    let macs: Vec<MacAddr> = both.machines().map(|m| m.mac).collect();
    assert_eq!(
        macs,
        [
            mac("02:00:00:00:00:01"),
            mac("02:00:00:00:00:02"),
            mac("02:00:00:00:00:04")
        ]
    );
    assert!(!both.is_pending());
    let (waiting, clashes) = Inventory::layered(file, Arc::new(Inventory::pending()));
    assert!(clashes.is_empty() && waiting.is_pending() && waiting.len() == 2);
}

#[test]
fn tinkerbell_hardware_lists_load_like_smees_map() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tinkerbell/hardware-list-example.yaml"
    ))
    .unwrap();
    let loaded = load(&text).unwrap();
    let inv = &loaded.inventory;
    assert_eq!(inv.len(), 4);
    let m = inv.by_mac("52:54:00:aa:88:2a".parse().unwrap()).unwrap();
    assert_eq!(m.ip_address, Some(Ipv4Addr::new(192, 168, 2, 15)));
    assert_eq!(m.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(m.default_gateway, Some(Ipv4Addr::new(192, 168, 2, 1)));
    assert_eq!(m.hostname.as_deref(), Some("sandbox"));
    assert_eq!(m.domain_name.as_deref(), Some("example.com"));
    assert_eq!(m.name_servers.len(), 2);
    assert_eq!(m.ntp_servers[0], Ipv4Addr::new(132, 163, 96, 2));
    assert_eq!(m.lease_time, 86400);
    assert!(m.netboot.allow_pxe);
    assert_eq!(
        m.netboot.ipxe_script_url.as_deref(),
        Some("https://boot.netboot.xyz")
    );
    // The bad object is refused, named by namespace/name, MAC and Hardware field.
    assert_eq!(loaded.refused, 1);
    let e = loaded.errors[0].to_string();
    assert!(
        e.contains("default/bad-data 08:00:27:29:4e:68: spec.interfaces[0].dhcp.ip.address: \"3\": not an IPv4 address"),
        "{e}"
    );
}

#[test]
fn tinkerbell_objects_interfaces_duplicates_and_disabled_dhcp() {
    let text = r#"
- apiVersion: tinkerbell.org/v1alpha1
  kind: Hardware
  metadata: {name: two-nics, namespace: rack1}
  spec:
    metadata: {facility: {facility_code: ewr1}}
    interfaces:
    - dhcp: {mac: "02:00:00:00:00:01", arch: aarch64, vlan_id: "12", lease_time: 0, ip: {address: 10.0.0.11, netmask: 255.255.255.0}}
      netboot: {allowPXE: true, ipxe: {contents: "chain http://x/y.ipxe"}}
    - dhcp: {mac: "02:00:00:00:00:02", ip: {address: 10.0.1.11, netmask: 255.255.255.0}}
      disableDhcp: true
    - netboot: {allowPXE: false}
- apiVersion: tinkerbell.org/v1alpha1
  kind: Hardware
  metadata: {name: a, namespace: rack1}
  spec:
    interfaces:
    - dhcp: {mac: "02:00:00:00:00:09", ip: {address: 10.0.0.21, netmask: 255.255.255.0}}
- apiVersion: tinkerbell.org/v1alpha1
  kind: Hardware
  metadata: {name: b, namespace: rack2}
  spec:
    interfaces:
    - dhcp: {mac: "02:00:00:00:00:09", ip: {address: 10.0.0.22, netmask: 255.255.255.0}}
- kind: Machine
  metadata: {name: not-hardware}
"#;
    let loaded = load(text).unwrap();
    let inv = &loaded.inventory;
    let one = inv.by_mac("02:00:00:00:00:01".parse().unwrap()).unwrap();
    assert_eq!(one.arch.as_deref(), Some("aarch64"));
    assert_eq!(one.vlan_id, Some(12));
    assert_eq!(
        one.lease_time, DEFAULT_LEASE_TIME,
        "lease_time 0 is netbootd's default"
    );
    assert_eq!(one.netboot.facility.as_deref(), Some("ewr1"));
    assert_eq!(
        one.netboot.ipxe_script.as_deref(),
        Some("chain http://x/y.ipxe")
    );
    let two = inv.by_mac("02:00:00:00:00:02".parse().unwrap()).unwrap();
    assert!(two.disabled, "disableDhcp");
    // The MAC in two objects: both refused, each object named.
    assert!(inv.by_mac("02:00:00:00:00:09".parse().unwrap()).is_none());
    let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let all = errors.join("\n");
    assert!(
        all.contains("rack2/b 02:00:00:00:00:09: spec.interfaces[0].dhcp.mac: duplicate MAC"),
        "{all}"
    );
    assert!(
        all.contains(
            "rack1/a 02:00:00:00:00:09: 02:00:00:00:00:09 is also in rack2/b: both are refused"
        ),
        "{all}"
    );
    assert!(
        all.contains("not-hardware") && all.contains("expected a Hardware object"),
        "{all}"
    );
    assert_eq!(inv.len(), 2);
}
