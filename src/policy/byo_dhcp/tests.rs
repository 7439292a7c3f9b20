//! The generated configurations for the DHCP policy tests' inventory: a machine on the shared
//! rules, one with its own script URL, one with its own binary, one without netboot, one
//! disabled and one without an address.

use super::*;
use crate::config::DhcpMode;
use crate::policy::dhcp::tests::{cfg, inventory};

fn generated(server: Server) -> String {
    let inv = inventory();
    let machines: Vec<&Machine> = inv.machines().collect();
    generate(server, &machines, &cfg(DhcpMode::Reservation))
}

fn lines_with<'t>(text: &'t str, needle: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn server_names_parse() {
    for s in [
        Server::Dnsmasq,
        Server::DnsmasqProxy,
        Server::Kea,
        Server::Isc,
    ] {
        assert_eq!(Server::parse(s.name()), Some(s));
    }
    assert_eq!(Server::parse("dhcpd"), Some(Server::Isc));
    assert_eq!(Server::parse("udhcpd"), None);
}

#[test]
fn dnsmasq_reserves_every_machine_and_gives_firmware_then_ipxe_their_files() {
    let out = generated(Server::Dnsmasq);
    assert!(out.contains("6 machines (5 netboot)"), "{out}");
    assert!(
        out.contains("# left out: 02:00:00:00:00:02: disableDhcp"),
        "{out}"
    );
    assert!(
        out.contains("dhcp-range=10.77.0.0,static,255.255.0.0\n"),
        "{out}"
    );
    // Names and lease times go with the reservation; the options with its group's tag.
    let cli = lines_with(&out, "dhcp-host=02:77:00:00:00:50,")[0];
    let tag = cli.split(',').nth(1).unwrap()["set:".len()..].to_string();
    assert_eq!(
        cli,
        format!("dhcp-host=02:77:00:00:00:50,set:{tag},10.77.0.50,cli0,3600")
    );
    for option in [
        "option:netmask,255.255.0.0",
        "option:router,10.77.0.1",
        "option:dns-server,1.1.1.1,8.8.8.8",
        "option:ntp-server,10.77.0.1",
        "option:domain-name,lab.example",
    ] {
        assert!(
            out.contains(&format!("dhcp-option=tag:{tag},{option}\n")),
            "{option}: {out}"
        );
    }
    // No address in the record: a reservation by MAC only (the range gives the address).
    let no_ip = lines_with(&out, "dhcp-host=02:00:00:00:00:03");
    assert_eq!(no_ip.len(), 1);
    assert!(!no_ip[0].contains("10.77."), "{no_ip:?}");
    // The shared rules: iPXE gets the script with ${mac}, firmware its binary from TFTP.
    assert!(out.contains("dhcp-userclass=set:netbootd-ipxe,iPXE\n"));
    assert!(out.contains("dhcp-userclass=set:netbootd-ipxe,Tinkerbell\n"));
    assert!(out.contains("dhcp-match=set:netbootd-ipxe,175\n"));
    assert!(out.contains(
        "dhcp-boot=tag:netbootd-boot,tag:netbootd-ipxe,http://10.77.0.1:8080/${mac}/auto.ipxe,,10.77.0.1\n"
    ));
    assert!(out.contains(
        "dhcp-boot=tag:netbootd-boot,tag:!netbootd-ipxe,tag:netbootd-arch-0,undionly.kpxe,,10.77.0.1\n"
    ));
    assert!(out.contains(
        "dhcp-boot=tag:netbootd-boot,tag:!netbootd-ipxe,tag:netbootd-arch-7,ipxe.efi,,10.77.0.1\n"
    ));
    // UEFI HTTP boot: a URL of the binary and option 60 echoed.
    assert!(out.contains(
        "dhcp-boot=tag:netbootd-boot,tag:!netbootd-ipxe,tag:netbootd-arch-16,http://10.77.0.1:8080/ipxe/ipxe.efi,,10.77.0.1\n"
    ));
    assert!(out.contains(
        "dhcp-option-force=tag:netbootd-boot,tag:!netbootd-ipxe,tag:netbootd-arch-16,60,HTTPClient\n"
    ));
    // Every rule names netbootd-ipxe or its negation: firmware and iPXE never both match.
    for rule in lines_with(&out, "dhcp-boot=") {
        assert!(rule.contains("tag:netbootd-ipxe") ^ rule.contains("tag:!netbootd-ipxe"));
    }
}

#[test]
fn dnsmasq_gives_own_scripts_and_binaries_their_own_rules_and_no_boot_to_the_rest() {
    let out = generated(Server::Dnsmasq);
    let tag_of = |mac: &str| {
        let line = lines_with(&out, &format!("dhcp-host={mac},"))[0];
        line.split(',').nth(1).unwrap()["set:".len()..].to_string()
    };
    // Its own ipxeScriptUrl, verbatim, as netbootd's DHCP sends it.
    let own_script = tag_of("52:54:00:12:34:56");
    assert!(out.contains(&format!(
        "dhcp-boot=tag:{own_script},tag:netbootd-ipxe,http://10.77.0.1/boot.ipxe,,10.77.0.1\n"
    )));
    assert!(out.contains(&format!(
        "dhcp-boot=tag:{own_script},tag:!netbootd-ipxe,tag:netbootd-arch-0,undionly.kpxe,,10.77.0.1\n"
    )));
    // Its own binary for every architecture, and the shared script.
    let own_binary = tag_of("02:00:00:00:00:04");
    assert!(out.contains(&format!(
        "dhcp-boot=tag:{own_binary},tag:!netbootd-ipxe,tag:netbootd-arch-7,snponly.efi,,10.77.0.1\n"
    )));
    assert!(out.contains(&format!(
        "dhcp-boot=tag:{own_binary},tag:netbootd-ipxe,http://10.77.0.1:8080/${{mac}}/auto.ipxe,,10.77.0.1\n"
    )));
    // Neither is in the shared rules' tag; the machine without netboot has no rule at all.
    let shared: Vec<&str> = lines_with(&out, "tag-if=set:netbootd-boot,");
    let no_boot = tag_of("02:00:00:00:00:01");
    for tag in [&own_script, &own_binary, &no_boot] {
        assert!(
            !shared.iter().any(|l| l.ends_with(&format!("tag:{tag}"))),
            "{tag}: {shared:?}"
        );
    }
    assert!(
        lines_with(&out, &format!("tag:{no_boot},"))
            .iter()
            .all(|l| l.starts_with("dhcp-option=")),
        "{out}"
    );
}

#[test]
fn dnsmasq_proxy_answers_only_netbooting_machines_with_pxe_services() {
    let out = generated(Server::DnsmasqProxy);
    assert!(out.contains("dhcp-range=10.77.0.1,proxy\n"), "{out}");
    assert!(!out.contains("dhcp-boot"), "{out}");
    assert!(!out.contains("10.77.0.50"), "no addresses: {out}");
    assert!(!out.contains("dhcp-host=02:00:00:00:00:01"), "{out}");
    assert!(out.contains("dhcp-ignore=tag:!netbootd-known\n"));
    assert!(out.contains(
        "pxe-service=tag:netbootd-boot,tag:!netbootd-ipxe,x86PC,\"netbootd iPXE\",undionly.kpxe,10.77.0.1\n"
    ));
    assert!(out.contains(
        "pxe-service=tag:netbootd-boot,tag:netbootd-ipxe,X86-64_EFI,\"netbootd script\",http://10.77.0.1:8080/${mac}/auto.ipxe\n"
    ));
    assert!(out.contains(
        "pxe-service=tag:netbootd-boot,tag:!netbootd-ipxe,BC_EFI,\"netbootd iPXE\",ipxe.efi,10.77.0.1\n"
    ));
    // HTTP boot firmware does not use ProxyDHCP.
    assert!(
        !out.contains("HTTPClient\n") && !out.contains(",16,"),
        "{out}"
    );
}

#[cfg(feature = "remote")]
#[test]
fn kea_members_are_json_with_classes_and_global_reservations() {
    let out = generated(Server::Kea);
    let body: String = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let object = format!("{{{}}}", body.trim_end().trim_end_matches(','));
    let v: serde_json::Value = serde_json::from_str(&object).expect(&object);
    let classes = v["client-classes"].as_array().unwrap();
    let class = |name: &str| {
        classes
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no class {name}: {object}"))
    };
    let ipxe = class("netbootd-ipxe");
    assert_eq!(
        ipxe["boot-file-name"],
        "http://10.77.0.1:8080/${mac}/auto.ipxe"
    );
    let test = ipxe["test"].as_str().unwrap();
    assert!(
        test.starts_with("member('KNOWN') and not member('netbootd-"),
        "{test}"
    );
    assert!(
        test.contains("substring(option[77].hex,0,4) == 'iPXE'"),
        "{test}"
    );
    assert!(test.contains("or option[175].exists)"), "{test}");
    let bios = class("netbootd-arch-0");
    assert_eq!(bios["boot-file-name"], "undionly.kpxe");
    assert_eq!(bios["next-server"], "10.77.0.1");
    assert!(bios["test"]
        .as_str()
        .unwrap()
        .ends_with("substring(option[93].hex,0,2) == 0x0000"));
    let http = class("netbootd-arch-16");
    assert_eq!(
        http["boot-file-name"],
        "http://10.77.0.1:8080/ipxe/ipxe.efi"
    );
    assert_eq!(http["option-data"][0]["data"], "HTTPClient");
    assert_eq!(http["option-data"][0]["always-send"], true);
    let reservations = v["reservations"].as_array().unwrap();
    assert_eq!(reservations.len(), 6);
    let cli = reservations
        .iter()
        .find(|r| r["hw-address"] == "02:77:00:00:00:50")
        .unwrap();
    assert_eq!(cli["ip-address"], "10.77.0.50");
    assert_eq!(cli["hostname"], "cli0");
    assert!(cli["option-data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["name"] == "domain-name-servers" && o["data"] == "1.1.1.1, 8.8.8.8"));
    // The own-binary machine: its class by MAC, and its binary in its own rules.
    let own = classes
        .iter()
        .find(|c| c["test"] == "pkt4.mac == 0x020000000004")
        .expect("a class for the own-binary machine");
    let name = own["name"].as_str().unwrap();
    assert_eq!(
        class(&format!("{name}-arch-7"))["boot-file-name"],
        "snponly.efi"
    );
}

#[test]
fn isc_groups_carry_the_boot_rules_and_hosts_their_addresses() {
    let out = generated(Server::Isc);
    assert_eq!(out.matches('{').count(), out.matches('}').count(), "{out}");
    assert!(out.contains(
        "  host netbootd-02-77-00-00-00-50 { hardware ethernet 02:77:00:00:00:50; fixed-address 10.77.0.50; option host-name \"cli0\"; default-lease-time 3600; max-lease-time 3600; }\n"
    ), "{out}");
    assert!(out.contains("  option domain-name-servers 1.1.1.1, 8.8.8.8;\n"));
    assert!(out.contains(
        "  if exists netbootd-ipxe-options or (exists user-class and (option user-class = \"iPXE\" or option user-class = \"Tinkerbell\")) {\n    filename \"http://10.77.0.1:8080/${mac}/auto.ipxe\";\n  }\n"
    ), "{out}");
    assert!(out.contains(
        "  elsif option pxe-system-type = 00:10 {\n    filename \"http://10.77.0.1:8080/ipxe/ipxe.efi\";\n    option vendor-class-identifier \"HTTPClient\";\n  }\n"
    ), "{out}");
    // The group of the machine without netboot has no boot statements.
    let group = out
        .split("\ngroup {")
        .find(|g| g.contains("hardware ethernet 02:00:00:00:00:01;"))
        .unwrap();
    assert!(
        !group.contains("filename") && !group.contains("next-server"),
        "{group}"
    );
    assert!(!out.contains("02:00:00:00:00:02;"), "disabled: left out");
}

#[test]
fn grub_architectures_get_shim_in_every_recipe() {
    let inv = inventory();
    let machines: Vec<&Machine> = inv.machines().collect();
    let mut c = cfg(DhcpMode::Reservation);
    c.grub_arches = crate::value::grub_arches("7=grub,11=grub").unwrap();
    for server in [
        Server::Dnsmasq,
        Server::DnsmasqProxy,
        Server::Kea,
        Server::Isc,
    ] {
        let text = generate(server, &machines, &c);
        assert!(text.contains("shimx64.efi"), "{}: {text}", server.name());
        assert!(text.contains("shimaa64.efi"), "{}: {text}", server.name());
        // Architecture 9 stays on iPXE.
        assert!(text.contains("ipxe.efi"), "{}: {text}", server.name());
    }
    let dnsmasq = generate(Server::Dnsmasq, &machines, &c);
    // The shared rules and the group with its own script get shim; the machine with its own
    // iPXE binary keeps it, as netbootd's own DHCP answers it.
    assert_eq!(
        lines_with(&dnsmasq, "tag:netbootd-arch-7,"),
        [
            "dhcp-boot=tag:netbootd-boot,tag:!netbootd-ipxe,tag:netbootd-arch-7,shimx64.efi,,10.77.0.1",
            "dhcp-boot=tag:netbootd-2,tag:!netbootd-ipxe,tag:netbootd-arch-7,shimx64.efi,,10.77.0.1",
            "dhcp-boot=tag:netbootd-5,tag:!netbootd-ipxe,tag:netbootd-arch-7,snponly.efi,,10.77.0.1",
        ]
    );
}
