//! Routing, client identity and script rendering.

use super::*;
use std::net::Ipv4Addr;

use crate::inventory::{Boot, BootProfile, Netboot};

fn mac(s: &str) -> MacAddr {
    MacAddr::parse(s).unwrap()
}

#[test]
fn routes() {
    let m = mac("02:00:00:00:00:01");
    assert_eq!(route("/auto.ipxe"), Route::ScriptByIp);
    for form in [
        "02:00:00:00:00:01",
        "02-00-00-00-00-01",
        "0200.0000.0001",
        "020000000001",
    ] {
        assert_eq!(
            route(&format!("/{form}/auto.ipxe")),
            Route::ScriptByMac(m),
            "{form}"
        );
    }
    assert_eq!(
        route("/ipxe/ipxe.efi"),
        Route::IpxeBinary("ipxe.efi".into())
    );
    assert_eq!(
        route("/ipxe/02:00:00:00:00:01/snp.efi"),
        Route::IpxeBinary("snp.efi".into())
    );
    assert_eq!(
        route("//ipxe//ipxe.efi"),
        Route::IpxeBinary("ipxe.efi".into())
    );
    // Smee: any path ending in auto.ipxe, the MAC (if any) just before it.
    for path in [
        "/a/b/02:00:00:00:00:01/auto.ipxe",
        "/smee/02-00-00-00-00-01/auto.ipxe",
        "//02:00:00:00:00:01/auto.ipxe",
        "/x/./020000000001//auto.ipxe",
    ] {
        assert_eq!(route(path), Route::ScriptByMac(m), "{path}");
    }
    for path in [
        "/foo/auto.ipxe",
        "/zz/auto.ipxe",
        "/a/b/auto.ipxe",
        "//auto.ipxe",
    ] {
        assert_eq!(route(path), Route::ScriptByIp, "{path}");
    }
    // Smee's traceparent suffix, as over TFTP.
    assert_eq!(
        route(&format!(
            "/ipxe/ipxe.efi-00-{}-{}-01",
            "a".repeat(32),
            "b".repeat(16)
        )),
        Route::IpxeBinary("ipxe.efi".into())
    );
    assert_eq!(route("/assets/a/./b%20c"), Route::Asset("a/b c".into()));
    assert_eq!(route("/healthcheck"), Route::Health);
    assert_eq!(route("/metrics"), Route::Metrics);
    for bad in [
        "/assets/../x",
        "/assets/a/%2e%2e/%2e%2e/x",
        "/assets/..%2fx",
        "/ipxe/../../etc/passwd",
        "/assets/a%00b",
        "/assets/a%5c..%5cb",
        "/assets/",
        "/",
        "/etc/passwd",
    ] {
        assert!(matches!(route(bad), Route::NotFound(_)), "{bad}");
    }
}

#[test]
fn the_client_is_the_rightmost_untrusted_forwarded_address() {
    let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Not from a trusted proxy: the header is ignored.
    assert_eq!(
        client_ip(ip("192.0.2.9"), &["1.2.3.4"], &trusted),
        ip("192.0.2.9")
    );
    // From a trusted proxy: the right-most untrusted hop.
    assert_eq!(
        client_ip(
            ip("10.0.0.1"),
            &["6.6.6.6, 192.0.2.50", "10.1.1.1"],
            &trusted
        ),
        ip("192.0.2.50")
    );
    // Every hop trusted: the left-most.
    assert_eq!(
        client_ip(ip("10.0.0.1"), &["10.2.2.2"], &trusted),
        ip("10.2.2.2")
    );
    // No header, or a malformed hop: the last trusted address seen.
    assert_eq!(client_ip(ip("10.0.0.1"), &[], &trusted), ip("10.0.0.1"));
    assert_eq!(
        client_ip(ip("10.0.0.1"), &["junk"], &trusted),
        ip("10.0.0.1")
    );
    // No trusted proxies at all.
    assert_eq!(client_ip(ip("10.0.0.1"), &["1.2.3.4"], &[]), ip("10.0.0.1"));
}

fn http() -> Http {
    Http {
        max_per_client: 32,
        ipxe_binary_enabled: true,
        ipxe_script_enabled: true,
        addr: Ipv4Addr::new(10, 77, 0, 1),
        port: 8080,
        extra_kernel_args: String::new(),
        trusted_proxies: vec![],
        osie_url: None,
        tink_server: None,
        tink_server_tls: false,
        tink_server_insecure_tls: false,
        ipxe_script_retries: 0,
        ipxe_script_retry_delay: 2,
        unknown_script: UnknownScript::NotFound,
    }
}

fn machine() -> Machine {
    Machine {
        mac: mac("02:77:00:00:00:50"),
        hostname: Some("node1".into()),
        netboot: Netboot {
            allow_pxe: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn settings(http: &Http) -> ScriptSettings<'_> {
    ScriptSettings {
        http,
        syslog_host: "10.77.0.1",
        base_url: "http://10.77.0.1:8080".into(),
    }
}

#[test]
fn who_gets_no_script() {
    let h = http();
    let s = settings(&h);
    assert_eq!(script_for(None, &s), Err(NoScript::UnknownMachine));
    let mut m = machine();
    assert_eq!(script_for(Some(&m), &s), Err(NoScript::NothingToBoot));
    m.netboot.allow_pxe = false;
    assert_eq!(script_for(Some(&m), &s), Err(NoScript::NotAllowed));
    m.disabled = true;
    assert_eq!(script_for(Some(&m), &s), Err(NoScript::Disabled));
}

#[test]
fn a_script_url_is_chained_and_an_inline_script_is_framed() {
    let h = http();
    let s = settings(&h);
    let mut m = machine();
    m.netboot.ipxe_script = Some("echo hi\nboot".into());
    assert_eq!(
        script_for(Some(&m), &s),
        Ok((ScriptKind::Inline, "#!ipxe\n\necho hi\nboot\n".into()))
    );
    m.netboot.ipxe_script = Some("#!ipxe\necho own header\n\n".into());
    assert_eq!(
        script_for(Some(&m), &s).unwrap().1,
        "#!ipxe\necho own header\n"
    );
    // The URL wins over the inline script.
    m.netboot.ipxe_script_url = Some("http://example.test/s.ipxe".into());
    assert_eq!(
        script_for(Some(&m), &s),
        Ok((
            ScriptKind::ChainUrl,
            "#!ipxe\n\nchain --autofree http://example.test/s.ipxe\n".into()
        ))
    );
    m.netboot.ipxe_script_url = Some("http://x/ a".into());
    assert!(matches!(
        script_for(Some(&m), &s),
        Err(NoScript::Unsafe("ipxeScriptUrl", _))
    ));
}

#[test]
fn a_boot_profile_renders_a_script_with_retries_and_a_failure_path() {
    let h = http();
    let s = settings(&h);
    let mut m = machine();
    m.boot = Some(Boot {
        profile: Some("debian".into()),
        resolved: BootProfile {
            kernel: "debian/linux".into(),
            initrd: vec!["debian/initrd.gz".into(), "http://cdn.test/fw.cpio".into()],
            cmdline: "console=ttyS0 auto=true".into(),
        },
    });
    let (kind, text) = script_for(Some(&m), &s).unwrap();
    assert_eq!(kind, ScriptKind::Profile);
    let want = include_str!("../../../tests/fixtures/http/profile.ipxe");
    assert_eq!(text, want, "rendered:\n{text}");
    // Each line is one command: nothing from the inventory can start another.
    for (field, value) in [
        ("cmdline", "quiet || shell"),
        ("cmdline", "a\nshell"),
        ("cmdline", "a; shell"),
    ] {
        let mut bad = m.clone();
        bad.boot.as_mut().unwrap().resolved.cmdline = value.into();
        assert!(
            matches!(script_for(Some(&bad), &s), Err(NoScript::Unsafe(f, _)) if f == field),
            "{value:?}"
        );
    }
    let mut bad = m.clone();
    bad.boot.as_mut().unwrap().resolved.kernel = "http://x/k && shell".into();
    assert!(matches!(
        script_for(Some(&bad), &s),
        Err(NoScript::Unsafe("kernel", _))
    ));
}

#[test]
fn the_hook_script_matches_the_golden_file() {
    let mut h = http();
    h.osie_url = Some("http://10.77.0.1:8080/hook/".into());
    h.tink_server = Some("tink.example.test:42113".into());
    h.tink_server_tls = true;
    h.extra_kernel_args = "tink_worker_image=quay.io/tinkerbell/tink-worker:v0.12 debug".into();
    h.ipxe_script_retries = 3;
    h.ipxe_script_retry_delay = 5;
    let s = settings(&h);
    let mut m = machine();
    m.vlan_id = Some(42);
    m.netboot.facility = Some("onprem".into());
    m.arch = Some("aarch64".into());
    let (kind, text) = script_for(Some(&m), &s).unwrap();
    assert_eq!(kind, ScriptKind::Hook);
    let want = include_str!("../../../tests/fixtures/http/hook.ipxe");
    assert_eq!(text, want, "rendered:\n{text}");
    // A boot profile wins over the Hook default.
    m.boot = Some(Boot {
        profile: None,
        resolved: BootProfile {
            kernel: "k".into(),
            initrd: vec![],
            cmdline: String::new(),
        },
    });
    assert_eq!(script_for(Some(&m), &s).unwrap().0, ScriptKind::Profile);
    // A machine's own OSIE (Tinkerbell's netboot.osie) replaces the download URL and names.
    m.boot = None;
    m.netboot.osie_base_url = Some("http://mirror.example.test/hook-v2/".into());
    m.netboot.osie_kernel = Some("vmlinuz-custom".into());
    let text = script_for(Some(&m), &s).unwrap().1;
    assert!(
        text.contains("set download-url http://mirror.example.test/hook-v2\n"),
        "{text}"
    );
    assert!(
        text.contains("set kernel vmlinuz-custom\nset initrd initramfs-${arch}\n"),
        "{text}"
    );
    m.netboot.osie_initrd = Some("initrd custom".into());
    assert!(matches!(
        script_for(Some(&m), &s),
        Err(NoScript::Unsafe(..))
    ));
}

/// auto-proxy: a machine with no record gets Smee's static script (the golden file is what
/// Smee renders for these settings), or `--auto-proxy-profile`; outside auto-proxy a 404.
#[test]
fn unknown_machines_get_the_static_script_only_in_auto_proxy() {
    let mut h = http();
    h.osie_url = Some("http://10.77.0.1:8080/hook".into());
    h.tink_server = Some("tink.example.test:42113".into());
    h.tink_server_tls = true;
    h.extra_kernel_args = "tink_worker_image=quay.io/tinkerbell/tink-worker:v0.12 debug".into();
    h.ipxe_script_retry_delay = 0;
    assert_eq!(
        script_for(None, &settings(&h)),
        Err(NoScript::UnknownMachine)
    );
    h.unknown_script = UnknownScript::StaticHook;
    let (kind, text) = script_for(None, &settings(&h)).unwrap();
    assert_eq!(kind, ScriptKind::Static);
    let want = include_str!("../../../tests/fixtures/http/static.ipxe");
    assert_eq!(text, want, "rendered:\n{text}");
    // No --osie-url: nothing to boot (Smee would serve a script that cannot load a kernel).
    h.osie_url = None;
    assert_eq!(
        script_for(None, &settings(&h)),
        Err(NoScript::NothingToBoot)
    );
    // A record still decides for its machine.
    let mut m = machine();
    m.netboot.allow_pxe = false;
    assert_eq!(
        script_for(Some(&m), &settings(&h)),
        Err(NoScript::NotAllowed)
    );
    // --auto-proxy-profile: the profile, with iPXE's ${mac} naming the machine.
    let profile = BootProfile {
        kernel: "rescue/vmlinuz".into(),
        initrd: vec!["rescue/initrd".into()],
        cmdline: "console=ttyS0".into(),
    };
    h.unknown_script = UnknownScript::Profile("rescue".into(), profile);
    let (kind, text) = script_for(None, &settings(&h)).unwrap();
    assert_eq!(kind, ScriptKind::Profile);
    assert!(
        text.starts_with("#!ipxe\n# netbootd: boot profile rescue for ${mac}\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "kernel http://10.77.0.1:8080/assets/rescue/vmlinuz console=ttyS0 initrd=initrd"
        ),
        "{text}"
    );
}

#[test]
fn the_hook_arch_keeps_unknown_names_and_normalises_arm64() {
    let mut h = http();
    h.osie_url = Some("http://h/hook".into());
    let mut m = machine();
    for (arch, want) in [
        (None, "x86_64"),
        (Some("riscv64"), "riscv64"),
        (Some("arm64"), "aarch64"),
        (Some("AARCH64"), "aarch64"),
        (Some("x86_64"), "x86_64"),
    ] {
        m.arch = arch.map(String::from);
        let text = script_for(Some(&m), &settings(&h)).unwrap().1;
        assert!(text.contains(&format!("\nset arch {want}\n")), "{arch:?}");
    }
}

#[test]
fn a_host_name_cannot_chain_a_command_into_a_profile_script() {
    let h = http();
    let mut m = machine();
    m.hostname = Some("node1;shell".into());
    m.boot = Some(Boot {
        profile: None,
        resolved: BootProfile {
            kernel: "k".into(),
            ..Default::default()
        },
    });
    assert!(matches!(
        script_for(Some(&m), &settings(&h)),
        Err(NoScript::Unsafe("hostname", _))
    ));
}

#[test]
fn the_pool_script_reboots_or_boots_the_pools_profile() {
    use crate::config::pools::{PoolBoot, PoolSettings};
    let http = crate::config::tests::loopback_config().http;
    let s = ScriptSettings {
        http: &http,
        syslog_host: "10.0.0.1",
        base_url: "http://10.0.0.1:8080".into(),
    };
    let pool = |name: &str, cidr: &str, boot| PoolSettings {
        name: name.into(),
        subnet: crate::value::Cidr::parse(cidr).unwrap(),
        first: Ipv4Addr::new(10, 0, 9, 1),
        last: Ipv4Addr::new(10, 0, 9, 9),
        gateway: None,
        name_servers: vec![],
        domain: None,
        lease_time: 300,
        boot,
    };
    let profile = crate::inventory::BootProfile {
        kernel: "discover/vmlinuz".into(),
        initrd: vec![],
        cmdline: "console=ttyS0".into(),
    };
    let pools = [
        pool("lab", "10.0.0.0/16", PoolBoot::Reboot { sleep: 7 }),
        pool(
            "bmc",
            "10.1.0.0/16",
            PoolBoot::Profile("discover".into(), Some(profile)),
        ),
    ];
    let (kind, text) = pool_script(&pools, "10.0.9.3".parse().unwrap(), &s).unwrap();
    assert_eq!(kind, ScriptKind::Reboot);
    assert!(
        text.starts_with("#!ipxe\n") && text.contains("sleep 7\nreboot\n"),
        "{text}"
    );
    let (kind, text) = pool_script(&pools, "10.1.2.3".parse().unwrap(), &s).unwrap();
    assert_eq!(kind, ScriptKind::Profile);
    assert!(
        text.contains("kernel http://10.0.0.1:8080/assets/discover/vmlinuz console=ttyS0"),
        "{text}"
    );
    assert!(matches!(
        pool_script(&[], "10.0.9.3".parse().unwrap(), &s),
        Err(NoScript::UnknownMachine)
    ));
    assert_eq!(route("/unknown.ipxe"), Route::UnknownScript);
    assert_eq!(route("/a/b/unknown.ipxe"), Route::UnknownScript);
    assert_eq!(route("/unknown"), Route::Unknown);
}

#[test]
fn grub_asks_for_its_configuration_by_these_names() {
    let m = mac("02:77:00:00:00:50");
    for (name, want) in [
        ("grub.cfg", Some(None)),
        ("/grub/x86_64-efi/grub.cfg", Some(None)),
        ("grub/grub.cfg-01-02-77-00-00-00-50", Some(Some(m))),
        ("grub.cfg-0A4D0033", Some(None)),
        ("grub.cfg-0A4", Some(None)),
        ("grub.cfg-01-zz", None),
        ("grub.cfg.bak", None),
        ("grubx64.efi", None),
        ("mygrub.cfg", None),
    ] {
        assert_eq!(grub_config_name(name), want, "{name}");
    }
    assert_eq!(route("/grub/grub.cfg"), Route::GrubConfig(None));
    assert_eq!(
        route("/grub/arm64-efi/grub.cfg-01-02-77-00-00-00-50"),
        Route::GrubConfig(Some(m))
    );
}

#[test]
fn grub_gets_the_same_boot_as_the_ipxe_script() {
    let tftp = Ipv4Addr::new(10, 77, 0, 1);
    let mut h = http();
    let s = settings(&h);
    let mut m = machine();
    assert_eq!(grub_config(None, &s, tftp), Err(NoScript::UnknownMachine));
    assert_eq!(
        grub_config(Some(&m), &s, tftp),
        Err(NoScript::NothingToBoot)
    );
    m.boot = Some(Boot {
        profile: Some("debian".into()),
        resolved: BootProfile {
            kernel: "debian/linux".into(),
            initrd: vec![
                "/debian/initrd.gz".into(),
                "http://cdn.test:8080/fw.cpio".into(),
            ],
            cmdline: " console=ttyS0 auto=true ".into(),
        },
    });
    assert_eq!(
        grub_config(Some(&m), &s, tftp).unwrap(),
        "# netbootd: boot profile debian for 02:77:00:00:00:50 (node1)\nset timeout=0\n\
         echo 'netbootd: booting 02:77:00:00:00:50 (node1)'\n\
         linux (tftp,10.77.0.1)/debian/linux console=ttyS0 auto=true\n\
         initrd (tftp,10.77.0.1)/debian/initrd.gz (http,cdn.test:8080)/fw.cpio\nboot\n"
    );
    // Nothing GRUB would expand, unquote or run as a second command.
    for (field, kernel, cmdline) in [
        ("cmdline", "k", "a $prefix"),
        ("cmdline", "k", "a 'b'"),
        ("cmdline", "k", "a\nboot"),
        ("cmdline", "k", "a; reboot"),
        ("kernel", "https://x/k", ""),
        ("kernel", "k\\x", ""),
    ] {
        let mut bad = m.clone();
        let resolved = &mut bad.boot.as_mut().unwrap().resolved;
        resolved.kernel = kernel.into();
        resolved.cmdline = cmdline.into();
        assert!(
            matches!(grub_config(Some(&bad), &s, tftp), Err(NoScript::Unsafe(f, _)) if f == field),
            "{kernel:?} {cmdline:?}"
        );
    }
    // An iPXE script cannot be run by GRUB.
    let mut ipxe = m.clone();
    ipxe.netboot.ipxe_script = Some("chain http://x/y".into());
    assert!(matches!(
        grub_config(Some(&ipxe), &s, tftp),
        Err(NoScript::Unsafe(..))
    ));
    // The Hook: its kernel and initrd for the machine's arch, Smee's arguments.
    h.osie_url = Some("http://10.77.0.9:8080/hook/".into());
    h.tink_server = Some("10.77.0.9:42113".into());
    let s = settings(&h);
    let mut hook = machine();
    hook.arch = Some("arm64".into());
    let text = grub_config(Some(&hook), &s, tftp).unwrap();
    assert!(
        text.contains("linux (http,10.77.0.9:8080)/hook/vmlinuz-aarch64 facility= syslog_host=10.77.0.1 grpc_authority=10.77.0.9:42113 tinkerbell_tls=false tinkerbell_insecure_tls=false worker_id=02:77:00:00:00:50 hw_addr=02:77:00:00:00:50 modules="),
        "{text}"
    );
    assert!(
        text.contains("\ninitrd (http,10.77.0.9:8080)/hook/initramfs-aarch64\n"),
        "{text}"
    );
}
