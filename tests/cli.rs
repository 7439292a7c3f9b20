//! The binary's command line: --version, --help, option precedence as the binary sees it,
//! `check` on good and bad files, and one-line errors naming the flag, variable or key.

mod common;

use common::{base_config, run, text, TempDir};
use netbootd::config::OPTIONS;

const EVERY_FIELD: &str = include_str!("fixtures/smee-every-field.yaml");

/// Writes a hardware file and runs `netbootd check` on it with the test config.
fn check_hardware(tag: &str, hardware: &str) -> (TempDir, String, std::process::Output) {
    let dir = TempDir::new(tag);
    let hw = dir.write("hardware.yaml", hardware);
    let config = base_config(&dir, &hw);
    let out = run(&["check", "--config", config.to_str().unwrap()], &[]);
    (dir, hw.display().to_string(), out)
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("netbootd {}", env!("CARGO_PKG_VERSION"))
    );

    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for o in OPTIONS {
        let entry = help
            .split(&format!("  --{}\n", o.name()))
            .nth(1)
            .unwrap_or_else(|| panic!("--{} missing from help", o.name()));
        let entry = entry.split("\n  --").next().unwrap();
        for var in o.env_names() {
            assert!(
                entry.contains(&var),
                "--{}: no {var} in {entry:?}",
                o.name()
            );
        }
        let default = if o.default.is_empty() {
            "none"
        } else {
            o.default
        };
        assert!(
            entry.contains(&format!("default: {default}")),
            "--{}: no default in {entry:?}",
            o.name()
        );
    }
    assert!(help.contains("SMEE_DHCP_MODE") && help.contains("default: reservation"));
}

#[test]
fn unknown_flags_and_commands_are_usage_errors() {
    let out = run(&["--dhcp-mood", "proxy"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--dhcp-mood"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// `netbootd config` prints `name = "value"  # source` for each option.
fn effective(
    args: &[&str],
    env: &[(&str, &str)],
) -> std::collections::HashMap<String, (String, String)> {
    let out = run(args, env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(" = ")?;
            let (value, source) = rest.split_once("  # ")?;
            Some((
                name.to_string(),
                (value.trim_matches('"').to_string(), source.to_string()),
            ))
        })
        .collect()
}

#[test]
fn precedence_through_the_binary() {
    let dir = TempDir::new("precedence");
    let hw = dir.write("hardware.yaml", EVERY_FIELD);
    let config = base_config(&dir, &hw);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("dhcp-mode = \"auto-proxy\"\ntftp-port = 6901\nhttp-port = 8001\nsyslog-port = 5001\n[tftp]\nblock-size = 1001\n");
    std::fs::write(&config, toml).unwrap();
    let cfg = config.to_str().unwrap();
    let env = [
        ("NETBOOTD_DHCP_MODE", "proxy"),
        ("SMEE_DHCP_MODE", "reservation"),
        ("SMEE_TFTP_PORT", "6903"),
        ("NETBOOTD_HTTP_PORT", "8002"),
        ("SMEE_HTTP_PORT", "8003"),
    ];
    let got = effective(
        &[
            "config",
            "--config",
            cfg,
            "--http-port=8004",
            "--syslog-port",
            "5004",
        ],
        &env,
    );
    let at = |name: &str| (got[name].0.as_str(), got[name].1.as_str());
    assert_eq!(
        at("http-port"),
        ("8004", "--http-port"),
        "flag (--x=v) beats both variables and the file"
    );
    assert_eq!(
        at("syslog-port"),
        ("5004", "--syslog-port"),
        "flag (--x v) beats the file"
    );
    assert_eq!(
        at("dhcp-mode"),
        ("proxy", "NETBOOTD_DHCP_MODE"),
        "NETBOOTD_ beats SMEE_ and the file"
    );
    assert_eq!(
        at("tftp-port"),
        ("6903", "SMEE_TFTP_PORT"),
        "SMEE_ beats the file"
    );
    assert_eq!(
        at("tftp-block-size").0,
        "1001",
        "the file beats the default"
    );
    assert!(
        at("tftp-block-size")
            .1
            .ends_with("netbootd.toml:9: tftp.block-size"),
        "{:?}",
        at("tftp-block-size")
    );
    assert_eq!(at("dhcp-addr"), ("0.0.0.0:67", "--dhcp-addr (default)"));
    // NETBOOTD_CONFIG names the file as --config does
    let got = effective(&["config"], &[("NETBOOTD_CONFIG", cfg)]);
    assert_eq!(got["dhcp-mode"].0, "auto-proxy");
}

#[test]
fn check_loads_a_smee_file_and_reports_the_machine_count() {
    let (dir, hw, out) = check_hardware("check-ok", EVERY_FIELD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: 4 machines (2 netboot), 0 warnings\n"
    );

    // Smee's own way of naming the file, with Smee's kube default left on.
    let out = run(
        &[
            "check",
            "--public-ip-interface",
            "lo",
            "--ipxe-dir",
            dir.path("ipxe").to_str().unwrap(),
        ],
        &[
            ("SMEE_BACKEND_FILE_ENABLED", "true"),
            ("SMEE_BACKEND_FILE_PATH", hw.as_str()),
            ("SMEE_BACKEND_KUBE_ENABLED", "true"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("warning: SMEE_BACKEND_KUBE_ENABLED ignored"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("ok: 4 machines (2 netboot), 1 warnings\n"),
        "{stdout}"
    );

    // The form: --backend-file-path FILE on its own.
    let out = run(
        &[
            "check",
            "--public-ip-interface=lo",
            "--backend-file-path",
            &hw,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: 4 machines (2 netboot)"));
}

#[test]
fn check_warns_about_unknown_fields_and_case_variants_load_the_same() {
    let (_dir, hw, out) = check_hardware(
        "check-warn",
        "52:54:00:AB:CD:EF:\n  IPADDRESS: \"10.0.0.5\"\n  SubnetMask: \"255.255.255.0\"\n  rack: r12\n  NETBOOT:\n    ALLOWPXE: true\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("warning: {hw}:4: 52:54:00:ab:cd:ef: rack: unknown field ignored\nok: 1 machines (1 netboot), 1 warnings\n")
    );
}

#[test]
fn check_refuses_a_broken_file_naming_line_and_field() {
    let (_dir, hw, out) = check_hardware(
        "check-bad",
        "52:54:00:12:34:56:\n  ipAddress: 10.0.0.5\n  subnetMask: 255.255.0.255\n52:54:00:12:34:57:\n  ipAddress: 10.0.0.6\n  subnetMask: 255.255.255.0\n  defaultGateway: 10.9.9.9\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {hw}:3: 52:54:00:12:34:56: subnetMask: 255.255.0.255 is not a contiguous netmask\n\
             error: {hw}:7: 52:54:00:12:34:57: defaultGateway: 10.9.9.9 is outside the subnet 10.0.0.0/24\n\
             failed: 2 errors in {hw} (2 records with errors; serve would leave them out and serve the other 0 machines)\n"
        )
    );
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn check_refuses_a_missing_file() {
    let out = run(
        &[
            "check",
            "--public-ip-interface=lo",
            "--backend-file-path",
            "/nonexistent/hardware.yaml",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .starts_with("error: /nonexistent/hardware.yaml: cannot open: No such file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_warns_about_mapped_ipxe_binaries_the_directory_lacks() {
    let dir = TempDir::new("missing-binaries");
    let ipxe = dir.path("ipxe");
    std::fs::create_dir_all(&ipxe).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi"] {
        dir.write(&format!("ipxe/{f}"), "x");
    }
    let check = |more: &[&str]| {
        let mut args = vec![
            "check",
            "--public-ip-interface=lo",
            "--dhcp-mode=auto-proxy",
            "--backend-noop-enabled",
            "--ipxe-dir",
            ipxe.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        run(&args, &[])
    };
    let args = |table: &str| check(&["--dhcp-ipxe-binaries", table]);
    let out = args("0=undionly.kpxe,7=ipxe.efi,11=snp.efi,41=snp.efi,9=snponly.efi");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("--dhcp-ipxe-binaries names snp.efi, which")
            && stdout.contains("--dhcp-ipxe-binaries names snponly.efi, which")
            && stdout.contains(", 2 warnings"),
        "{stdout}"
    );
    let out = args("0=undionly.kpxe,7=ipxe.efi");
    assert!(
        text(&out.stdout).contains(", 0 warnings"),
        "{}",
        text(&out.stdout)
    );
    // GRUB for arch 7: shim and the GRUB image it starts must be there too.
    dir.write("ipxe/shimx64.efi", "x");
    let out = check(&[
        "--dhcp-ipxe-binaries",
        "0=undionly.kpxe,7=ipxe.efi",
        "--dhcp-loaders",
        "7=grub,9=grub,0=ipxe",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("--dhcp-loaders names grubx64.efi, which")
            && !stdout.contains("names shimx64.efi")
            && stdout.contains(", 1 warnings"),
        "{stdout}"
    );
    let out = run(
        &[
            "check",
            "--backend-noop-enabled",
            "--dhcp-loaders",
            "0=grub",
        ],
        &[],
    );
    assert!(
        !out.status.success() && text(&out.stderr).contains("not to architecture 0"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_values_stop_with_one_line_naming_where_they_came_from() {
    let dir = TempDir::new("bad-values");
    let hw = dir.write("hardware.yaml", EVERY_FIELD);
    let config = base_config(&dir, &hw);
    let cfg = config.to_str().unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--dhcp-ip-for-packet", "10.0.0.256"], &[], "invalid value \"10.0.0.256\" for --dhcp-ip-for-packet: not an IPv4 address"),
        (&["--dhcp-mode=fast"], &[], "invalid value \"fast\" for --dhcp-mode: expected reservation, proxy, auto-proxy or off"),
        (&[], &[("SMEE_DHCP_MODE", "fast")], "invalid value \"fast\" for SMEE_DHCP_MODE: expected reservation, proxy, auto-proxy or off"),
        (&[], &[("NETBOOTD_TFTP_PORT", "0")], "invalid value \"0\" for NETBOOTD_TFTP_PORT: port out of range 1..65535"),
        (&["--http-port", "65536"], &[], "invalid value \"65536\" for --http-port: port out of range 1..65535"),
        (&["--tftp-block-size", "511"], &[], "invalid value \"511\" for --tftp-block-size: block size outside 512..65464"),
        (&[], &[("SMEE_TFTP_BLOCK_SIZE", "65465")], "invalid value \"65465\" for SMEE_TFTP_BLOCK_SIZE: block size outside 512..65464"),
        (&["--dhcp-enabled=maybe"], &[], "invalid value \"maybe\" for --dhcp-enabled: expected true or false"),
    ];
    for (args, env, want) in cases {
        let mut all = vec!["check", "--config", cfg];
        all.extend_from_slice(args);
        let out = run(&all, env);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}");
        assert_eq!(
            text(&out.stderr),
            format!("netbootd: {want}\n"),
            "{args:?} {env:?}"
        );
    }
    // from the TOML file, with its line
    let toml = dir.write(
        "bad.toml",
        "public-ip-interface = \"lo\"\n\n[tftp]\nblock-size = 70000\n",
    );
    let out = run(&["check", "--config", toml.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("netbootd: invalid value \"70000\" for {}:4: tftp.block-size: block size outside 512..65464\n", toml.display())
    );
    let toml = dir.write("typo.toml", "[dhcp]\nmod = \"proxy\"\n");
    let out = run(&["check", "--config", toml.to_str().unwrap()], &[]);
    assert_eq!(
        text(&out.stderr),
        format!(
            "netbootd: {}:2: unknown option \"dhcp.mod\"\n",
            toml.display()
        )
    );
    let out = run(&["check", "--config", "/nonexistent/netbootd.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/netbootd.toml: cannot open: No such file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn kubernetes_with_nowhere_to_find_the_api_is_a_clear_error() {
    // No kubeconfig, no KUBECONFIG or HOME (the environment is empty), not in a pod.
    let out = run(
        &["check", "--public-ip-interface=lo"],
        &[("SMEE_BACKEND_KUBE_ENABLED", "true")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the Kubernetes backend has no API to talk to: no --backend-kube-config, no KUBECONFIG, not in a cluster"),
        "{err}"
    );
}

#[test]
fn the_shipped_examples_pass_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    for hw in ["etc/hardware.example.yaml", "etc/hardware.example.toml"] {
        let out = run(
            &[
                "check",
                "--config",
                &format!("{root}/etc/netbootd.toml"),
                "--public-ip-interface=lo",
                "--backend-file-path",
                &format!("{root}/{hw}"),
            ],
            &[],
        );
        assert!(out.status.success(), "{hw}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("ok: "),
            "{hw}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn the_readme_lists_every_option_with_its_default() {
    let readme = include_str!("../README.md");
    for o in OPTIONS {
        let default = if o.default.is_empty() {
            "none"
        } else {
            o.default
        };
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `--{}` |", o.name())));
        let row = row.unwrap_or_else(|| panic!("README has no row for --{}", o.name()));
        assert!(
            row.contains(&format!("| `{default}` |")),
            "README default of --{}: {row}",
            o.name()
        );
        for var in o.env_names() {
            assert!(
                row.contains(&var),
                "README row of --{} lacks {var}",
                o.name()
            );
        }
    }
}

/// etc/netbootd.toml shows every option (set, or commented out), under its flag name or as
/// a key of its table.
#[test]
fn the_example_configuration_shows_every_option() {
    let example = include_str!("../etc/netbootd.toml");
    let keys: Vec<&str> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim_start())
        .filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim()))
        .collect();
    for o in OPTIONS.iter().filter(|o| o.name() != "config") {
        let name = o.name();
        let suffix = name.split_once('-').map_or(name.as_str(), |(_, s)| s);
        assert!(
            keys.iter().any(|k| *k == name || *k == suffix),
            "etc/netbootd.toml does not show {name}"
        );
    }
}

#[test]
fn a_non_utf8_environment_is_not_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    let out = common::command(
        &[
            "check",
            "--public-ip-interface=lo",
            "--backend-file-path",
            "/nonexistent",
        ],
        &[],
    )
    .env("UNRELATED", bad)
    .env("SMEE_DHCP_MODE", bad)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("SMEE_DHCP_MODE: expected reservation"),
        "{}",
        text(&out.stderr)
    );
    // A non-UTF-8 argument is a usage error, not a panic.
    let out = common::command(&["check", "--backend-file-path"], &[])
        .arg(bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not valid UTF-8"),
        "{}",
        text(&out.stderr)
    );
}

/// The README's first command: the example configuration serves DHCP, TFTP and HTTP on loopback only,
/// at unprivileged ports, and stops cleanly.
#[test]
fn the_example_configuration_serves_on_loopback_only() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut server = common::Server::start(&[
        "--config",
        &format!("{root}/etc/netbootd.toml"),
        "--public-ip-interface=lo",
    ]);
    let limit = std::time::Duration::from_secs(10);
    let (line, _) = server.wait_for("DHCP reservation on UDP", limit);
    assert!(line.contains("UDP 127.0.0.1:1067"), "{line}");
    assert!(line.contains("boot server on UDP 127.0.0.1:4011"), "{line}");
    let (line, _) = server.wait_for("TFTP on", limit);
    assert!(line.contains("TFTP on 127.0.0.1:1069"), "{line}");
    let (line, _) = server.wait_for("HTTP on", limit);
    assert!(line.contains("HTTP on 127.0.0.1:8080"), "{line}");
    server.wait_for("syslog receiver on UDP 127.0.0.1:1514", limit);
    assert_eq!(server.stop(nix::sys::signal::Signal::SIGTERM, limit), 0);
}
