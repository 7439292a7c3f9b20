//! The one table of netbootd's options. Every row gives the long flag (`--dhcp-mode`), the
//! environment names (`NETBOOTD_DHCP_MODE`, and `SMEE_DHCP_MODE` for Smee's options), the TOML
//! key (`dhcp-mode`, or `mode` inside `[dhcp]`), the default and the help text. Flags are read
//! against this table itself ([`super::args::parse`]), so the table and the parser cannot
//! drift apart.

/// Where an option comes from: Smee's flag set (also read from `SMEE_<NAME>`) or netbootd's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Smee,
    Own,
}

/// Booleans may be given as a bare flag (`--dhcp-enabled`) meaning `true`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Bool,
    Value,
}

#[derive(Debug)]
pub struct OptionSpec {
    /// The Rust field name (`dhcp_mode`); the flag and key are derived from it.
    pub field: &'static str,
    pub origin: Origin,
    pub value_type: ValueType,
    pub default: &'static str,
    pub help: &'static str,
}

impl OptionSpec {
    /// `dhcp-mode`: the long flag without dashes, and the TOML key.
    pub fn name(&self) -> String {
        self.field.replace('_', "-")
    }

    /// The environment variables read for this option, the winning one first.
    pub fn env_names(&self) -> Vec<String> {
        let suffix = self.field.to_ascii_uppercase();
        match self.origin {
            Origin::Smee => vec![format!("NETBOOTD_{suffix}"), format!("SMEE_{suffix}")],
            Origin::Own => vec![format!("NETBOOTD_{suffix}")],
        }
    }

    pub fn is_bool(&self) -> bool {
        self.value_type == ValueType::Bool
    }
}

impl Key {
    /// The option's row in [`OPTIONS`].
    pub fn spec(self) -> &'static OptionSpec {
        &OPTIONS[self as usize]
    }

    /// `dhcp-mode`: the long flag without dashes, and the TOML key.
    pub fn name(self) -> String {
        self.spec().name()
    }
}

/// Looks an option up by its flag/key name (`dhcp-mode`; `_` and case are not significant).
pub fn find(name: &str) -> Option<&'static OptionSpec> {
    let field = name.to_ascii_lowercase().replace('-', "_");
    OPTIONS.iter().find(|o| o.field == field)
}

macro_rules! options {
    ($( $field:ident : $origin:ident $vtype:ident = $default:literal, $help:tt; )*) => {
        /// One key per option, named as its field (`Key::dhcp_mode`), in table order: a
        /// look-up by key is an index into the table and cannot miss.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Key {
            $( $field, )*
        }

        pub static OPTIONS: &[OptionSpec] = &[$(
            OptionSpec {
                field: stringify!($field),
                origin: Origin::$origin,
                value_type: ValueType::$vtype,
                default: $default,
                help: $help,
            },
        )*];

        /// Command-line flags as [`super::args::parse`] reads them: every option is an
        /// optional string, so that "not given" can fall through to the environment, the file
        /// and the default.
        #[derive(Debug, Default)]
        pub struct Flags {
            /// By [`Key`] (the table's order).
            pub values: Vec<Option<String>>,
            /// `--version`: print the version and exit.
            pub version: bool,
            /// serve (default), check, config, ...
            pub command: Option<String>,
        }

        impl Flags {
            /// The value given on the command line for the option with this field name.
            pub fn value_of(&self, field: &str) -> Option<&str> {
                let i = OPTIONS.iter().position(|o| o.field == field)?;
                self.values.get(i)?.as_deref()
            }
        }
    };
}

options! {
    config: Own Value = "", "TOML configuration file (default /etc/netbootd/netbootd.toml when it exists)";
    log_level: Smee Value = "info", "log level: error, warn, info, debug or trace (anything else means info, with a warning, as in Smee)";
    log_format: Own Value = "text", "log line format: text, or json (one JSON object per line: time, level, msg and the event's fields, as Smee writes)";
    log_output: Own Value = "stderr", "where log lines go: stderr or stdout (Smee writes to stdout)";
    public_ip_interface: Smee Value = "", "interface whose first IPv4 address is used for \"auto\" addresses";
    log_budget_lines: Own Value = "100", "log lines a second that clients can cause (DHCP decisions, TFTP refusals, HTTP access, syslog messages); the rest are counted and summarised once a second";
    log_budget_bytes: Own Value = "12288", "bytes a second of those lines (so a flood costs at most about 0.7 MB of log a minute)";

    dhcp_enabled: Smee Bool = "true", "run the DHCP service";
    dhcp_mode: Smee Value = "reservation", "DHCP mode: reservation, proxy, auto-proxy or off";
    dhcp_addr: Smee Value = "0.0.0.0:67", "DHCP listen address (IPv4:port)";
    dhcp_iface: Smee Value = "", "interface the DHCP service binds to";
    dhcp_ip_for_packet: Smee Value = "auto", "server address put in DHCP replies (option 54, siaddr)";
    dhcp_syslog_ip: Smee Value = "auto", "syslog server sent in option 7 and the syslog_host= kernel argument";
    dhcp_tftp_ip: Smee Value = "auto", "TFTP server address sent to clients (next-server, tftp:// URLs)";
    dhcp_tftp_port: Smee Value = "69", "TFTP port used in tftp:// URLs";
    dhcp_http_ipxe_binary_scheme: Smee Value = "http", "scheme of the iPXE binary URL for UEFI HTTP boot: http or https";
    dhcp_http_ipxe_binary_host: Smee Value = "auto", "host of the iPXE binary URL";
    dhcp_http_ipxe_binary_port: Smee Value = "8080", "port of the iPXE binary URL";
    dhcp_http_ipxe_binary_path: Smee Value = "/ipxe/", "path of the iPXE binary URL";
    dhcp_http_ipxe_script_scheme: Smee Value = "http", "scheme of the iPXE script URL: http or https";
    dhcp_http_ipxe_script_host: Smee Value = "auto", "host of the iPXE script URL";
    dhcp_http_ipxe_script_port: Smee Value = "8080", "port of the iPXE script URL (left out of the URL for 80/443)";
    dhcp_http_ipxe_script_path: Smee Value = "/auto.ipxe", "path of the iPXE script URL";
    dhcp_http_ipxe_script_url: Smee Value = "", "full iPXE script URL; overrides the four options above";
    dhcp_http_ipxe_script_prepend_mac: Smee Bool = "true", "put the client MAC before the last path element of the script URL (/auto.ipxe -> /<mac>/auto.ipxe), of --dhcp-http-ipxe-script-url too, as Smee";
    dhcp_ipxe_binaries: Own Value = "0=undionly.kpxe,6=ipxe.efi,7=ipxe.efi,9=ipxe.efi,10=snp.efi,11=snp.efi,15=ipxe.efi,16=ipxe.efi,18=snp.efi,19=snp.efi,41=snp.efi", "iPXE binary per client architecture (option 93): ARCH=FILE,...";
    dhcp_loaders: Own Value = "", "boot loader per client architecture for machines whose record names none: ARCH=ipxe|grub,... (GRUB: shimx64.efi for x86-64 UEFI, shimaa64.efi for ARM64, from --ipxe-dir; default iPXE)";
    dhcp_boot_server_arches: Own Value = "6,7,9,10,11", "architectures whose ProxyDHCP offers leave out option 43, so the firmware asks the boot server on UDP 4011 (the others boot straight from the offer)";
    auto_proxy_profile: Own Value = "", "in auto-proxy mode, the boot profile (a [profiles.NAME] of the config file) that machines with no record get instead of Smee's static Hook script";
    ipxe_script_url_template: Own Value = "", "script URL for iPXE clients of SMD machines, with {mac}, {mac-hyphen}, {ip}, {xname}, {nid} and {arch} filled in (OpenCHAMI BSS: http://bss:8081/boot/v1/bootscript?mac={mac})";
    dhcp_relays: Own Value = "", "comma-separated CIDRs of the relays to answer (giaddr); empty: any relay with a unicast address";

    tftp_enabled: Smee Bool = "true", "run the TFTP service";
    tftp_addr: Smee Value = "auto", "TFTP listen address";
    tftp_port: Smee Value = "69", "TFTP listen port";
    tftp_timeout: Smee Value = "5s", "longest TFTP retransmission wait (Go duration: 5s, 500ms); shorter waits follow measured round trips (from 200ms)";
    tftp_block_size: Smee Value = "512", "largest TFTP blksize offered (512..65464, also capped by the MTU)";
    tftp_window_size: Own Value = "32", "largest TFTP windowsize granted (RFC 7440, 1..256; 1 = lock-step only)";
    tftp_max_transfers: Own Value = "128", "concurrent TFTP transfers (one thread each, 1..4096); requests over it get ERROR \"busy\"";
    tftp_max_transfers_per_client: Own Value = "4", "concurrent TFTP transfers for one client address (1..4096); more get ERROR \"busy\"";
    tftp_single_port: Own Bool = "false", "send every transfer from the listening port (for clients behind NAT) instead of one port per transfer";
    ipxe_script_patch: Smee Value = "", "iPXE script written over the 131-byte marker of served iPXE binaries, as Smee does (at most 131 bytes; binaries without the marker are served unchanged with a WARN)";

    http_ipxe_binary_enabled: Smee Bool = "true", "serve iPXE binaries over HTTP";
    http_ipxe_script_enabled: Smee Bool = "true", "serve iPXE scripts over HTTP";
    http_addr: Smee Value = "auto", "HTTP listen address";
    http_port: Smee Value = "8080", "HTTP listen port";
    http_max_connections_per_client: Own Value = "32", "open HTTP connections from one client address (1..4096); more are refused at once";
    extra_kernel_args: Smee Value = "", "extra kernel command-line arguments for the Hook script";
    trusted_proxies: Smee Value = "", "comma-separated CIDRs whose X-Forwarded-For is believed";
    osie_url: Smee Value = "", "base URL of the installation environment (Hook kernel and initrd)";
    tink_server: Smee Value = "", "Tink server address (grpc_authority= kernel argument)";
    tink_server_tls: Smee Bool = "false", "the Tink server uses TLS";
    tink_server_insecure_tls: Smee Bool = "false", "do not verify the Tink server's certificate";
    ipxe_script_retries: Smee Value = "0", "retries of each download in generated iPXE scripts";
    ipxe_script_retry_delay: Smee Value = "2", "seconds between those retries";

    syslog_enabled: Smee Bool = "true", "run the syslog receiver";
    syslog_addr: Smee Value = "auto", "syslog listen address";
    syslog_port: Smee Value = "514", "syslog listen port";

    backend_file_enabled: Smee Bool = "true", "use the hardware file backend (netbootd's default; Smee's is false)";
    backend_file_path: Smee Value = "/etc/netbootd/hardware.yaml", "hardware file: Smee YAML, or TOML when it ends in .toml";
    backend_kube_enabled: Smee Bool = "true", "Kubernetes backend: Tinkerbell Hardware objects, listed and watched (used when set and no file backend is set, or when the file backend is off)";
    backend_kube_config: Smee Value = "", "kubeconfig for the Kubernetes backend (default: KUBECONFIG, then the in-cluster service account, then ~/.kube/config)";
    backend_kube_api: Smee Value = "", "Kubernetes API server URL, over the kubeconfig's (alone: no credentials, e.g. kubectl proxy)";
    backend_kube_namespace: Smee Value = "", "watch Hardware in this namespace only (default: all namespaces)";
    backend_noop_enabled: Smee Bool = "false", "no inventory at all, as Smee's noop backend: every machine is unknown (for auto-proxy mode); no hardware file is read";
    backend_smd_url: Own Value = "", "OpenCHAMI SMD base URL (http://smd:27779 or https://...): machines from its EthernetInterfaces and Components, refreshed in the background, with [subnets.NAME] tables of the config file for what SMD does not hold";
    backend_smd_refresh: Own Value = "30s", "how often the SMD snapshot is fetched whole (Go duration, 1s..1h)";
    backend_smd_timeout: Own Value = "10s", "longest wait for each SMD fetch (connect, each read and the whole exchange)";
    backend_smd_allow_empty: Own Bool = "false", "let an empty SMD answer replace a snapshot that has machines";
    backend_smd_max_stale: Own Value = "", "stop answering SMD machines when the snapshot is older than this (Go duration; empty: never)";
    backend_smd_token_file: Own Value = "", "file holding a bearer token for SMD, read at every refresh";
    backend_smd_ca_cert: Own Value = "", "PEM file of the CAs trusted for an https SMD URL (default: the system's CA bundle)";
    backend_smd_client_cert: Own Value = "", "PEM client certificate (chain) presented to an https SMD, with --backend-smd-client-key";
    backend_smd_client_key: Own Value = "", "PEM private key of --backend-smd-client-cert";
    backend_http_url: Own Value = "", "URL of a JSON inventory (the hardware file's shape: an object keyed by MAC), refreshed in the background like SMD, for a source of truth such as NetBox, a CMDB or a script";
    backend_http_refresh: Own Value = "30s", "how often the JSON inventory is fetched (Go duration, 1s..1h)";
    backend_http_timeout: Own Value = "10s", "longest wait for each fetch of the JSON inventory";
    backend_http_allow_empty: Own Bool = "false", "let an empty JSON inventory replace one that has machines";
    backend_http_max_stale: Own Value = "", "stop answering the JSON inventory's machines when it is older than this (Go duration; empty: never)";
    backend_http_token_file: Own Value = "", "file holding a bearer token for the JSON inventory, read at every refresh";
    backend_http_ca_cert: Own Value = "", "PEM file of the CAs trusted for an https JSON inventory URL (default: the system's CA bundle)";
    backend_http_client_cert: Own Value = "", "PEM client certificate presented for an https JSON inventory, with --backend-http-client-key";
    backend_http_client_key: Own Value = "", "PEM private key of --backend-http-client-cert";
    backend_pixiecore_url: Own Value = "", "pixiecore API base URL: GET <url>/v1/boot/<mac> for each machine not known yet (as pixiecore's api mode; answers kept 60s; use with a proxy DHCP mode)";
    backend_pixiecore_timeout: Own Value = "5s", "longest wait for each pixiecore API call (Go duration)";
    strict: Own Bool = "false", "refuse the whole hardware file when any record has an error (default: leave each bad record out, log it, serve the rest)";
    iso_enabled: Smee Bool = "false", "serve /iso/<mac>/<name>.iso: the --iso-url ISO, through the asset cache, with --iso-magic-string replaced by that machine's kernel arguments (virtual-media boots)";
    iso_url: Smee Value = "", "source ISO URL (http or https) for --iso-enabled";
    iso_magic_string: Smee Value = "", "string replaced in the ISO by the kernel arguments (default: HookOS's 1,024-character marker)";
    iso_static_ipam_enabled: Smee Bool = "false", "add the machine's address settings (ipam=...) to the patched ISO's kernel arguments";
    otel_endpoint: Smee Value = "", "OpenTelemetry collector (accepted for Smee compatibility; netbootd sends no traces)";
    otel_insecure: Smee Bool = "true", "OpenTelemetry without TLS (accepted for Smee compatibility)";

    ipxe_dir: Own Value = "", "directory of iPXE binaries (default: first of /usr/lib/ipxe, /usr/share/ipxe, /srv/netbootd/ipxe)";
    assets_dir: Own Value = "", "directory of boot assets, served at /assets/ over HTTP and over TFTP";
    assets_upstream: Own Value = "", "upstream mirror (http or https URL) for assets not in --assets-dir: fetched once, streamed to the clients while it is cached; more upstreams by path prefix in [[upstream]] tables of the config file";
    assets_cache_dir: Own Value = "", "where upstream assets are cached (default: <state-dir>/assets-cache)";
    assets_cache_max: Own Value = "0", "most bytes the asset cache holds (K, M, G, T suffixes; 0: no limit): least recently used files are evicted, never one being served";
    assets_cache_ttl: Own Value = "24h", "ask the upstream again (ETag, Last-Modified) about a cached file older than this (0: never); names that carry a version or a hash are never asked again";
    state_dir: Own Value = "/var/lib/netbootd", "directory for netbootd's state";
    user: Own Value = "auto", "after binding its sockets, run as this user with no capabilities (auto: netbootd when that user exists; root: stay root)";
    group: Own Value = "", "group to run as (default: the user's primary group)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smee_defaults_are_kept() {
        let default = |n: &str| find(n).unwrap().default;
        assert_eq!(default("dhcp-mode"), "reservation");
        assert_eq!(default("dhcp-addr"), "0.0.0.0:67");
        assert_eq!(default("http-port"), "8080");
        assert_eq!(default("tftp-block-size"), "512");
        assert_eq!(default("dhcp-http-ipxe-binary-path"), "/ipxe/");
        assert_eq!(default("dhcp-http-ipxe-script-path"), "/auto.ipxe");
        assert_eq!(default("syslog-port"), "514");
    }

    #[test]
    fn env_names_put_netbootd_before_smee() {
        assert_eq!(
            find("dhcp-mode").unwrap().env_names(),
            ["NETBOOTD_DHCP_MODE", "SMEE_DHCP_MODE"]
        );
        assert_eq!(find("ipxe-dir").unwrap().env_names(), ["NETBOOTD_IPXE_DIR"]);
        assert_eq!(
            find("PUBLIC_IP_INTERFACE").unwrap().env_names()[1],
            "SMEE_PUBLIC_IP_INTERFACE"
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = OPTIONS.iter().map(|o| o.field).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), OPTIONS.len());
    }
}
