//! Configuration: the option table, the layering of sources (flag > `NETBOOTD_` env >
//! `SMEE_` env > TOML file > default), and the validated [`Config`] the services run on.
//! Pure: the environment is passed in as a map, and what depends on the host ("auto"
//! addresses, which iPXE directory exists) is asked of a [`Host`].

pub mod args;
pub mod assets;
pub mod file;
#[cfg(feature = "remote")]
pub mod kubeconfig;
pub mod options;
pub mod pools;
pub mod reload;
pub mod uci;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;

use crate::value;
pub use crate::value::Cidr;
pub use file::ConfigFile;
pub use options::{Flags, Key, OptionSpec, OPTIONS};

use crate::inventory::{Profiles, Subnets};

/// Used when `--config` is not given, if the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/netbootd/netbootd.toml";

/// Searched in this order when `--ipxe-dir` is not given.
pub const IPXE_DIR_CANDIDATES: &[&str] =
    &["/usr/lib/ipxe", "/usr/share/ipxe", "/srv/netbootd/ipxe"];

/// Where an option's value came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Flag,
    Env(String),
    File {
        path: String,
        line: usize,
        key: String,
    },
    Default,
}

/// One option's effective value and its source.
#[derive(Clone, Debug)]
pub struct Setting {
    pub spec: &'static OptionSpec,
    pub value: String,
    pub source: Source,
}

impl Setting {
    /// Names the source for a message: `--dhcp-mode`, `SMEE_DHCP_MODE`, `f.toml:3: dhcp.mode`.
    pub fn origin(&self) -> String {
        match &self.source {
            Source::Flag => format!("--{}", self.spec.name()),
            Source::Env(var) => var.clone(),
            Source::File { path, line, key } => format!("{path}:{line}: {key}"),
            Source::Default => format!("--{} (default)", self.spec.name()),
        }
    }

    fn is_default(&self) -> bool {
        self.source == Source::Default
    }
}

/// Every option's effective value, in table order.
#[derive(Clone, Debug)]
pub struct Settings {
    pub list: Vec<Setting>,
    /// Directory of the config file: relative paths given there are relative to it.
    file_dir: Option<PathBuf>,
}

impl Settings {
    /// Layers the sources. `env` holds the process environment (only `NETBOOTD_*`/`SMEE_*`
    /// matter). An empty environment value counts as unset, as in Smee's Helm charts.
    pub fn resolve(
        flags: &Flags,
        env: &BTreeMap<String, String>,
        file: Option<&ConfigFile>,
    ) -> Settings {
        let list = OPTIONS
            .iter()
            .map(|spec| {
                let name = spec.name();
                let from_flag = flags
                    .value_of(spec.field)
                    .map(|v| (v.to_string(), Source::Flag));
                let from_env = || {
                    spec.env_names().into_iter().find_map(|var| {
                        env.get(&var)
                            .filter(|v| !v.is_empty())
                            .map(|v| (v.clone(), Source::Env(var.clone())))
                    })
                };
                let from_file = || {
                    let file = file?;
                    let v = file.values.get(&name)?;
                    let path = file.path.display().to_string();
                    Some((
                        v.text.clone(),
                        Source::File {
                            path,
                            line: v.line,
                            key: v.key.clone(),
                        },
                    ))
                };
                let (value, source) = from_flag
                    .or_else(from_env)
                    .or_else(from_file)
                    .unwrap_or_else(|| (spec.default.to_string(), Source::Default));
                Setting {
                    spec,
                    value,
                    source,
                }
            })
            .collect();
        let file_dir = file.and_then(|f| f.path.parent()).map(Path::to_path_buf);
        Settings { list, file_dir }
    }

    /// For `byo-dhcp`: DHCP as though it were on (it is off while another server answers),
    /// so that its addresses ("auto": the interface's) are resolved for that server's answers.
    pub fn with_dhcp_addresses(mut self) -> Settings {
        let on = |s: &mut Setting, value: &str| {
            s.value = value.into();
        };
        on(&mut self.list[Key::dhcp_enabled as usize], "true");
        let mode = &mut self.list[Key::dhcp_mode as usize];
        if mode.value == "off" {
            on(mode, "reservation");
        }
        self
    }

    /// The setting of one option: `list` holds every option in table order, so a key is its
    /// index.
    pub fn get(&self, key: Key) -> &Setting {
        &self.list[key as usize]
    }

    /// Environment variables that look like ours but name no option (typos).
    /// Kubernetes' service links (`SMEE_SERVICE_HOST`, `SMEE_PORT_67_UDP`, ...) are not typos.
    pub fn unknown_env(env: &BTreeMap<String, String>) -> Vec<String> {
        let known: Vec<String> = OPTIONS.iter().flat_map(|o| o.env_names()).collect();
        let ours = |k: &str| {
            ["NETBOOTD_", "SMEE_"]
                .iter()
                .find_map(|p| k.strip_prefix(p))
                .is_some_and(|rest| {
                    !(rest.starts_with("SERVICE_") || rest == "PORT" || rest.starts_with("PORT_"))
                })
        };
        env.keys()
            .filter(|k| ours(k) && !known.contains(k))
            .cloned()
            .collect()
    }
}

/// A configuration error: one line naming the option's source and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the configuration needs to know about the machine it runs on.
pub trait Host {
    /// The first IPv4 address of `interface`, or when `None`, of the default-route interface,
    /// else the first global IPv4 address.
    fn auto_ipv4(&self, interface: Option<&str>) -> Result<Ipv4Addr, String>;
    fn is_dir(&self, path: &Path) -> bool;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpMode {
    Reservation,
    Proxy,
    AutoProxy,
    Off,
}

impl DhcpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DhcpMode::Reservation => "reservation",
            DhcpMode::Proxy => "proxy",
            DhcpMode::AutoProxy => "auto-proxy",
            DhcpMode::Off => "off",
        }
    }
}

/// scheme://host:port/path, from Smee's four `dhcp-http-ipxe-*-{scheme,host,port,path}` options.
#[derive(Clone, Debug, PartialEq)]
pub struct UrlBase {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl fmt::Display for UrlBase {
    /// The port is left out when it is the scheme's default, as Smee does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default_port = matches!(
            (self.scheme.as_str(), self.port),
            ("http", 80) | ("https", 443)
        );
        if default_port {
            write!(f, "{}://{}{}", self.scheme, self.host, self.path)
        } else {
            write!(
                f,
                "{}://{}:{}{}",
                self.scheme, self.host, self.port, self.path
            )
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dhcp {
    /// False when `--dhcp-enabled=false` or `--dhcp-mode off`.
    pub enabled: bool,
    pub mode: DhcpMode,
    pub addr: SocketAddrV4,
    pub iface: Option<String>,
    pub ip_for_packet: Ipv4Addr,
    pub syslog_ip: Ipv4Addr,
    pub tftp_ip: Ipv4Addr,
    pub tftp_port: u16,
    pub ipxe_binary_base: UrlBase,
    pub ipxe_script_base: UrlBase,
    /// `--dhcp-syslog-ip` as written for `syslog_host=` in scripts: the address, or (proxy
    /// modes, where option 7 is not sent) a host name, verbatim as Smee uses it.
    pub syslog_host: String,
    /// Overrides `ipxe_script_base` when set.
    pub ipxe_script_url: Option<String>,
    /// `--ipxe-script-url-template`: for machines of a remote source (they have an xname).
    pub ipxe_script_url_template: Option<String>,
    pub ipxe_script_prepend_mac: bool,
    /// iPXE binary file name per client architecture (option 93).
    pub ipxe_binaries: Vec<(u16, String)>,
    /// `--dhcp-loaders`: architectures whose machines get GRUB unless their record says.
    pub grub_arches: Vec<u16>,
    /// Architectures sent to the boot server on UDP 4011 by ProxyDHCP offers without option 43.
    pub boot_server_arches: Vec<u16>,
    /// `--dhcp-relays`: the only relays answered (empty: any).
    pub relays: Vec<Cidr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tftp {
    pub enabled: bool,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub timeout: Duration,
    pub block_size: u16,
    pub max_window_size: u16,
    pub max_transfers: usize,
    /// `--tftp-max-transfers-per-client`: for one client address.
    pub max_per_client: usize,
    pub single_port: bool,
    pub ipxe_script_patch: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Http {
    pub ipxe_binary_enabled: bool,
    pub ipxe_script_enabled: bool,
    pub addr: Ipv4Addr,
    pub port: u16,
    /// `--http-max-connections-per-client`: open connections from one address.
    pub max_per_client: usize,
    pub extra_kernel_args: String,
    pub trusted_proxies: Vec<Cidr>,
    pub osie_url: Option<String>,
    pub tink_server: Option<String>,
    pub tink_server_tls: bool,
    pub tink_server_insecure_tls: bool,
    pub ipxe_script_retries: u32,
    pub ipxe_script_retry_delay: u32,
    /// What a machine with no record gets from `/auto.ipxe`.
    pub unknown_script: UnknownScript,
}

/// The script for machines with no record: only in auto-proxy mode, where netbootd's DHCP
/// answers every PXE client and so must give them something to run.
#[derive(Clone, Debug, PartialEq)]
pub enum UnknownScript {
    /// 404, as Smee outside auto-proxy mode.
    NotFound,
    /// Smee's static Hook script (no per-machine values; iPXE fills in `${mac}`).
    StaticHook,
    /// `--auto-proxy-profile NAME`.
    Profile(String, crate::inventory::BootProfile),
}

impl Http {
    pub fn enabled(&self) -> bool {
        self.ipxe_binary_enabled || self.ipxe_script_enabled
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Syslog {
    pub enabled: bool,
    pub addr: Ipv4Addr,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Backend {
    File {
        path: PathBuf,
    },
    /// `--backend-noop-enabled`: no inventory; every machine is unknown.
    Noop,
    /// `--backend-smd-url`: machines from OpenCHAMI SMD, refreshed in the background; with a
    /// hardware file (`--backend-file-path` given too) served over them: a MAC in both is
    /// the file's.
    Remote {
        source: RemoteSource,
        file: Option<PathBuf>,
    },
}

/// What a remote source serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// OpenCHAMI SMD's two collections (`--backend-smd-url`).
    Smd,
    /// The hardware file's shape in JSON, one document (`--backend-http-url`).
    Http,
    /// pixiecore's API, asked per MAC (`--backend-pixiecore-url`).
    Pixiecore,
    /// Tinkerbell Hardware objects from the Kubernetes API, listed and watched
    /// (`--backend-kube-enabled`).
    Kube,
}

impl SourceKind {
    /// For log lines and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Smd => "smd",
            SourceKind::Http => "http",
            SourceKind::Pixiecore => "pixiecore",
            SourceKind::Kube => "kube",
        }
    }
}

/// The options of one kind of remote source.
struct SourceKeys {
    kind: SourceKind,
    url: Key,
    refresh: Key,
    timeout: Key,
    allow_empty: Key,
    max_stale: Key,
    token_file: Key,
    ca_cert: Key,
    client_cert: Key,
    client_key: Key,
}

const SMD_KEYS: SourceKeys = SourceKeys {
    kind: SourceKind::Smd,
    url: Key::backend_smd_url,
    refresh: Key::backend_smd_refresh,
    timeout: Key::backend_smd_timeout,
    allow_empty: Key::backend_smd_allow_empty,
    max_stale: Key::backend_smd_max_stale,
    token_file: Key::backend_smd_token_file,
    ca_cert: Key::backend_smd_ca_cert,
    client_cert: Key::backend_smd_client_cert,
    client_key: Key::backend_smd_client_key,
};

const HTTP_KEYS: SourceKeys = SourceKeys {
    kind: SourceKind::Http,
    url: Key::backend_http_url,
    refresh: Key::backend_http_refresh,
    timeout: Key::backend_http_timeout,
    allow_empty: Key::backend_http_allow_empty,
    max_stale: Key::backend_http_max_stale,
    token_file: Key::backend_http_token_file,
    ca_cert: Key::backend_http_ca_cert,
    client_cert: Key::backend_http_client_cert,
    client_key: Key::backend_http_client_key,
};

/// How a remote source is reached and refreshed.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSource {
    pub kind: SourceKind,
    pub url: String,
    pub refresh: Duration,
    pub timeout: Duration,
    pub allow_empty: bool,
    pub max_stale: Option<Duration>,
    pub token_file: Option<PathBuf>,
    /// For an `https://` URL.
    pub tls: TlsFiles,
    /// The Kubernetes backend's settings.
    pub kube: Option<Box<KubeSource>>,
}

/// Where the Kubernetes backend finds its API server; resolved as kubectl does when the
/// source starts (see [`kubeconfig`]): this kubeconfig, else `KUBECONFIG`, else the in-cluster
/// service account, else `~/.kube/config`, else `api` alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeSource {
    /// `--backend-kube-config`.
    pub config: Option<PathBuf>,
    /// `--backend-kube-api`: the server's URL, over the kubeconfig's.
    pub api: Option<String>,
    /// `--backend-kube-namespace`: watch one namespace (default: all).
    pub namespace: Option<String>,
}

/// How a remote source's TLS connections are verified and authenticated (files read when the
/// source starts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Trusted CAs (PEM); `None`: the system's CA bundle.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate chain (PEM) and its private key (PEM).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--log-output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOutput {
    Stderr,
    Stdout,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub log_level: LevelFilter,
    pub log_format: LogFormat,
    pub log_output: LogOutput,
    /// `--strict`: a hardware file with any bad record is refused whole.
    pub strict: bool,
    pub dhcp: Dhcp,
    pub tftp: Tftp,
    pub http: Http,
    pub syslog: Syslog,
    pub backend: Backend,
    pub ipxe_dir: Option<PathBuf>,
    pub assets_dir: Option<PathBuf>,
    /// `--assets-upstream` and `[[upstream]]` tables: the pull-through cache (on when there is
    /// an upstream, or the ISO service).
    pub asset_cache: assets::AssetCacheSettings,
    /// `--iso-enabled`: Smee's patched ISO.
    pub iso: Option<assets::IsoSettings>,
    pub state_dir: PathBuf,
    /// `--user`: `None` for auto (netbootd when it exists), `Some("root")` to stay root.
    pub user: Option<String>,
    pub group: Option<String>,
    pub profiles: Profiles,
    /// The config file's `[subnets.NAME]`: what a remote source holding only addresses lacks.
    pub subnets: Subnets,
    /// The config file's `[hostnames]`: how SMD machines are named, by component type.
    pub hostnames: crate::inventory::hostname::Patterns,
    /// The config file's `[[pool]]` tables: addresses for machines the inventory does not know.
    pub pools: Vec<pools::PoolSettings>,
    /// `--log-budget-lines`, `--log-budget-bytes`: a second's client-caused log lines.
    pub log_budget_lines: u32,
    pub log_budget_bytes: u64,
    /// Things that work but deserve a look (printed by `check`, logged at start).
    pub warnings: Vec<String>,
}

/// Reads typed values out of [`Settings`], naming the source of any bad one.
struct Reader<'a> {
    settings: &'a Settings,
    host: &'a dyn Host,
    auto: Option<Result<Ipv4Addr, String>>,
}

impl Reader<'_> {
    fn dhcp(&mut self) -> Result<Dhcp, ConfigError> {
        let mode = self.get(Key::dhcp_mode, dhcp_mode)?;
        let dhcp_on = self.flag(Key::dhcp_enabled)? && mode != DhcpMode::Off;
        let ip_for_packet = self.addr(Key::dhcp_ip_for_packet, dhcp_on)?;
        // Smee never parses it in the proxy modes (no option 7 there): a host name is fine.
        let syslog_setting = &self.settings.get(Key::dhcp_syslog_ip).value;
        let (syslog_ip, syslog_host) = match value::ipv4(syslog_setting) {
            Err(_) if syslog_setting != "auto" && mode != DhcpMode::Reservation => {
                let host = self.get(Key::dhcp_syslog_ip, value::host)?;
                (Ipv4Addr::UNSPECIFIED, host)
            }
            _ => {
                let ip = self.addr(Key::dhcp_syslog_ip, dhcp_on)?;
                (ip, ip.to_string())
            }
        };
        Ok(Dhcp {
            enabled: dhcp_on,
            mode: if dhcp_on { mode } else { DhcpMode::Off },
            addr: self.get(Key::dhcp_addr, value::socket_addr_v4)?,
            iface: self.text(Key::dhcp_iface),
            ip_for_packet,
            syslog_ip,
            syslog_host,
            tftp_ip: self.addr(Key::dhcp_tftp_ip, dhcp_on)?,
            tftp_port: self.get(Key::dhcp_tftp_port, value::port)?,
            ipxe_binary_base: self.url_base(
                [
                    Key::dhcp_http_ipxe_binary_scheme,
                    Key::dhcp_http_ipxe_binary_host,
                    Key::dhcp_http_ipxe_binary_port,
                    Key::dhcp_http_ipxe_binary_path,
                ],
                dhcp_on,
            )?,
            ipxe_script_base: self.url_base(
                [
                    Key::dhcp_http_ipxe_script_scheme,
                    Key::dhcp_http_ipxe_script_host,
                    Key::dhcp_http_ipxe_script_port,
                    Key::dhcp_http_ipxe_script_path,
                ],
                dhcp_on,
            )?,
            ipxe_script_url: self
                .optional_url(Key::dhcp_http_ipxe_script_url, &["http", "https", "tftp"])?,
            ipxe_script_url_template: match self.text(Key::ipxe_script_url_template) {
                None => None,
                Some(_) => Some(self.get(Key::ipxe_script_url_template, value::url_template)?),
            },
            ipxe_script_prepend_mac: self.flag(Key::dhcp_http_ipxe_script_prepend_mac)?,
            ipxe_binaries: self.get(Key::dhcp_ipxe_binaries, value::arch_files)?,
            grub_arches: self.get(Key::dhcp_loaders, value::grub_arches)?,
            boot_server_arches: self.get(Key::dhcp_boot_server_arches, value::arch_list)?,
            relays: self.get(Key::dhcp_relays, value::cidrs)?,
        })
    }

    fn tftp(&mut self) -> Result<Tftp, ConfigError> {
        let tftp_on = self.flag(Key::tftp_enabled)?;
        Ok(Tftp {
            enabled: tftp_on,
            addr: self.addr(Key::tftp_addr, tftp_on)?,
            port: self.get(Key::tftp_port, value::port)?,
            timeout: self.get(Key::tftp_timeout, |t| match value::duration(t)? {
                d if d < Duration::from_millis(100) || d > Duration::from_secs(255) => {
                    Err("outside 100ms..255s".into())
                }
                d => Ok(d),
            })?,
            block_size: self.get(Key::tftp_block_size, value::block_size)?,
            max_window_size: self.get(Key::tftp_window_size, |t| {
                value::positive(t, 256).map(|n| n as u16)
            })?,
            max_transfers: self.get(Key::tftp_max_transfers, |t| {
                value::positive(t, 4096).map(|n| n as usize)
            })?,
            max_per_client: self.get(Key::tftp_max_transfers_per_client, |t| {
                value::positive(t, 4096).map(|n| n as usize)
            })?,
            single_port: self.flag(Key::tftp_single_port)?,
            ipxe_script_patch: match self.text(Key::ipxe_script_patch) {
                Some(patch) => Some(
                    crate::wire::ipxe_patch::patch_fits(&patch)
                        .map_err(|why| {
                            ConfigError(format!(
                                "{}: {why} (Smee fails every request for a patched binary then)",
                                self.settings.get(Key::ipxe_script_patch).origin()
                            ))
                        })
                        .map(|()| patch)?,
                ),
                None => None,
            },
        })
    }

    fn http(&mut self) -> Result<Http, ConfigError> {
        let http_on = self.flag(Key::http_ipxe_binary_enabled)?
            || self.flag(Key::http_ipxe_script_enabled)?;
        Ok(Http {
            ipxe_binary_enabled: self.flag(Key::http_ipxe_binary_enabled)?,
            ipxe_script_enabled: self.flag(Key::http_ipxe_script_enabled)?,
            addr: self.addr(Key::http_addr, http_on)?,
            port: self.get(Key::http_port, value::port)?,
            max_per_client: self.get(Key::http_max_connections_per_client, |t| {
                value::positive(t, 4096).map(|n| n as usize)
            })?,
            extra_kernel_args: self.get(Key::extra_kernel_args, value::single_line)?,
            trusted_proxies: self.get(Key::trusted_proxies, value::cidrs)?,
            osie_url: self.optional_url(Key::osie_url, &["http", "https"])?,
            tink_server: match self.text(Key::tink_server) {
                None => None,
                Some(_) => Some(self.get(Key::tink_server, value::host)?),
            },
            tink_server_tls: self.flag(Key::tink_server_tls)?,
            tink_server_insecure_tls: self.flag(Key::tink_server_insecure_tls)?,
            ipxe_script_retries: self.get(Key::ipxe_script_retries, |t| value::count(t, 100))?,
            ipxe_script_retry_delay: self
                .get(Key::ipxe_script_retry_delay, |t| value::count(t, 3600))?,
            unknown_script: UnknownScript::NotFound,
        })
    }

    fn syslog(&mut self) -> Result<Syslog, ConfigError> {
        let syslog_on = self.flag(Key::syslog_enabled)?;
        Ok(Syslog {
            enabled: syslog_on,
            addr: self.addr(Key::syslog_addr, syslog_on)?,
            port: self.get(Key::syslog_port, value::port)?,
        })
    }

    /// `--ipxe-dir`, else the first of the usual places that exists (with a warning when none
    /// does).
    fn ipxe_dir(&self, warnings: &mut Vec<String>) -> Result<Option<PathBuf>, ConfigError> {
        Ok(match self.existing_dir(Key::ipxe_dir)? {
            Some(dir) => Some(dir),
            None => {
                let found = IPXE_DIR_CANDIDATES
                    .iter()
                    .map(PathBuf::from)
                    .find(|d| self.host.is_dir(d));
                if found.is_none() {
                    warnings.push(format!(
                        "no iPXE directory found ({}): set --ipxe-dir to serve iPXE binaries",
                        IPXE_DIR_CANDIDATES.join(", ")
                    ));
                }
                found
            }
        })
    }

    fn get<T>(
        &self,
        key: Key,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        parse(&self.settings.get(key).value).map_err(|why| self.invalid(key, why))
    }

    /// The error for a value that did not parse: one copy for every option's type.
    #[cold]
    #[inline(never)]
    fn invalid(&self, key: Key, why: String) -> ConfigError {
        let setting = self.settings.get(key);
        ConfigError(format!(
            "invalid value {:?} for {}: {why}",
            value::redact_url(&setting.value),
            setting.origin()
        ))
    }

    fn text(&self, key: Key) -> Option<String> {
        Some(self.settings.get(key).value.clone()).filter(|v| !v.is_empty())
    }

    fn flag(&self, key: Key) -> Result<bool, ConfigError> {
        self.get(key, value::boolean)
    }

    /// An IPv4 address or "auto". `needed` is false for disabled services, whose "auto"
    /// addresses are not looked up (and may not exist on this host).
    fn addr(&mut self, key: Key, needed: bool) -> Result<Ipv4Addr, ConfigError> {
        if self.settings.get(key).value != "auto" {
            return self.get(key, value::ipv4);
        }
        if !needed {
            return Ok(Ipv4Addr::UNSPECIFIED);
        }
        // The DHCP interface is where the clients are: its address is the natural default.
        let interface = self
            .text(Key::public_ip_interface)
            .or_else(|| self.text(Key::dhcp_iface));
        let auto = self
            .auto
            .get_or_insert_with(|| self.host.auto_ipv4(interface.as_deref()))
            .clone();
        auto.map_err(|why| {
            let setting = self.settings.get(key);
            ConfigError(format!(
                "{} is \"auto\" but {why}; set it, or --public-ip-interface",
                setting.origin()
            ))
        })
    }

    /// A host for a URL: a name or address, or "auto".
    fn url_host(&mut self, key: Key, needed: bool) -> Result<String, ConfigError> {
        if self.settings.get(key).value == "auto" {
            return self.addr(key, needed).map(|ip| ip.to_string());
        }
        self.get(key, value::host)
    }

    /// A URL from its four options: scheme, host, port and path.
    fn url_base(&mut self, keys: [Key; 4], needed: bool) -> Result<UrlBase, ConfigError> {
        let [scheme, host, port, path] = keys;
        Ok(UrlBase {
            scheme: self.get(scheme, value::scheme)?,
            host: self.url_host(host, needed)?,
            port: self.get(port, value::port)?,
            path: self.get(path, value::url_path)?,
        })
    }

    fn optional_url(&self, key: Key, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
        match self.text(key) {
            None => Ok(None),
            Some(_) => self.get(key, |v| value::url(v, schemes)).map(Some),
        }
    }

    /// A path option; a relative path from the config file is taken relative to that file.
    fn path(&self, key: Key) -> Option<PathBuf> {
        let setting = self.settings.get(key);
        let path = PathBuf::from(self.text(key)?);
        match (&setting.source, &self.settings.file_dir) {
            (Source::File { .. }, Some(dir)) if path.is_relative() => Some(dir.join(path)),
            _ => Some(path),
        }
    }

    /// A directory that must exist when it is given.
    fn existing_dir(&self, key: Key) -> Result<Option<PathBuf>, ConfigError> {
        match self.path(key) {
            Some(dir) if !self.host.is_dir(&dir) => Err(ConfigError(format!(
                "{} {}: not a directory",
                self.settings.get(key).origin(),
                dir.display()
            ))),
            dir => Ok(dir),
        }
    }
}

fn dhcp_mode(text: &str) -> Result<DhcpMode, String> {
    match text {
        "reservation" => Ok(DhcpMode::Reservation),
        "proxy" => Ok(DhcpMode::Proxy),
        "auto-proxy" => Ok(DhcpMode::AutoProxy),
        "off" => Ok(DhcpMode::Off),
        _ => Err("expected reservation, proxy, auto-proxy or off".into()),
    }
}

/// A log level; `None` for a word that is none (Smee takes any string: all but debug is info).
fn log_level(text: &str) -> Option<LevelFilter> {
    match text.to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

fn log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

fn log_output(text: &str) -> Result<LogOutput, String> {
    match text {
        "stderr" => Ok(LogOutput::Stderr),
        "stdout" => Ok(LogOutput::Stdout),
        _ => Err("expected stderr or stdout".into()),
    }
}

impl Config {
    /// Validates every option; the first bad one stops with a one-line error.
    pub fn from_settings(
        settings: &Settings,
        profiles: Profiles,
        host: &dyn Host,
    ) -> Result<Config, ConfigError> {
        let mut r = Reader {
            settings,
            host,
            auto: None,
        };
        let mut warnings = Vec::new();

        let dhcp = r.dhcp()?;
        let tftp = r.tftp()?;
        let mut http = r.http()?;
        http.unknown_script = Self::unknown_script(&r, &profiles, &mut warnings)?;
        let syslog = r.syslog()?;
        let backend = Self::backend(&r, &mut warnings)?;
        Self::not_applied(&r, &mut warnings)?;
        let state_dir = r
            .path(Key::state_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/netbootd"));
        let asset_cache = Self::asset_cache(&r, &state_dir)?;
        let iso = Self::iso(&r)?;

        let ipxe_dir = r.ipxe_dir(&mut warnings)?;
        let level = r.settings.get(Key::log_level);
        let log_level = log_level(&level.value).unwrap_or_else(|| {
            warnings.push(format!(
                "{} {:?} is no log level (error, warn, info, debug, trace): using info, as Smee does",
                level.origin(),
                level.value
            ));
            LevelFilter::Info
        });

        Ok(Config {
            log_level,
            log_format: r.get(Key::log_format, log_format)?,
            log_output: r.get(Key::log_output, log_output)?,
            strict: r.flag(Key::strict)?,
            log_budget_lines: r.get(Key::log_budget_lines, |t| value::count(t, 1_000_000))?,
            log_budget_bytes: r.get(Key::log_budget_bytes, |t| {
                value::count(t, 1 << 30).map(u64::from)
            })?,
            dhcp,
            tftp,
            http,
            syslog,
            backend,
            ipxe_dir,
            assets_dir: r.existing_dir(Key::assets_dir)?,
            asset_cache,
            iso,
            state_dir,
            user: r.text(Key::user).filter(|u| u != "auto"),
            group: r.text(Key::group),
            profiles,
            subnets: Subnets::new(),
            hostnames: Default::default(),
            pools: Vec::new(),
            warnings,
        })
    }

    /// Adds the config file's subnets and host-name patterns; a remote source that holds only
    /// addresses needs the subnets.
    pub fn with_source_tables(
        mut self,
        subnets: Subnets,
        hostnames: crate::inventory::hostname::Patterns,
    ) -> Result<Config, ConfigError> {
        self.hostnames = hostnames;
        if self.remote().is_some_and(|r| r.kind == SourceKind::Smd) && subnets.is_empty() {
            return Err(ConfigError(
                "--backend-smd-url needs [subnets.NAME] tables in the config file (cidr, gateway, dns, domain, lease-time): SMD holds addresses only".into(),
            ));
        }
        self.subnets = subnets;
        Ok(self)
    }

    /// Adds the config file's `[[pool]]` tables: a pool's boot profile must exist; pools are a
    /// reservation-mode feature (an error with DHCP off, ignored with a warning in the proxy
    /// modes, which never hand out addresses).
    pub fn with_pools(
        mut self,
        mut pools: Vec<pools::PoolSettings>,
    ) -> Result<Config, ConfigError> {
        if pools.is_empty() {
            return Ok(self);
        }
        pools::check_pools(&pools).map_err(ConfigError)?;
        if !self.dhcp.enabled {
            return Err(ConfigError(
                "[[pool]] tables need netbootd's DHCP (--dhcp-mode reservation): DHCP is off"
                    .into(),
            ));
        }
        if self.dhcp.mode != DhcpMode::Reservation {
            self.warnings.push(format!(
                "[[pool]] tables are ignored in --dhcp-mode {}: only reservation mode hands out addresses",
                self.dhcp.mode.as_str()
            ));
        }
        for pool in &mut pools {
            if let pools::PoolBoot::Profile(name, resolved) = &mut pool.boot {
                let profile = self.profiles.get(name.as_str()).ok_or_else(|| {
                    ConfigError(format!(
                        "pool {}: boot = {name:?} names no [profiles.{name}] table (or use \"reboot\")",
                        pool.name
                    ))
                })?;
                *resolved = Some(profile.clone());
            }
        }
        self.pools = pools;
        Ok(self)
    }

    /// The file backend is netbootd's default. Smee's Kubernetes backend serves when it is asked
    /// for (`backend-kube-enabled=true` set, no file backend), or when the file backend is
    /// turned off; Smee's own default (`backend-kube-enabled=true`) alone is not a request.
    fn backend(r: &Reader, warnings: &mut Vec<String>) -> Result<Backend, ConfigError> {
        let file_enabled = r.settings.get(Key::backend_file_enabled);
        let file_on = r.flag(Key::backend_file_enabled)?;
        let file_asked = (!file_enabled.is_default() && file_on)
            || !r.settings.get(Key::backend_file_path).is_default();
        let kube = r.settings.get(Key::backend_kube_enabled);
        let kube_on = r.flag(Key::backend_kube_enabled)?;
        let kube_asked = kube_on && !kube.is_default();
        let noop = r.settings.get(Key::backend_noop_enabled);
        let sources = [
            Self::remote_source(r, &SMD_KEYS)?,
            Self::remote_source(r, &HTTP_KEYS)?,
            Self::pixiecore_source(r)?,
        ];
        if sources.iter().flatten().count() > 1 {
            return Err(ConfigError(
                "more than one of --backend-smd-url, --backend-http-url and --backend-pixiecore-url is set: choose one remote source".into(),
            ));
        }
        let remote = sources.into_iter().flatten().next();
        if let Some(smd) = remote {
            if kube_asked || r.flag(Key::backend_noop_enabled)? {
                return Err(ConfigError(format!(
                    "--backend-{}-url and the Kubernetes or noop backend are both set: a remote source combines with the hardware file only",
                    smd.kind.name()
                )));
            }
            // The hardware file joins SMD when it is asked for (a path, or enabled on purpose).
            let file = if file_asked {
                Some(
                    r.path(Key::backend_file_path)
                        .ok_or_else(|| ConfigError("--backend-file-path is empty".into()))?,
                )
            } else {
                None
            };
            return Ok(Backend::Remote { source: smd, file });
        }
        if r.flag(Key::backend_noop_enabled)? {
            if file_asked || kube_asked {
                return Err(ConfigError(format!(
                    "{} and another backend are both set: choose one (Smee refuses this too)",
                    noop.origin()
                )));
            }
            if r.get(Key::dhcp_mode, dhcp_mode)? != DhcpMode::AutoProxy {
                return Err(ConfigError(format!(
                    "{} needs --dhcp-mode auto-proxy (with no inventory, only auto-proxy answers anyone), as in Smee",
                    noop.origin()
                )));
            }
            return Ok(Backend::Noop);
        }
        if !file_on {
            if kube_on {
                return Ok(Backend::Remote {
                    source: Self::kube_source(r)?,
                    file: None,
                });
            }
            return Err(ConfigError(format!(
                "{} is false and no other backend is available",
                file_enabled.origin()
            )));
        }
        if kube_asked && !file_asked {
            return Ok(Backend::Remote {
                source: Self::kube_source(r)?,
                file: None,
            });
        }
        if kube_asked {
            warnings.push(format!(
                "{} ignored: the file backend is set too, and it comes first (as in Smee)",
                kube.origin()
            ));
        }
        let path = r
            .path(Key::backend_file_path)
            .ok_or_else(|| ConfigError("--backend-file-path is empty".into()))?;
        Ok(Backend::File { path })
    }

    /// The hardware file; `None` with the noop backend (no inventory) and with SMD alone.
    pub fn hardware_file(&self) -> Option<&Path> {
        match &self.backend {
            Backend::File { path } => Some(path),
            Backend::Remote { file, .. } => file.as_deref(),
            Backend::Noop => None,
        }
    }

    /// The remote source (SMD or a JSON inventory over HTTP), when there is one.
    pub fn remote(&self) -> Option<&RemoteSource> {
        match &self.backend {
            Backend::Remote { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The hardware file and a remote source both: the file's machines are served over its.
    pub fn combines_sources(&self) -> bool {
        matches!(self.backend, Backend::Remote { file: Some(_), .. })
    }

    /// A remote source's URL and settings (`--backend-smd-*` or `--backend-http-*`), or
    /// `None` when its URL is not set.
    fn remote_source(r: &Reader, k: &SourceKeys) -> Result<Option<RemoteSource>, ConfigError> {
        if r.text(k.url).is_none() {
            return Ok(None);
        }
        let origin = r.settings.get(k.url).origin();
        if !cfg!(feature = "remote") {
            return Err(ConfigError(format!(
                "{origin}: this build has no remote sources (built without the 'remote' feature)"
            )));
        }
        let url = r.get(k.url, |t| value::url(t, &["http", "https"]))?;
        let tls = TlsFiles {
            ca_cert: r.path(k.ca_cert),
            client_cert: r.path(k.client_cert),
            client_key: r.path(k.client_key),
        };
        let prefix = format!("--backend-{}", k.kind.name());
        if tls != TlsFiles::default() && !url.starts_with("https://") {
            return Err(ConfigError(format!(
                "{origin}: the TLS settings ({prefix}-ca-cert, -client-cert, -client-key) apply to an https:// URL only"
            )));
        }
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            return Err(ConfigError(format!(
                "{prefix}-client-cert and {prefix}-client-key go together"
            )));
        }
        let bounded = |key, min: Duration, max: Duration| {
            r.get(key, |t| match value::duration(t)? {
                d if d < min || d > max => Err(format!("outside {min:?}..{max:?}")),
                d => Ok(d),
            })
        };
        Ok(Some(RemoteSource {
            kind: k.kind,
            url: match k.kind {
                SourceKind::Http => url,
                SourceKind::Smd | SourceKind::Pixiecore | SourceKind::Kube => {
                    url.trim_end_matches('/').to_string()
                }
            },
            refresh: bounded(k.refresh, Duration::from_secs(1), Duration::from_secs(3600))?,
            timeout: bounded(
                k.timeout,
                Duration::from_millis(100),
                Duration::from_secs(600),
            )?,
            allow_empty: r.flag(k.allow_empty)?,
            max_stale: match r.text(k.max_stale) {
                None => None,
                Some(_) => Some(bounded(
                    k.max_stale,
                    Duration::from_secs(1),
                    Duration::from_secs(30 * 86400),
                )?),
            },
            token_file: r.path(k.token_file),
            tls,
            kube: None,
        }))
    }

    /// The Kubernetes backend: Hardware objects listed and watched (no refresh interval: the
    /// watch brings each change; an empty set is the truth, not an error).
    fn kube_source(r: &Reader) -> Result<RemoteSource, ConfigError> {
        let origin = r.settings.get(Key::backend_kube_enabled).origin();
        if !cfg!(feature = "remote") {
            return Err(ConfigError(format!(
                "{origin}: this build has no remote sources (built without the 'remote' feature)"
            )));
        }
        let api = match r.text(Key::backend_kube_api) {
            Some(_) => Some(r.get(Key::backend_kube_api, |t| {
                value::url(t, &["http", "https"]).map(|u| u.trim_end_matches('/').to_string())
            })?),
            None => None,
        };
        let namespace = match r.text(Key::backend_kube_namespace) {
            Some(_) => Some(r.get(Key::backend_kube_namespace, |t| {
                let ok = t.len() <= 63
                    && !t.starts_with('-')
                    && !t.ends_with('-')
                    && t.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if ok {
                    Ok(t.to_string())
                } else {
                    Err(
                        "not a namespace name (lowercase letters, digits and '-', at most 63)"
                            .into(),
                    )
                }
            })?),
            None => None,
        };
        Ok(RemoteSource {
            kind: SourceKind::Kube,
            url: api.clone().unwrap_or_default(),
            refresh: Duration::ZERO,
            timeout: Duration::from_secs(10),
            allow_empty: true,
            max_stale: None,
            token_file: None,
            tls: TlsFiles::default(),
            kube: Some(Box::new(KubeSource {
                config: r.path(Key::backend_kube_config),
                api,
                namespace,
            })),
        })
    }

    /// `--backend-pixiecore-url`: pixiecore's API, asked per MAC (no snapshot to refresh).
    fn pixiecore_source(r: &Reader) -> Result<Option<RemoteSource>, ConfigError> {
        if r.text(Key::backend_pixiecore_url).is_none() {
            return Ok(None);
        }
        let origin = r.settings.get(Key::backend_pixiecore_url).origin();
        if !cfg!(feature = "remote") {
            return Err(ConfigError(format!(
                "{origin}: this build has no remote sources (built without the 'remote' feature)"
            )));
        }
        let url = r.get(Key::backend_pixiecore_url, |t| {
            value::url(t, &["http", "https"])
        })?;
        let timeout = r.get(Key::backend_pixiecore_timeout, |t| {
            match value::duration(t)? {
                d if d < Duration::from_millis(100) || d > Duration::from_secs(60) => {
                    Err("outside 100ms..60s".into())
                }
                d => Ok(d),
            }
        })?;
        Ok(Some(RemoteSource {
            kind: SourceKind::Pixiecore,
            url: url.trim_end_matches('/').to_string(),
            // Nothing to refresh: the API is asked per MAC.
            refresh: Duration::from_secs(3600),
            timeout,
            allow_empty: true,
            max_stale: None,
            token_file: None,
            tls: TlsFiles::default(),
            kube: None,
        }))
    }

    /// What machines with no record get from `/auto.ipxe`: in auto-proxy mode (as Smee decides
    /// it, by the mode setting alone) Smee's static script or `--auto-proxy-profile`.
    fn unknown_script(
        r: &Reader,
        profiles: &Profiles,
        warnings: &mut Vec<String>,
    ) -> Result<UnknownScript, ConfigError> {
        let auto_proxy = r.get(Key::dhcp_mode, dhcp_mode)? == DhcpMode::AutoProxy;
        let setting = r.settings.get(Key::auto_proxy_profile);
        let Some(name) = r.text(Key::auto_proxy_profile) else {
            return Ok(if auto_proxy {
                UnknownScript::StaticHook
            } else {
                UnknownScript::NotFound
            });
        };
        let Some(profile) = profiles.get(&name) else {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            return Err(ConfigError(format!(
                "{} names the profile {name:?}, which the config file does not define (it defines: {})",
                setting.origin(),
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )));
        };
        if !auto_proxy {
            warnings.push(format!(
                "{} ignored: only auto-proxy mode serves machines that have no record",
                setting.origin()
            ));
            return Ok(UnknownScript::NotFound);
        }
        Ok(UnknownScript::Profile(name, profile.clone()))
    }

    /// Smee options netbootd accepts but does not carry out yet: a warning for each that is
    /// set, and an error for the one that would leave a feature silently missing.
    fn not_applied(r: &Reader, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        if !r.flag(Key::iso_enabled)? {
            for key in [Key::iso_url, Key::iso_magic_string] {
                if r.text(key).is_some() {
                    warnings.push(format!(
                        "{} not applied: the ISO service is off (--iso-enabled)",
                        r.settings.get(key).origin()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The pull-through cache: `--assets-upstream` (every path) and the file's
    /// `[[upstream]]` tables, added by [`Config::with_upstreams`].
    fn asset_cache(
        r: &Reader,
        state_dir: &Path,
    ) -> Result<assets::AssetCacheSettings, ConfigError> {
        let upstreams = match r.text(Key::assets_upstream) {
            Some(_) => vec![assets::Upstream {
                prefix: String::new(),
                url: r.get(Key::assets_upstream, assets::upstream_url)?,
                sha256sums: None,
            }],
            None => Vec::new(),
        };
        let ttl = r.get(Key::assets_cache_ttl, value::duration)?;
        Ok(assets::AssetCacheSettings {
            upstreams,
            dir: r
                .path(Key::assets_cache_dir)
                .unwrap_or_else(|| state_dir.join("assets-cache")),
            max_bytes: r.get(Key::assets_cache_max, assets::byte_size)?,
            ttl: Some(ttl).filter(|t| !t.is_zero()),
            pinned: Vec::new(),
        })
    }

    /// `--iso-enabled` with its URL and marker.
    fn iso(r: &Reader) -> Result<Option<assets::IsoSettings>, ConfigError> {
        let static_ipam = r.flag(Key::iso_static_ipam_enabled)?;
        if !r.flag(Key::iso_enabled)? {
            return Ok(None);
        }
        if r.text(Key::iso_url).is_none() {
            return Err(ConfigError(format!(
                "{} needs --iso-url, the ISO to patch",
                r.settings.get(Key::iso_enabled).origin()
            )));
        }
        let url = r.get(Key::iso_url, |t| value::url(t, &["http", "https"]))?;
        let magic = r
            .text(Key::iso_magic_string)
            .unwrap_or_else(|| assets::HOOK_MAGIC.to_string());
        if magic.len() < 16 || magic.len() > 4096 {
            return Err(ConfigError(format!(
                "{}: the marker must be 16 to 4096 bytes long",
                r.settings.get(Key::iso_magic_string).origin()
            )));
        }
        Ok(Some(assets::IsoSettings {
            url,
            magic,
            static_ipam,
        }))
    }

    /// Is the asset cache in use (an upstream, or the ISO service)?
    pub fn cache_on(&self) -> bool {
        !self.asset_cache.upstreams.is_empty() || self.iso.is_some()
    }

    /// Adds the config file's `[[upstream]]` tables to `--assets-upstream`, and the digests
    /// its boot profiles pin; without any upstream the cache is off.
    pub fn with_upstreams(
        mut self,
        upstreams: Vec<assets::Upstream>,
        pinned: Vec<(String, assets::Sha256)>,
    ) -> Result<Config, ConfigError> {
        let cache = &mut self.asset_cache;
        cache.pinned = pinned;
        let mut all = std::mem::take(&mut cache.upstreams);
        all.extend(upstreams);
        cache.upstreams = assets::order_upstreams(all).map_err(ConfigError)?;
        if self.cache_on() && !cfg!(feature = "remote") {
            return Err(ConfigError(
                "--assets-upstream and --iso-enabled need the HTTP client, which this build (without remote sources) lacks".into(),
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
pub(crate) mod tests;
