//! The command line: `netbootd [serve]`, `netbootd check`, `netbootd config`, `netbootd
//! unknown`, `netbootd byo-dhcp SERVER`, `--version` and `--help`. Gathers flags, the
//! environment and the config file into a [`Config`], loads the inventory, sets up logging
//! and hands over to the service loop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use log::{error, info, warn};

use crate::config::{self, args, Config, ConfigFile, Key, Settings, OPTIONS};
use crate::inventory::{Inventory, Problem};
use crate::io::files;
use crate::io::netif::SystemHost;
use crate::io::privileges::{drop_privileges, Outcome, DEFAULT_USER};
use crate::io::signals::Signals;
use crate::policy::byo_dhcp;
use crate::service::{
    self,
    dhcp::DhcpService,
    http::HttpService,
    log_gate::{limits_of, LogGate, LogGateService},
    metrics::Metrics,
    reload::{left_out, log_refused, ConfigSource, InventorySource, Reloader},
    syslog::SyslogService,
    tftp::TftpService,
    Context, Service,
};
use crate::value;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit codes: 0 fine, 1 bad configuration or inventory, 2 bad command line.
pub fn main() -> i32 {
    let argv: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect()
    {
        Ok(argv) => argv,
        Err(bad) => {
            eprintln!("netbootd: argument {bad:?} is not valid UTF-8");
            return 2;
        }
    };
    if argv.iter().any(|a| a == "--help" || a == "-h") || argv.first().is_some_and(|a| a == "help")
    {
        print!("{}", help_text());
        return 0;
    }
    // `openwrt-config FILE`: the procd init script's UCI → TOML step.
    if argv.first().is_some_and(|a| a == "openwrt-config") {
        return openwrt_config(argv.get(1).map(String::as_str));
    }
    // `cache ls|rm PATH...|prefetch PROFILE...`: the words before the options are the command's.
    let (argv, cache_words) = if argv.first().is_some_and(|a| a == "cache") {
        let words: Vec<String> = argv[1..]
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .cloned()
            .collect();
        let rest = argv[1 + words.len()..].iter().cloned();
        (
            std::iter::once("cache".to_string()).chain(rest).collect(),
            words,
        )
    } else {
        (argv, Vec::new())
    };
    // `byo-dhcp SERVER`: the one command with an argument of its own.
    let byo_server = match argv.first().map(String::as_str) {
        Some("byo-dhcp") => match argv.get(1).map(String::as_str) {
            Some(name) if !name.starts_with('-') => match byo_dhcp::Server::parse(name) {
                Some(server) => Some(server),
                None => {
                    eprintln!(
                        "netbootd: byo-dhcp: unknown DHCP server {name:?} (expected {})",
                        byo_dhcp::Server::NAMES
                    );
                    return 2;
                }
            },
            _ => {
                eprintln!(
                    "usage: netbootd byo-dhcp SERVER [options]  (SERVER: {})",
                    byo_dhcp::Server::NAMES
                );
                return 2;
            }
        },
        _ => None,
    };
    let argv: Vec<String> = match byo_server {
        Some(_) => std::iter::once("byo-dhcp".to_string())
            .chain(argv.into_iter().skip(2))
            .collect(),
        None => argv,
    };
    // `unknown --yaml`: a switch of that command only.
    let unknown_yaml =
        argv.first().is_some_and(|a| a == "unknown") && argv.iter().any(|a| a == "--yaml");
    let argv: Vec<String> = argv
        .into_iter()
        .filter(|a| !(unknown_yaml && a == "--yaml"))
        .collect();
    let flags = match args::parse(&argv) {
        Ok(flags) => flags,
        Err(message) => {
            eprintln!("netbootd: {message}\nRun 'netbootd --help' for the options.");
            return 2;
        }
    };
    if flags.version {
        println!("netbootd {VERSION}");
        return 0;
    }
    let command = flags.command.clone().unwrap_or_else(|| "serve".into());
    if !matches!(
        command.as_str(),
        "serve" | "check" | "config" | "unknown" | "byo-dhcp" | "cache"
    ) {
        eprintln!(
            "netbootd: unknown command {command:?} (expected serve, check, config, unknown, byo-dhcp or cache)"
        );
        return 2;
    }
    // vars_os: `vars()` panics on a variable that is not UTF-8, anywhere in the environment.
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .filter(|(k, _)| k.starts_with("NETBOOTD_") || k.starts_with("SMEE_"))
        .collect();
    let loaded = match byo_server {
        // The addresses netbootd's DHCP would hand out, though it is off beside another server.
        Some(_) => load_config_with(&flags, &env, Settings::with_dhcp_addresses),
        None => load_config(&flags, &env),
    };
    let (settings, mut config) = match loaded {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("netbootd: {message}");
            return 1;
        }
    };
    match command.as_str() {
        "check" => {
            let missing = missing_binaries(&config);
            config.warnings.extend(missing);
            check(&config)
        }
        "unknown" => unknown(&config, unknown_yaml),
        "cache" => cache(&config, &cache_words),
        "byo-dhcp" => match byo_server {
            Some(server) => byo_dhcp(&config, server),
            None => 2,
        },
        "config" => {
            print!("{}", describe_settings(&settings, &config));
            0
        }
        _ => {
            // SIGHUP loads the configuration again the same way: same flags and environment.
            let source: ConfigSource = Arc::new(move || load_config(&flags, &env));
            serve(settings, config, source)
        }
    }
}

/// `netbootd unknown [--yaml]`: the discovery list as the pool journal in `--state-dir` holds
/// it (new MACs, their facts and pool addresses are written at once; DISCOVER counts and
/// last-seen times at the journal's next rewrite, at most a minute later, and at shutdown).
/// `--yaml` prints a hardware-file entry per MAC, with its pool address as the reservation.
fn unknown(config: &Config, yaml: bool) -> i32 {
    use crate::policy::pool::{journal, Pools};
    let path = config.state_dir.join(crate::io::pool_journal::FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            eprintln!("netbootd: {}: {e}", path.display());
            return 1;
        }
    };
    let mut pools = Pools::new(config.pools.clone(), Vec::new());
    for record in journal::read(&bytes).records {
        pools.replay(record);
    }
    let seen: Vec<_> = pools.discovered().collect();
    let time = |ms: u64| crate::wire::json::rfc3339_utc(ms);
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if yaml {
        println!(
            "# netbootd unknown --yaml: {} machines not in the inventory",
            seen.len()
        );
        for d in seen.iter().copied() {
            let settings = d
                .address
                .and_then(|ip| config.pools.iter().find(|p| p.in_range(ip)));
            println!(
                "# first seen {}, last seen {}, {} DISCOVERs via {}; arch {}; vendor class {}; host name {}",
                time(d.first_seen),
                time(d.last_seen),
                d.discovers,
                d.via,
                d.arch.map_or_else(|| "-".into(), |a| a.to_string()),
                dash(&d.vendor_class),
                dash(&d.hostname)
            );
            println!("{}:", d.mac);
            match (d.address, settings) {
                (Some(ip), Some(p)) => {
                    println!("  ipAddress: {ip}  # its pool address: change it to the reservation");
                    println!("  subnetMask: {}", p.mask());
                    if let Some(gw) = p.gateway {
                        println!("  defaultGateway: {gw}");
                    }
                }
                _ => println!("  # ipAddress: (none given yet)"),
            }
            if let Some(host) = &d.hostname {
                println!("  hostname: {host}");
            }
            println!("  netboot:\n    allowPxe: {}", d.arch.is_some());
        }
        return 0;
    }
    println!(
        "{:<17}  {:<20}  {:<20}  {:>9}  {:<16}  {:>4}  {:<15}  vendor class / host name",
        "MAC", "first seen", "last seen", "discovers", "via", "arch", "pool address"
    );
    for d in seen.iter().copied() {
        let stamp = |ms: u64| time(ms).chars().take(19).collect::<String>();
        println!(
            "{:<17}  {:<20}  {:<20}  {:>9}  {:<16}  {:>4}  {:<15}  {} / {}",
            d.mac,
            stamp(d.first_seen),
            stamp(d.last_seen),
            d.discovers,
            d.via,
            d.arch.map_or_else(|| "-".into(), |a| a.to_string()),
            d.address.map_or_else(|| "-".into(), |a| a.to_string()),
            dash(&d.vendor_class),
            dash(&d.hostname)
        );
    }
    println!("{} unknown MACs (journal {})", seen.len(), path.display());
    0
}

/// `netbootd openwrt-config /etc/config/netbootd`: prints the TOML that UCI file means.
fn openwrt_config(path: Option<&str>) -> i32 {
    let Some(path) = path else {
        eprintln!("usage: netbootd openwrt-config /etc/config/netbootd");
        return 2;
    };
    let translated =
        files::read_text(Path::new(path), 1 << 20).and_then(|text| config::uci::uci_to_toml(&text));
    match translated {
        Ok(toml) => {
            print!("{toml}");
            0
        }
        Err(e) => {
            eprintln!("netbootd: {path}: {e}");
            1
        }
    }
}

/// `netbootd byo-dhcp SERVER`: the configuration another DHCP server needs to give the
/// inventory's machines what netbootd's DHCP would (policy::byo_dhcp), on standard output.
/// Warnings and left-out records go to standard error; exit 1 when no inventory loads.
fn byo_dhcp(config: &Config, server: byo_dhcp::Server) -> i32 {
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let file = match config.hardware_file() {
        Some(path) => match files::load_inventory(path, &config.profiles) {
            Ok(loaded) => {
                for p in loaded.warnings.iter().chain(&loaded.errors) {
                    eprintln!("warning: {p}");
                }
                Some(loaded.inventory)
            }
            Err(problems) => {
                print_problems(&problems);
                eprintln!("failed: {} errors in {}", problems.len(), path.display());
                return 1;
            }
        },
        None => None,
    };
    let remote = match config.remote() {
        Some(source) => match fetch_remote(config) {
            Ok(inventory) => Some(inventory),
            Err(why) => {
                eprintln!("failed: {}: {why}", source.kind.name().to_ascii_uppercase());
                return 1;
            }
        },
        None => None,
    };
    let inventory = match (file, remote) {
        (Some(file), Some(remote)) => Inventory::layered(Arc::new(file), Arc::new(remote)).0,
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => Inventory::default(),
    };
    let machines: Vec<_> = inventory.machines().collect();
    print!("{}", byo_dhcp::generate(server, &machines, &config.dhcp));
    0
}

/// The remote source's machines, fetched once as `check` does.
#[cfg(feature = "remote")]
fn fetch_remote(config: &Config) -> Result<Inventory, String> {
    let (_, loaded) = crate::service::remote::check(config)?;
    for e in &loaded.errors {
        eprintln!("warning: {e} (entry left out)");
    }
    Ok(loaded.inventory)
}

#[cfg(not(feature = "remote"))]
fn fetch_remote(_: &Config) -> Result<Inventory, String> {
    Err("this build has no remote sources".into())
}

/// Flags + environment + config file → validated config. Errors are one line.
pub fn load_config(
    flags: &config::Flags,
    env: &BTreeMap<String, String>,
) -> Result<(Settings, Config), String> {
    load_config_with(flags, env, |s| s)
}

/// [`load_config`], with `adjust` applied to the settings before they are validated.
fn load_config_with(
    flags: &config::Flags,
    env: &BTreeMap<String, String>,
    adjust: fn(Settings) -> Settings,
) -> Result<(Settings, Config), String> {
    let config_path = Settings::resolve(flags, env, None).get(Key::config).clone();
    let file = match config_path.value.as_str() {
        "" if Path::new(config::DEFAULT_CONFIG_PATH).exists() => Some(read_config_file(
            Path::new(config::DEFAULT_CONFIG_PATH),
            "default",
        )?),
        "" => None,
        path => Some(read_config_file(Path::new(path), &config_path.origin())?),
    };
    let settings = adjust(Settings::resolve(flags, env, file.as_ref()));
    let (profiles, subnets, hostnames, pools, (upstreams, pinned)) = file
        .map(|f| {
            let cache = (f.upstreams, f.pinned);
            (f.profiles, f.subnets, f.hostnames, f.pools, cache)
        })
        .unwrap_or_default();
    let mut config = Config::from_settings(&settings, profiles, &SystemHost)
        .and_then(|c| c.with_source_tables(subnets, hostnames))
        .and_then(|c| c.with_pools(pools))
        .and_then(|c| c.with_upstreams(upstreams, pinned))
        .map_err(|e| e.0)?;
    for var in Settings::unknown_env(env) {
        config.warnings.push(format!(
            "environment variable {var} names no option; ignored"
        ));
    }
    Ok((settings, config))
}

/// Reads and parses the config file; `named_by` says which flag or variable named it.
fn read_config_file(path: &Path, named_by: &str) -> Result<ConfigFile, String> {
    let text = files::read_text(path, files::MAX_CONFIG_FILE_BYTES)
        .map_err(|e| format!("{}: {e} (named by {named_by})", path.display()))?;
    config::file::parse(&text, path).map_err(|errors| errors.join("\n"))
}

/// `netbootd check`: validate config and inventory, print warnings and a summary. Exits 1
/// when the file cannot be used or any record has an error (serve would leave it out), so
/// that pipelines catch it; with the hardware file and SMD both, also when a MAC (or an
/// address) is in both.
fn check(config: &Config) -> i32 {
    for w in &config.warnings {
        println!("warning: {w}");
    }
    for p in &config.pools {
        let boot = match &p.boot {
            config::pools::PoolBoot::Reboot { sleep } => format!("reboot after {sleep} s"),
            config::pools::PoolBoot::Profile(name, _) => format!("profile {name}"),
        };
        println!(
            "pool {}: {}-{} in {} ({} addresses, {} s leases, iPXE: {boot}; leases in {})",
            p.name,
            p.first,
            p.last,
            p.subnet,
            p.size(),
            p.lease_time,
            config
                .state_dir
                .join(crate::io::pool_journal::FILE_NAME)
                .display()
        );
    }
    let file = config.hardware_file().map(|path| check_file(config, path));
    let smd = config.remote().map(|_| check_remote(config));
    match (file, smd) {
        (None, None) => {
            println!(
                "ok: no inventory (--backend-noop-enabled): every machine is unknown, {} warnings",
                config.warnings.len()
            );
            0
        }
        (Some((status, _)), None) | (None, Some((status, _))) => status,
        (Some((file_status, file)), Some((smd_status, smd))) => {
            let clashes = match (file, smd) {
                (Some(file), Some(smd)) => Inventory::layered(Arc::new(file), Arc::new(smd)).1,
                _ => Vec::new(),
            };
            for clash in &clashes {
                eprintln!("error: {clash}");
            }
            if !clashes.is_empty() {
                eprintln!(
                    "failed: {} SMD machines clash with the hardware file (serve gives the file's entries)",
                    clashes.len()
                );
            }
            let clash_status = i32::from(!clashes.is_empty());
            file_status.max(smd_status).max(clash_status)
        }
    }
}

/// A warning for each file `--dhcp-ipxe-binaries` maps an architecture to that `--ipxe-dir`
/// lacks (Debian's `ipxe` package has no ARM64 `snp.efi`, for one), and for shim and GRUB
/// (`shimx64.efi`, `grubx64.efi`) of the architectures `--dhcp-loaders` gives GRUB: those
/// machines would get a boot file name and then "file not found".
fn missing_binaries(config: &Config) -> Vec<String> {
    let Some(dir) = &config.ipxe_dir else {
        return Vec::new();
    };
    let mut wanted: Vec<(&str, String)> = Vec::new();
    for (_, file) in &config.dhcp.ipxe_binaries {
        wanted.push(("--dhcp-ipxe-binaries", file.clone()));
    }
    for shim in config
        .dhcp
        .grub_arches
        .iter()
        .filter_map(|a| crate::value::grub_binary(*a))
    {
        wanted.push(("--dhcp-loaders", shim.to_string()));
        wanted.push(("--dhcp-loaders", shim.replacen("shim", "grub", 1)));
    }
    let mut warnings: Vec<String> = Vec::new();
    for (option, file) in wanted {
        let warning = format!(
            "{option} names {file}, which {} does not have: machines of its architectures would be told to fetch a file that is not there",
            dir.display()
        );
        if !warnings.contains(&warning) && !file.contains("://") && !dir.join(&file).is_file() {
            warnings.push(warning);
        }
    }
    warnings
}

/// `check` of the hardware file: its status and, when usable, its machines.
fn check_file(config: &Config, path: &Path) -> (i32, Option<Inventory>) {
    match files::load_inventory(path, &config.profiles) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            let inv = loaded.inventory;
            let warnings = config.warnings.len() + loaded.warnings.len();
            if loaded.errors.is_empty() {
                let of = if config.remote().is_some() {
                    format!(" in {}", path.display())
                } else {
                    String::new()
                };
                println!(
                    "ok: {} machines ({} netboot){of}, {warnings} warnings",
                    inv.len(),
                    inv.netboot_count()
                );
                return (0, Some(inv));
            }
            print_problems(&loaded.errors);
            let serve = if config.strict {
                "serve --strict would refuse the file".to_string()
            } else {
                format!(
                    "serve would leave them out and serve the other {} machines",
                    inv.len()
                )
            };
            eprintln!(
                "failed: {} errors in {} ({} records with errors; {serve})",
                loaded.errors.len(),
                path.display(),
                loaded.refused
            );
            (1, Some(inv))
        }
        Err(problems) => {
            print_problems(&problems);
            eprintln!("failed: {} errors in {}", problems.len(), path.display());
            (1, None)
        }
    }
}

/// `check` of the remote source: one fetch, as the service does it.
#[cfg(feature = "remote")]
fn check_remote(config: &Config) -> (i32, Option<Inventory>) {
    match crate::service::remote::check(config) {
        Ok((summary, loaded)) => {
            for e in &loaded.errors {
                let name = config.remote().map_or("", |r| r.kind.name());
                println!("warning: {name}: {e} (entry left out)");
            }
            println!("ok: {summary}, {} warnings", config.warnings.len());
            (0, Some(loaded.inventory))
        }
        Err(why) => {
            let name = config.remote().map_or("", |r| r.kind.name());
            eprintln!("failed: {}: {why}", name.to_ascii_uppercase());
            (1, None)
        }
    }
}

#[cfg(not(feature = "remote"))]
fn check_remote(_: &Config) -> (i32, Option<Inventory>) {
    eprintln!("failed: this build has no remote sources");
    (1, None)
}

fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("error: {p}");
    }
}

/// Starts one service from the configuration, with what every service shares.
type Start = fn(&Config, &Context) -> std::io::Result<Box<dyn Service>>;

/// A service's row: its name, whether the configuration turns it on, how it starts.
type Registration = (&'static str, fn(&Config) -> bool, Start);

/// The services, in start order. Adding a service is one line here (and its [`Service`]
/// implementation).
#[rustfmt::skip]
const SERVICES: [Registration; 6] = [
    ("DHCP", |c| c.dhcp.enabled, |c, x| Ok(Box::new(DhcpService::start(c, x)?))),
    ("TFTP", |c| c.tftp.enabled, |c, x| Ok(Box::new(TftpService::start(c, x)?))),
    ("HTTP", |c| c.http.enabled(), |c, x| Ok(Box::new(HttpService::start(c, x)?))),
    ("syslog", |c| c.syslog.enabled, |c, x| Ok(Box::new(SyslogService::start(c, x)?))),
    ("log budget", |_| true, |_, x| Ok(Box::new(LogGateService(x.log.clone())))),
    ("remote source", |c| c.remote().is_some(), start_remote),
];

#[cfg(feature = "remote")]
fn start_remote(config: &Config, ctx: &Context) -> std::io::Result<Box<dyn Service>> {
    Ok(Box::new(crate::service::remote::RemoteService::start(
        config, ctx,
    )?))
}

#[cfg(not(feature = "remote"))]
fn start_remote(_: &Config, _: &Context) -> std::io::Result<Box<dyn Service>> {
    Err(std::io::Error::other("this build has no remote sources"))
}

/// Starts every service the configuration turns on, logging each; `None` when one fails
/// (the caller exits 1).
fn start_services(config: &Config, ctx: &Context) -> Option<Vec<Box<dyn Service>>> {
    let mut services = Vec::new();
    for (name, enabled, start) in SERVICES {
        if !enabled(config) {
            info!("{name} is off");
            continue;
        }
        match start(config, ctx) {
            Ok(service) => {
                info!("{}", service.describe());
                services.push(service);
            }
            Err(e) => {
                error!("cannot start {name}: {e}");
                return None;
            }
        }
    }
    Some(services)
}

/// Every socket is bound: root is no longer needed. False when it cannot be given up.
fn give_up_root(config: &Config) -> bool {
    match drop_privileges(config.user.as_deref(), config.group.as_deref()) {
        Ok(Outcome::Dropped { user, uid, gid }) => {
            info!("running as user {user} (uid {uid}, gid {gid}) with no capabilities")
        }
        Ok(Outcome::NotRoot {
            uid,
            dropped_capabilities: true,
        }) => info!("running as uid {uid}; its capabilities are dropped now the sockets are bound"),
        Ok(Outcome::NotRoot { uid, .. }) => info!("running as uid {uid}"),
        Ok(Outcome::StayedRoot) => warn!("running as root (--user root)"),
        Ok(Outcome::NoUser) => warn!(
            "running as root: there is no user {DEFAULT_USER:?} to switch to (create one, or name one with --user)"
        ),
        Err(e) => {
            error!("cannot give up root: {e}");
            return false;
        }
    }
    true
}

/// The first inventory and the reloader that keeps it current; `None` when the inventory
/// has errors (logged; the caller exits 1).
fn load_inventory(
    settings: Settings,
    config: &Config,
    source: ConfigSource,
    metrics: Arc<Metrics>,
) -> Option<Reloader> {
    let truth = InventorySource::of(config);
    let started = match Reloader::start(settings, config.clone(), source, metrics, Instant::now()) {
        Ok(started) => started,
        Err(problems) => {
            for p in &problems {
                error!("inventory: {p}");
            }
            let strict = if config.strict { " (--strict)" } else { "" };
            error!(
                "not starting: the inventory {} has {} errors{strict}",
                truth.name(),
                problems.len()
            );
            return None;
        }
    };
    for w in &started.warnings {
        warn!("inventory: {w}");
    }
    let reloader = started.reloader;
    let inv = reloader.store().snapshot();
    log_refused(&started.errors, started.refused, inv.len());
    info!("netbootd {VERSION} starting: {}", summary(config));
    info!(
        "inventory {}: {} machines ({} netboot), {} warnings{}",
        truth.name(),
        inv.len(),
        inv.netboot_count(),
        started.warnings.len(),
        left_out(started.refused)
    );
    Some(reloader)
}

/// `netbootd [serve]`.
fn serve(settings: Settings, config: Config, source: ConfigSource) -> i32 {
    crate::io::limits::bound_allocator();
    crate::io::logger::init(config.log_level, config.log_format, config.log_output);
    // Before any thread exists, so every thread inherits the blocked signals.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot set up signal handling: {e}");
            return 1;
        }
    };
    for w in &config.warnings {
        warn!("config: {w}");
    }
    match crate::io::limits::raise_open_files() {
        Ok((_, now)) if now < 8192 => warn!(
            "open files are limited to {now}: HTTP may refuse connections before its cap of {} (raise LimitNOFILE)",
            crate::service::http::MAX_CONNECTIONS
        ),
        Ok((before, now)) if before != now => info!("open-file limit raised from {before} to {now}"),
        Ok(_) => {}
        Err(e) => warn!("cannot read or raise the open-file limit: {e}"),
    }
    let metrics = Arc::new(Metrics::default());
    let started = Instant::now();
    metrics.observe("netbootd_uptime_seconds", "gauge", move || {
        format!("{:.3}", started.elapsed().as_secs_f64())
    });
    let Some(reloader) = load_inventory(settings, &config, source, metrics.clone()) else {
        return 1;
    };
    let assets = service::Assets::new(&metrics);
    let ctx = Context {
        inventory: reloader.store(),
        combined: reloader.combined(),
        log: Arc::new(LogGate::new(limits_of(&config), metrics.clone())),
        metrics,
        source: Default::default(),
        lookups: Default::default(),
        pools: Default::default(),
        assets,
        ipxe_binaries: Default::default(),
    };
    if let Err(e) = ctx.assets.prepare(&config) {
        error!(
            "cannot use the asset cache in {}: {e}",
            config.asset_cache.dir.display()
        );
        return 1;
    }
    let Some(services) = start_services(&config, &ctx) else {
        return 1;
    };
    if !give_up_root(&config) {
        return 1;
    }
    let watched = if reloader.watches_with_inotify() {
        "a change to the hardware file reloads it"
    } else {
        "a change to the hardware file reloads it (looked for every 250 ms: no inotify)"
    };
    info!("{watched}; SIGHUP reloads the configuration and the inventory; SIGTERM/SIGINT stop");
    service::run(signals, reloader, services)
}

/// `netbootd cache ls|rm PATH...|prefetch PROFILE...`: the asset cache without the server.
fn cache(config: &Config, words: &[String]) -> i32 {
    const USAGE: &str = "usage: netbootd cache ls | rm PATH... | prefetch PROFILE... [options]";
    #[cfg(not(feature = "remote"))]
    {
        let _ = (config, words);
        eprintln!("netbootd: this build has no asset cache (it lacks the HTTP client)\n{USAGE}");
        1
    }
    #[cfg(feature = "remote")]
    {
        use crate::service::assets::{walk, AssetCache};
        let settings = &config.asset_cache;
        let dir = &settings.dir;
        match words.first().map(String::as_str) {
            Some("ls") if words.len() == 1 => {
                let mut files = Vec::new();
                walk(dir, "", &mut files);
                crate::value::sort_by(&mut files, |a, b| a.relative.cmp(&b.relative));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                for f in &files {
                    let idle = now.saturating_sub(f.used);
                    let sha256 = AssetCache::recorded_sha256(settings, &f.relative)
                        .map_or("-".into(), |d| crate::config::assets::sha256_hex(&d));
                    println!(
                        "{:>12}  used {idle:>8}s ago  sha256 {sha256:<64}  {}",
                        f.size, f.relative
                    );
                }
                let total: u64 = files.iter().map(|f| f.size).sum();
                println!("{} files, {total} bytes in {}", files.len(), dir.display());
                0
            }
            Some("rm") if words.len() > 1 => {
                let mut failed = 0;
                for path in &words[1..] {
                    match AssetCache::remove(settings, path) {
                        Ok(()) => println!("removed {path}"),
                        Err(e) => {
                            eprintln!("netbootd: cache rm {path}: {e}");
                            failed = 1;
                        }
                    }
                }
                failed
            }
            Some("prefetch") if words.len() > 1 => {
                if settings.upstreams.is_empty() {
                    eprintln!(
                        "netbootd: cache prefetch needs --assets-upstream or [[upstream]] tables"
                    );
                    return 1;
                }
                let cache = AssetCache::new(&Metrics::default());
                if let Err(e) = cache.prepare(settings) {
                    eprintln!("netbootd: cache in {}: {e}", dir.display());
                    return 1;
                }
                let mut failed = 0;
                for name in &words[1..] {
                    let Some(profile) = config.profiles.get(name) else {
                        eprintln!("netbootd: no boot profile {name:?} in the configuration");
                        failed = 1;
                        continue;
                    };
                    let assets = std::iter::once(&profile.kernel).chain(&profile.initrd);
                    for asset in assets.filter(|a| !a.contains("://")) {
                        let relative = asset.trim_start_matches('/');
                        let local = config.assets_dir.as_ref().map(|d| d.join(relative));
                        if local.is_some_and(|p| p.is_file()) {
                            println!("{relative}: in --assets-dir");
                            continue;
                        }
                        match cache.fetch_whole(settings, relative) {
                            Ok(line) => println!("{relative}: {line}"),
                            Err(why) => {
                                eprintln!("netbootd: {relative}: {why}");
                                failed = 1;
                            }
                        }
                    }
                }
                failed
            }
            _ => {
                eprintln!("{USAGE}");
                2
            }
        }
    }
}

/// One line describing what will run where.
pub fn summary(c: &Config) -> String {
    let dhcp = if c.dhcp.enabled {
        format!(
            "dhcp {} on {}{}",
            c.dhcp.mode.as_str(),
            c.dhcp.addr,
            c.dhcp
                .iface
                .as_ref()
                .map(|i| format!(" ({i})"))
                .unwrap_or_default()
        )
    } else {
        "dhcp off".into()
    };
    let tftp = if c.tftp.enabled {
        format!("tftp {}:{}", c.tftp.addr, c.tftp.port)
    } else {
        "tftp off".into()
    };
    let http = if c.http.enabled() {
        format!("http {}:{}", c.http.addr, c.http.port)
    } else {
        "http off".into()
    };
    let syslog = if c.syslog.enabled {
        format!("syslog {}:{}", c.syslog.addr, c.syslog.port)
    } else {
        "syslog off".into()
    };
    let dir = |d: &Option<PathBuf>| {
        d.as_ref()
            .map_or("-".to_string(), |p| p.display().to_string())
    };
    format!(
        "{dhcp}, {tftp}, {http}, {syslog}, ipxe-dir {}, assets-dir {}",
        dir(&c.ipxe_dir),
        dir(&c.assets_dir)
    )
}

/// `netbootd config`: every option's effective value and its source, as TOML.
fn describe_settings(settings: &Settings, config: &Config) -> String {
    let mut out = String::new();
    for s in &settings.list {
        let _ = writeln!(
            out,
            "{} = {:?}  # {}",
            s.spec.name(),
            value::redact_url(&s.value),
            s.origin()
        );
    }
    for (name, p) in &config.profiles {
        let _ = writeln!(
            out,
            "\n[profiles.{name}]\nkernel = {:?}\ninitrd = {:?}\ncmdline = {:?}",
            p.kernel, p.initrd, p.cmdline
        );
    }
    out
}

pub fn help_text() -> String {
    let mut out = format!(
        "netbootd {VERSION}: network-boot bare-metal machines (DHCP, TFTP, HTTP, syslog)\n\n\
         Usage: netbootd [serve|check|config|unknown|byo-dhcp SERVER|cache ...] [--option value | --option=value ...]\n\n\
         Commands:\n  \
           serve   run the server (the default)\n  \
           check   validate the configuration and the hardware file; print warnings and a summary\n  \
           config  print every option's effective value and where it came from\n  \
           unknown print the unknown MACs the address pools saw (--yaml: as hardware-file entries)\n  \
           byo-dhcp SERVER  print the configuration that makes another DHCP server (dnsmasq,\n          \
                    dnsmasq-proxy, kea or isc) answer the inventory's machines as netbootd would\n  \
           cache ls | rm PATH... | prefetch PROFILE...  list or remove cached assets, or fetch a\n          \
                    boot profile's kernel and initrds into the cache before machines ask\n  \
           openwrt-config FILE  print the TOML an OpenWrt UCI file means (for the init script)\n\n\
         Every option can also be set in the environment (NETBOOTD_<NAME>; Smee's options also\n\
         SMEE_<NAME>) and in the TOML file given by --config (default {}).\n\
         Precedence: flag, NETBOOTD_ variable, SMEE_ variable, config file, default.\n\
         Booleans take true or false; a bare boolean flag means true.\n\nOptions:\n",
        config::DEFAULT_CONFIG_PATH
    );
    for o in OPTIONS {
        let default = if o.default.is_empty() {
            "none"
        } else {
            o.default
        };
        let _ = writeln!(
            out,
            "  --{}\n      {}\n      env {}; default: {default}",
            o.name(),
            o.help,
            o.env_names().join(", ")
        );
    }
    out.push_str(
        "  --version\n      print the version and exit\n  --help\n      print this help\n",
    );
    out
}
