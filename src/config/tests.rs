//! Tests of option layering and validation, with a fake host and an explicit environment.

use super::*;

struct FakeHost {
    auto: Result<Ipv4Addr, String>,
    dirs: Vec<&'static str>,
}

impl Host for FakeHost {
    fn auto_ipv4(&self, interface: Option<&str>) -> Result<Ipv4Addr, String> {
        match interface {
            Some("eth9") => Ok(Ipv4Addr::new(192, 0, 2, 9)),
            Some(other) => Err(format!("interface {other} has no IPv4 address")),
            None => self.auto.clone(),
        }
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| Path::new(d) == path)
    }
}

fn host() -> FakeHost {
    FakeHost {
        auto: Ok(Ipv4Addr::new(192, 0, 2, 1)),
        dirs: vec!["/usr/share/ipxe", "/srv/assets"],
    }
}

fn settings(args: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> Settings {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let flags = args::parse(&args).expect("flags parse");
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let file =
        toml.map(|t| file::parse(t, Path::new("/etc/nb/netbootd.toml")).expect("toml parses"));
    Settings::resolve(&flags, &env, file.as_ref())
}

fn config(args: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> Result<Config, ConfigError> {
    let s = settings(args, env, toml);
    let profiles = toml
        .map(|t| {
            let file = file::parse(t, Path::new("/etc/nb/netbootd.toml")).expect("toml parses");
            file.profiles
        })
        .unwrap_or_default();
    Config::from_settings(&s, profiles, &host())
}

/// A whole configuration on loopback addresses, for the services' unit tests.
pub(crate) fn loopback_config() -> Config {
    config(
        &[
            "--dhcp-addr=127.0.0.1:1067",
            "--tftp-addr=127.0.0.1",
            "--http-addr=127.0.0.1",
            "--syslog-addr=127.0.0.1",
        ],
        &[],
        None,
    )
    .expect("a valid configuration")
}

fn error(args: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> String {
    config(args, env, toml).expect_err("should be refused").0
}

#[test]
fn defaults_are_smees() {
    let c = config(&[], &[], None).unwrap();
    assert_eq!(c.dhcp.mode, DhcpMode::Reservation);
    assert_eq!(c.dhcp.addr, "0.0.0.0:67".parse().unwrap());
    assert_eq!(c.dhcp.ip_for_packet, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        c.dhcp.ipxe_script_base.to_string(),
        "http://192.0.2.1:8080/auto.ipxe"
    );
    assert_eq!(
        c.dhcp.ipxe_binary_base.to_string(),
        "http://192.0.2.1:8080/ipxe/"
    );
    assert!(c.dhcp.ipxe_script_prepend_mac);
    assert_eq!(
        (c.tftp.port, c.tftp.block_size, c.tftp.timeout),
        (69, 512, Duration::from_secs(5))
    );
    assert_eq!((c.http.port, c.syslog.port), (8080, 514));
    assert_eq!(
        c.hardware_file(),
        Some(Path::new("/etc/netbootd/hardware.yaml"))
    );
    assert_eq!(c.ipxe_dir.as_deref(), Some(Path::new("/usr/share/ipxe")));
    assert_eq!(c.state_dir, Path::new("/var/lib/netbootd"));
    assert_eq!(c.log_level, LevelFilter::Info);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn precedence_is_flag_then_netbootd_env_then_smee_env_then_file_then_default() {
    let toml = "dhcp-mode = \"auto-proxy\"\n[http]\nport = 8001\n[tftp]\nblock-size = 1001\n[log]\nlevel = \"error\"\n";
    let all_env = [
        ("NETBOOTD_DHCP_MODE", "off"),
        ("SMEE_DHCP_MODE", "reservation"),
        ("NETBOOTD_HTTP_PORT", "8002"),
        ("SMEE_HTTP_PORT", "8003"),
        ("SMEE_TFTP_BLOCK_SIZE", "1003"),
        ("SMEE_LOG_LEVEL", "warn"),
    ];
    let flags = [
        "--dhcp-mode=proxy",
        "--http-port",
        "8004",
        "--tftp-block-size=1004",
        "--log-level",
        "debug",
    ];

    // flags beat everything
    let c = config(&flags, &all_env, Some(toml)).unwrap();
    assert_eq!(
        (c.dhcp.mode, c.http.port, c.tftp.block_size, c.log_level),
        (DhcpMode::Proxy, 8004, 1004, LevelFilter::Debug)
    );
    // NETBOOTD_ beats SMEE_ and the file
    let c = config(&[], &all_env, Some(toml)).unwrap();
    assert_eq!((c.dhcp.mode, c.http.port), (DhcpMode::Off, 8002));
    // SMEE_ beats the file
    let smee_only: Vec<_> = all_env
        .iter()
        .copied()
        .filter(|(k, _)| k.starts_with("SMEE_"))
        .collect();
    let c = config(&[], &smee_only, Some(toml)).unwrap();
    assert_eq!(
        (c.dhcp.mode, c.http.port, c.tftp.block_size, c.log_level),
        (DhcpMode::Reservation, 8003, 1003, LevelFilter::Warn)
    );
    // the file beats the defaults
    let c = config(&[], &[], Some(toml)).unwrap();
    assert_eq!(
        (c.dhcp.mode, c.http.port, c.tftp.block_size, c.log_level),
        (DhcpMode::AutoProxy, 8001, 1001, LevelFilter::Error)
    );
}

#[test]
fn sources_are_recorded() {
    let s = settings(
        &["--http-port=1"],
        &[("SMEE_TFTP_PORT", "2")],
        Some("[syslog]\nport = 3\n"),
    );
    assert_eq!(s.get(Key::http_port).origin(), "--http-port");
    assert_eq!(s.get(Key::tftp_port).origin(), "SMEE_TFTP_PORT");
    assert_eq!(
        s.get(Key::syslog_port).origin(),
        "/etc/nb/netbootd.toml:2: syslog.port"
    );
}

#[test]
fn empty_environment_values_count_as_unset() {
    let c = config(
        &[],
        &[("NETBOOTD_DHCP_MODE", ""), ("SMEE_DHCP_MODE", "proxy")],
        None,
    )
    .unwrap();
    assert_eq!(c.dhcp.mode, DhcpMode::Proxy);
}

#[test]
fn bad_values_name_their_source_and_value() {
    assert_eq!(
        error(&["--dhcp-mode", "fast"], &[], None),
        "invalid value \"fast\" for --dhcp-mode: expected reservation, proxy, auto-proxy or off"
    );
    assert_eq!(
        error(&[], &[("SMEE_HTTP_PORT", "70000")], None),
        "invalid value \"70000\" for SMEE_HTTP_PORT: port out of range 1..65535"
    );
    assert_eq!(
        error(&[], &[], Some("[tftp]\nblock-size = 100\n")),
        "invalid value \"100\" for /etc/nb/netbootd.toml:2: tftp.block-size: block size outside 512..65464"
    );
    assert_eq!(
        error(&["--dhcp-ip-for-packet=10.0.0.300"], &[], None),
        "invalid value \"10.0.0.300\" for --dhcp-ip-for-packet: not an IPv4 address"
    );
    assert_eq!(
        error(&[], &[("NETBOOTD_DHCP_ENABLED", "maybe")], None),
        "invalid value \"maybe\" for NETBOOTD_DHCP_ENABLED: expected true or false"
    );
    assert_eq!(
        error(&["--tftp-block-size=65465"], &[], None),
        "invalid value \"65465\" for --tftp-block-size: block size outside 512..65464"
    );
    assert_eq!(
        error(&["--tftp-window-size=0"], &[], None),
        "invalid value \"0\" for --tftp-window-size: must be at least 1"
    );
    assert!(error(&["--tftp-max-transfers=5000"], &[], None).contains("0..4096"));
    let c = config(&["--tftp-window-size=8", "--tftp-single-port"], &[], None).unwrap();
    assert_eq!(
        (
            c.tftp.max_window_size,
            c.tftp.max_transfers,
            c.tftp.single_port
        ),
        (8, 128, true)
    );
    assert!(error(&["--osie-url", "ftp://x/"], &[], None)
        .starts_with("invalid value \"ftp://x/\" for --osie-url"));
    assert!(error(&["--trusted-proxies", "10.0.0.0/40"], &[], None).contains("--trusted-proxies"));
    assert!(error(&["--extra-kernel-args", "a\nb"], &[], None).contains("one line"));
}

#[test]
fn secrets_in_urls_are_not_echoed() {
    let e = error(&["--osie-url", "ftp://user:hunter2@x/"], &[], None);
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn auto_addresses() {
    // an explicit interface wins
    let c = config(&["--public-ip-interface", "eth9"], &[], None).unwrap();
    assert_eq!(c.dhcp.tftp_ip, Ipv4Addr::new(192, 0, 2, 9));
    let c = config(&[], &[("SMEE_PUBLIC_IP_INTERFACE", "eth9")], None).unwrap();
    assert_eq!(c.http.addr, Ipv4Addr::new(192, 0, 2, 9));
    // without one, the DHCP interface is where the clients are
    let c = config(&["--dhcp-iface", "eth9"], &[], None).unwrap();
    assert_eq!(c.dhcp.ip_for_packet, Ipv4Addr::new(192, 0, 2, 9));
    let e = error(
        &["--dhcp-iface", "eth9", "--public-ip-interface", "eth0"],
        &[],
        None,
    );
    assert!(e.contains("eth0"), "{e}");
    // no address: only the services that need it fail
    let s = settings(&[], &[], None);
    let no_ip = FakeHost {
        auto: Err("no IPv4 address was found".into()),
        dirs: vec![],
    };
    let e = Config::from_settings(&s, Profiles::new(), &no_ip)
        .unwrap_err()
        .0;
    assert_eq!(e, "--dhcp-ip-for-packet (default) is \"auto\" but no IPv4 address was found; set it, or --public-ip-interface");
    let s = settings(
        &[
            "--dhcp-enabled=false",
            "--tftp-enabled=false",
            "--syslog-enabled=false",
            "--http-ipxe-binary-enabled=false",
            "--http-ipxe-script-enabled=false",
        ],
        &[],
        None,
    );
    let c = Config::from_settings(&s, Profiles::new(), &no_ip).unwrap();
    assert!(!c.dhcp.enabled && c.dhcp.mode == DhcpMode::Off);
    // explicit addresses need no lookup
    let s = settings(
        &[
            "--public-ip-interface=eth0",
            "--dhcp-ip-for-packet=10.1.1.1",
            "--dhcp-enabled=false",
            "--tftp-addr=10.1.1.1",
            "--http-addr=10.1.1.1",
            "--syslog-addr=10.1.1.1",
        ],
        &[],
        None,
    );
    let c = Config::from_settings(&s, Profiles::new(), &no_ip).unwrap();
    assert_eq!(c.tftp.addr, Ipv4Addr::new(10, 1, 1, 1));
}

#[test]
fn script_url_drops_default_ports() {
    let c = config(
        &[
            "--dhcp-http-ipxe-script-port=80",
            "--dhcp-http-ipxe-script-host=boot.example",
        ],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        c.dhcp.ipxe_script_base.to_string(),
        "http://boot.example/auto.ipxe"
    );
    let c = config(
        &[
            "--dhcp-http-ipxe-script-scheme=https",
            "--dhcp-http-ipxe-script-port=443",
        ],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        c.dhcp.ipxe_script_base.to_string(),
        "https://192.0.2.1/auto.ipxe"
    );
}

#[test]
fn kubernetes_backend_serves_when_asked_for_without_a_file_backend() {
    // Smee's default backend-kube-enabled=true is not a request.
    let c = config(&[], &[], None).unwrap();
    assert!(c.remote().is_none());
    // Smee's Helm setup: kube explicitly on, file explicitly on with a path → file, with a warning.
    let c = config(
        &[],
        &[
            ("SMEE_BACKEND_KUBE_ENABLED", "true"),
            ("SMEE_BACKEND_FILE_ENABLED", "true"),
            ("SMEE_BACKEND_FILE_PATH", "/h.yaml"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(c.hardware_file(), Some(Path::new("/h.yaml")));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("SMEE_BACKEND_KUBE_ENABLED ignored")),
        "{:?}",
        c.warnings
    );
    // kube explicitly on, no file backend asked for → the Kubernetes backend.
    let c = config(
        &[],
        &[
            ("SMEE_BACKEND_KUBE_ENABLED", "true"),
            ("SMEE_BACKEND_KUBE_CONFIG", "/etc/kube/config"),
            ("SMEE_BACKEND_KUBE_NAMESPACE", "tink-system"),
        ],
        None,
    )
    .unwrap();
    let source = c.remote().unwrap();
    assert_eq!(source.kind, SourceKind::Kube);
    assert_eq!(c.hardware_file(), None);
    let kube = source.kube.clone().unwrap();
    assert_eq!(kube.config.as_deref(), Some(Path::new("/etc/kube/config")));
    assert_eq!(kube.namespace.as_deref(), Some("tink-system"));
    // The file backend turned off: Smee's default (kube) serves.
    let c = config(
        &[
            "--backend-file-enabled=false",
            "--backend-kube-api=http://127.0.0.1:8001/",
        ],
        &[],
        None,
    )
    .unwrap();
    let source = c.remote().unwrap();
    assert_eq!(
        (source.kind, source.url.as_str()),
        (SourceKind::Kube, "http://127.0.0.1:8001")
    );
    let e = error(
        &[
            "--backend-kube-enabled=true",
            "--backend-kube-namespace=Bad_NS",
        ],
        &[],
        None,
    );
    assert!(e.contains("not a namespace name"), "{e}");
    let e = error(
        &[
            "--backend-file-enabled=false",
            "--backend-kube-enabled=false",
        ],
        &[],
        None,
    );
    assert!(e.contains("no other backend"), "{e}");
}

#[test]
fn paths_in_the_file_are_relative_to_it() {
    let c = config(
        &[],
        &[],
        Some("backend-file-path = \"hw.yaml\"\nstate-dir = \"/abs\"\n"),
    )
    .unwrap();
    assert_eq!(c.hardware_file(), Some(Path::new("/etc/nb/hw.yaml")));
    assert_eq!(c.state_dir, Path::new("/abs"));
    let c = config(&["--backend-file-path", "rel.yaml"], &[], None).unwrap();
    assert_eq!(c.hardware_file(), Some(Path::new("rel.yaml")));
}

#[test]
fn directories() {
    let c = config(
        &["--assets-dir", "/srv/assets", "--ipxe-dir=/srv/assets"],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(c.assets_dir.as_deref(), Some(Path::new("/srv/assets")));
    assert_eq!(c.ipxe_dir.as_deref(), Some(Path::new("/srv/assets")));
    assert_eq!(
        error(&["--assets-dir", "/nope"], &[], None),
        "--assets-dir /nope: not a directory"
    );
    let s = settings(&[], &[], None);
    let bare = FakeHost {
        auto: Ok(Ipv4Addr::LOCALHOST),
        dirs: vec![],
    };
    let c = Config::from_settings(&s, Profiles::new(), &bare).unwrap();
    assert!(
        c.ipxe_dir.is_none() && c.warnings[0].contains("no iPXE directory"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn unknown_environment_variables_are_found() {
    let env: BTreeMap<String, String> = [
        ("SMEE_DHCP_MODE", ""),
        ("SMEE_DHCP_MOOD", ""),
        ("NETBOOTD_IPXE_DIR", ""),
        ("PATH", ""),
        // Kubernetes service links for a Service named smee: not typos.
        ("SMEE_SERVICE_HOST", "10.96.0.7"),
        ("SMEE_PORT", "udp://10.96.0.7:67"),
        ("SMEE_PORT_67_UDP_ADDR", "10.96.0.7"),
        ("NETBOOTD_PORTS", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        Settings::unknown_env(&env),
        ["NETBOOTD_PORTS", "SMEE_DHCP_MOOD"]
    );
}

#[test]
fn smees_other_flags_are_accepted() {
    let c = config(
        &[
            "-otel-endpoint=collector:4317",
            "-otel-insecure",
            "--backend-noop-enabled=false",
        ],
        &[("SMEE_OTEL_ENDPOINT", "x:1")],
        None,
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.hardware_file(),
        Some(Path::new("/etc/netbootd/hardware.yaml"))
    );
    // Smee's noop backend: no inventory at all, and only with auto-proxy (as in Smee).
    let noop = [("SMEE_BACKEND_NOOP_ENABLED", "true")];
    let c = config(&["--dhcp-mode", "auto-proxy"], &noop, None).unwrap();
    assert_eq!(
        (c.backend.clone(), c.hardware_file()),
        (Backend::Noop, None)
    );
    assert_eq!(c.http.unknown_script, UnknownScript::StaticHook);
    let err = config(&[], &noop, None).unwrap_err().0;
    assert!(err.contains("needs --dhcp-mode auto-proxy"), "{err}");
    let err = config(
        &[
            "--dhcp-mode",
            "auto-proxy",
            "--backend-file-path",
            "/h.yaml",
        ],
        &noop,
        None,
    )
    .unwrap_err()
    .0;
    assert!(err.contains("choose one"), "{err}");
}

#[test]
fn what_is_not_applied_says_so() {
    // The script patch is applied: no warning; over the marker's 131 bytes: refused.
    let c = config(&[], &[("SMEE_IPXE_SCRIPT_PATCH", "echo hi")], None).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.tftp.ipxe_script_patch.as_deref(), Some("echo hi"));
    let long = "x".repeat(132);
    let err = config(&[], &[("SMEE_IPXE_SCRIPT_PATCH", &long)], None)
        .unwrap_err()
        .0;
    assert!(
        err.starts_with("SMEE_IPXE_SCRIPT_PATCH: the patch is 132 bytes"),
        "{err}"
    );
    // Smee's ISO flags without -iso-enabled say they do nothing; on, the URL is needed and
    // the marker defaults to Hook's.
    let iso = [
        "-iso-url=http://x/hook.iso",
        "-iso-magic-string=abcdefghijklmnopq",
        "-iso-static-ipam-enabled",
    ];
    let c = config(&iso, &[("SMEE_ISO_ENABLED", "false")], None).unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.iso.is_none());
    let err = config(&["-iso-enabled"], &[], None).unwrap_err().0;
    assert!(err.starts_with("--iso-enabled needs --iso-url"), "{err}");
    let c = config(&["-iso-enabled", "-iso-url=http://x/hook.iso"], &[], None).unwrap();
    let iso = c.iso.unwrap();
    assert_eq!((iso.magic.len(), iso.static_ipam), (1024, false));
    let err = config(
        &[
            "-iso-enabled",
            "-iso-url=http://x/h.iso",
            "-iso-magic-string=short",
        ],
        &[],
        None,
    )
    .unwrap_err()
    .0;
    assert!(err.contains("16 to 4096 bytes"), "{err}");
    // Any log level, as Smee: unknown is info, with a warning.
    let c = config(&["-log-level", "verbose"], &[], None).unwrap();
    assert_eq!(c.log_level, log::LevelFilter::Info);
    assert!(
        c.warnings[0].contains("\"verbose\" is no log level"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn auto_proxy_profile_and_syslog_host_names() {
    let toml = "[profiles.rescue]\nkernel = \"rescue/vmlinuz\"\n";
    let c = config(
        &[
            "--dhcp-mode",
            "auto-proxy",
            "--auto-proxy-profile",
            "rescue",
        ],
        &[],
        Some(toml),
    )
    .unwrap();
    assert!(matches!(&c.http.unknown_script, UnknownScript::Profile(n, _) if n == "rescue"));
    let err = config(
        &["--dhcp-mode", "auto-proxy", "--auto-proxy-profile", "nope"],
        &[],
        Some(toml),
    )
    .unwrap_err()
    .0;
    assert!(
        err.contains("does not define (it defines: rescue)"),
        "{err}"
    );
    let c = config(&["--auto-proxy-profile", "rescue"], &[], Some(toml)).unwrap();
    assert_eq!(c.http.unknown_script, UnknownScript::NotFound);
    assert!(
        c.warnings[0].contains("only auto-proxy mode"),
        "{:?}",
        c.warnings
    );
    // A host name for syslog in the proxy modes (no option 7 there), verbatim in scripts.
    let c = config(
        &["--dhcp-mode", "proxy", "--dhcp-syslog-ip", "syslog.example"],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(c.dhcp.syslog_host, "syslog.example");
    assert!(config(&["--dhcp-syslog-ip", "syslog.example"], &[], None).is_err());
}

/// A running (settings, config) pair and a reloaded one, from two config files.
fn reload(running: &str, reloaded: &str) -> reload::Reconciled {
    let load = |toml: &str| {
        let s = settings(&["--tftp-port", "6969"], &[], Some(toml));
        let profiles = file::parse(toml, Path::new("/etc/nb/netbootd.toml"))
            .unwrap()
            .profiles;
        let c = Config::from_settings(&s, profiles, &host()).unwrap();
        (s, c)
    };
    let (old_settings, old) = load(running);
    let (new_settings, new) = load(reloaded);
    reload::reconcile(&old_settings, &old, &new_settings, new)
}

#[test]
fn a_reload_applies_per_request_options_and_keeps_bound_ones_for_a_restart() {
    let running = "log-level = \"info\"\nextra-kernel-args = \"a=1\"\n[http]\nport = 8001\n[tftp]\nblock-size = 512\n[profiles.p]\nkernel = \"k1\"\n";
    let reloaded = "log-level = \"debug\"\nextra-kernel-args = \"a=2\"\n[http]\nport = 8002\n[tftp]\nblock-size = 1468\nport = 7000\n[dhcp]\nmode = \"proxy\"\n[profiles.p]\nkernel = \"k2\"\n[profiles.q]\nkernel = \"kq\"\n";
    let r = reload(running, reloaded);
    let names = |changes: &[reload::Change]| -> Vec<String> {
        changes.iter().map(|c| c.option.clone()).collect()
    };
    assert_eq!(
        names(&r.applied),
        [
            "log-level",
            "tftp-block-size",
            "extra-kernel-args",
            "profiles.p",
            "profiles.q"
        ]
    );
    // tftp-port comes from a flag, which the file cannot override: not a change.
    assert_eq!(names(&r.needs_restart), ["dhcp-mode", "http-port"]);
    assert_eq!(r.config.log_level, LevelFilter::Debug);
    assert_eq!(r.config.tftp.block_size, 1468);
    assert_eq!(r.config.http.extra_kernel_args, "a=2");
    assert_eq!(r.config.profiles["p"].kernel, "k2");
    // Bound values stay as running.
    assert_eq!(r.config.http.port, 8001);
    assert_eq!(r.config.tftp.port, 6969);
    assert_eq!(r.config.dhcp.mode, DhcpMode::Reservation);
    let port = &r.needs_restart[1];
    assert_eq!((port.old.as_str(), port.new.as_str()), ("8001", "8002"));
    assert_eq!(port.origin, "/etc/nb/netbootd.toml:4: http.port");
    assert_eq!(
        r.applied[1].describe(),
        "tftp-block-size: \"512\" -> \"1468\" (/etc/nb/netbootd.toml:6: tftp.block-size)"
    );
    assert_eq!(r.applied[4].old, "(none)");
}

#[test]
fn an_unchanged_reload_reports_nothing() {
    let text = "log-level = \"warn\"\n[profiles.p]\nkernel = \"k\"\n";
    let r = reload(text, text);
    assert!(r.unchanged(), "{:?} {:?}", r.applied, r.needs_restart);
}

#[test]
fn a_reload_redacts_credentials_in_urls() {
    let r = reload(
        "osie-url = \"http://u:old@h/o\"\n",
        "osie-url = \"http://u:new@h/o\"\n",
    );
    assert_eq!(r.applied.len(), 1);
    assert!(!r.applied[0].describe().contains("old"), "{:?}", r.applied);
    assert!(!r.applied[0].describe().contains("new@"), "{:?}", r.applied);
}

const EVERY_FIELD_YAML: &str = include_str!("../../tests/fixtures/smee-every-field.yaml");

/// Mutations of real files (bytes flipped, inserted, deleted, lines duplicated) must give a
/// result or an error, never a panic: a reload must not be able to take the daemon down.
#[test]
fn mangled_files_never_panic() {
    let toml_file = "[[machine]]\nmac = \"52:54:00:12:34:56\"\nipAddress = \"10.0.0.2\"\nsubnetMask = \"255.0.0.0\"\n\
                     nameServers = [\"1.1.1.1\"]\n[machine.netboot]\nallowPxe = true\n[machine.boot]\nkernel = \"k\"\ninitrd = [\"i\"]\n";
    let config_file = "log-level = \"info\"\n[dhcp]\nmode = \"proxy\"\n[profiles.p]\nkernel = \"k\"\ninitrd = [\"a\", \"b\"]\n";
    let alphabet: &[u8] = b" :\n-\"'[]{}&*<>|#!%@`,.=0123456789abcdefxyzABC\\\t\r\x00\xff";
    let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 2];
    for round in 0..6000 {
        let base = [EVERY_FIELD_YAML, toml_file, config_file][round % 3];
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % (bytes.len() + 1);
            let byte = alphabet[(next() as usize) % alphabet.len()];
            match next() % 4 {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {
                    let end = (at + (next() as usize) % 40).min(bytes.len());
                    let piece = bytes[at..end].to_vec();
                    bytes.splice(at..at, piece);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        for format in [
            crate::inventory::Format::Yaml,
            crate::inventory::Format::Toml,
        ] {
            let ok = crate::inventory::load_str(&text, format, "m", &Profiles::new()).is_ok();
            outcomes[ok as usize] += 1;
        }
        let _ = file::parse(&text, std::path::Path::new("m.toml"));
    }
    // Both outcomes occur, so the mutations are neither all fatal nor all harmless.
    assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
}

/// A key is its option's index, in the table and in every resolved settings list.
#[test]
fn every_key_finds_its_own_option() {
    let s = settings(&[], &[], None);
    assert_eq!(s.list.len(), OPTIONS.len());
    for (i, spec) in OPTIONS.iter().enumerate() {
        let key = OPTIONS
            .iter()
            .position(|o| o.field == spec.field)
            .expect("in the table");
        assert_eq!(key, i);
        assert_eq!(s.list[i].spec.field, spec.field);
    }
    assert_eq!(Key::dhcp_mode.name(), "dhcp-mode");
    assert_eq!(s.get(Key::tftp_port).spec.field, "tftp_port");
    assert_eq!(Key::config.spec().field, "config");
}

/// The config file's `[[pool]]` tables, through [`Config::with_pools`].
fn with_pools(args: &[&str], toml: &str) -> Result<Config, ConfigError> {
    let file = file::parse(toml, Path::new("/etc/nb/netbootd.toml"))
        .map_err(|e| ConfigError(e.join("\n")))?;
    let s = settings(args, &[], Some(toml));
    Config::from_settings(&s, file.profiles, &host())?.with_pools(file.pools)
}

#[test]
fn pools_are_read_checked_and_need_reservation_mode() {
    let toml = "[[pool]]\nrange = \"10.0.9.100-10.0.9.199\"\nsubnet = \"10.0.0.0/16\"\ngateway = \"10.0.0.1\"\ndns = [\"10.0.0.2\"]\ndomain = \"lab.example\"\n\
                [[pool]]\nname = \"bmc\"\nrange = \"10.254.0.0/24\"\nlease-time = \"1m\"\nboot = \"rescue\"\n\
                [profiles.rescue]\nkernel = \"vmlinuz\"\n";
    let c = with_pools(&[], toml).unwrap();
    let (a, b) = (&c.pools[0], &c.pools[1]);
    assert_eq!(
        (a.name.as_str(), a.lease_time, a.size()),
        ("pool1", 300, 100)
    );
    assert_eq!(a.mask(), Ipv4Addr::new(255, 255, 0, 0));
    assert_eq!(a.boot, pools::PoolBoot::Reboot { sleep: 30 });
    // A CIDR range: its host addresses; network and broadcast are never in range.
    assert_eq!(
        (b.first, b.last, b.lease_time),
        (
            Ipv4Addr::new(10, 254, 0, 1),
            Ipv4Addr::new(10, 254, 0, 254),
            60
        )
    );
    assert!(!b.in_range(Ipv4Addr::new(10, 254, 0, 255)));
    assert!(
        matches!(&b.boot, pools::PoolBoot::Profile(n, Some(p)) if n == "rescue" && p.kernel == "vmlinuz")
    );

    for (text, want) in [
        (
            "[[pool]]\nsubnet = \"10.0.0.0/16\"\n",
            "pool[1].range: required",
        ),
        (
            "[[pool]]\nrange = \"10.0.9.1-10.0.9.9\"\n",
            "pool[1].subnet: required when the range is not a CIDR",
        ),
        (
            "[[pool]]\nrange = \"10.0.9.9-10.0.9.1\"\nsubnet = \"10.0.0.0/16\"\n",
            "comes before",
        ),
        (
            "[[pool]]\nrange = \"10.1.9.1-10.1.9.9\"\nsubnet = \"10.0.0.0/16\"\n",
            "outside the subnet",
        ),
        (
            "[[pool]]\nrange = \"10.0.0.0/8\"\n",
            "a pool holds at most 65536",
        ),
        (
            "[[pool]]\nrange = \"10.0.9.0/24\"\nlease-time = \"2s\"\n",
            "lease-time: expected 10s to 24h",
        ),
        (
            "[[pool]]\nrange = \"10.0.9.0/24\"\nrouters = \"x\"\n",
            "netbootd.toml:3: pool[1].routers: unknown key",
        ),
        (
            "[[pool]]\nrange = \"10.0.9.0/24\"\n[[pool]]\nrange = \"10.0.9.128/25\"\n",
            "overlap",
        ),
        (
            "[[pool]]\nrange = \"10.0.9.0/24\"\nboot = \"nope\"\n",
            "names no [profiles.nope] table",
        ),
    ] {
        let err = with_pools(&[], text).map(|_| ()).unwrap_err().0;
        assert!(err.contains(want), "{text}: {err}");
    }
    // DHCP off: an error; the proxy modes: ignored with a warning.
    let one = "[[pool]]\nrange = \"10.0.9.0/24\"\n";
    let err = with_pools(&["--dhcp-mode=off"], one)
        .map(|_| ())
        .unwrap_err()
        .0;
    assert!(err.contains("DHCP is off"), "{err}");
    let c = with_pools(&["--dhcp-mode=proxy"], one).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("ignored in --dhcp-mode proxy")),
        "{:?}",
        c.warnings
    );
}
