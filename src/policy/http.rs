//! HTTP decisions, pure: the whole answer to a request ([`respond`], a [`Plan`]), which route
//! a path names ([`route`]), which machine a request is from ([`client_ip`], Smee's "IP
//! authentication" with trusted proxies), and the iPXE script a machine gets
//! ([`script_for`]): its own script URL or inline script, else its boot profile rendered as a
//! robust script, else the Tinkerbell Hook script when `--osie-url` is set; and the same boot
//! as GRUB's `grub.cfg` ([`grub_config`]) for machines booting GRUB.
//!
//! Values put into scripts come from a validated inventory and config; the renderers check
//! again that none can end its line or chain another command (control characters, `||`, `&&`,
//! `;`), and refuse the script rather than serve a broken or hijacked one.

use std::net::IpAddr;

use crate::config::{Cidr, Http, UnknownScript};
use crate::inventory::Machine;
use crate::policy::tftp::strip_traceparent;
use crate::wire::http::percent_decode;
use crate::wire::MacAddr;

mod respond;
#[cfg(test)]
mod tests;

pub use respond::{authority, content_type, plan_file, plan_refusal, respond, Body, Plan};

/// What a request path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/auto.ipxe`, `/any/path/auto.ipxe`: the machine is the client's address.
    ScriptByIp,
    /// `/<mac>/auto.ipxe`, `/any/path/<mac>/auto.ipxe` (colon, dash, dot or bare-hex MAC).
    ScriptByMac(MacAddr),
    /// `/ipxe/<anything>/<binary>` or `/ipxe/<binary>`: a base name in `--ipxe-dir` (Smee's
    /// traceparent suffix taken off).
    IpxeBinary(String),
    /// `/assets/<path>`: a cleaned relative path below `--assets-dir` (or from its upstream).
    Asset(String),
    /// `grub.cfg` in any directory (GRUB's network image asks `<prefix>/grub.cfg` and
    /// `<prefix>/<platform>/grub.cfg`), or `grub.cfg-01-<mac>`: the machine's GRUB
    /// configuration (`None`: the machine is the client's address).
    GrubConfig(Option<MacAddr>),
    /// `/iso/<anything>/<mac>/<name>.iso`: Smee's ISO patched for the machine (`None`: the
    /// element before the name is no MAC).
    Iso(Option<MacAddr>),
    Health,
    Metrics,
    /// `/unknown.ipxe` (any directory): the script of the address pool the client's address
    /// lies in (reboot after a while, or the pool's boot profile).
    UnknownScript,
    /// `/unknown`: the discovery list and the pools' leases, as JSON.
    Unknown,
    /// With the reason, for the log.
    NotFound(&'static str),
}

impl Route {
    /// A short name for logs and metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Route::ScriptByIp | Route::ScriptByMac(_) => "script",
            Route::GrubConfig(_) => "grub",
            Route::IpxeBinary(_) => "ipxe",
            Route::Asset(_) => "assets",
            Route::Iso(_) => "iso",
            Route::Health => "healthcheck",
            Route::Metrics => "metrics",
            Route::UnknownScript => "script",
            Route::Unknown => "unknown",
            Route::NotFound(_) => "other",
        }
    }
}

/// Routes a request path (without the query). Percent-escapes are decoded first, so an
/// encoded `..` is refused like a plain one; empty and `.` segments are dropped (never a
/// redirect: UEFI HTTP boot cannot follow one).
pub fn route(path: &str) -> Route {
    let Some(decoded) = percent_decode(path) else {
        return Route::NotFound("bad escape in path");
    };
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return Route::NotFound("control character or backslash in path");
    }
    let parts: Vec<&str> = decoded
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Route::NotFound("'..' in path");
    }
    match parts.as_slice() {
        ["ipxe", .., binary] => Route::IpxeBinary(strip_traceparent(binary).to_string()),
        ["assets", rest @ ..] if !rest.is_empty() => Route::Asset(rest.join("/")),
        ["iso", .., before, name] if name.ends_with(".iso") => Route::Iso(MacAddr::parse(before)),
        ["iso", ..] => Route::NotFound("only .iso names below /iso/"),
        ["healthcheck"] => Route::Health,
        ["metrics"] => Route::Metrics,
        ["unknown"] => Route::Unknown,
        [.., "unknown.ipxe"] => Route::UnknownScript,
        // Smee: any path ending in auto.ipxe; the element before it names the machine when
        // it is a MAC, else the machine is the client's address.
        [.., before, "auto.ipxe"] => match MacAddr::parse(before) {
            Some(mac) => Route::ScriptByMac(mac),
            None => Route::ScriptByIp,
        },
        ["auto.ipxe"] => Route::ScriptByIp,
        [.., name] if grub_config_name(name).is_some() => {
            Route::GrubConfig(grub_config_name(name).flatten())
        }
        _ => Route::NotFound("no such route"),
    }
}

/// The address the machine is found by: the peer, or, when the peer is a trusted proxy, the
/// right-most address in X-Forwarded-For that is not a trusted proxy (`forwarded` holds every
/// X-Forwarded-For value in order). A malformed entry stops the walk at the last trusted hop.
pub fn client_ip(peer: IpAddr, forwarded: &[&str], trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// What scripts need from the config.
#[derive(Clone, Debug)]
pub struct ScriptSettings<'a> {
    pub http: &'a Http,
    /// `syslog_host=` in the Hook scripts (`--dhcp-syslog-ip`: an address, or a host name in
    /// the proxy modes).
    pub syslog_host: &'a str,
    /// Where `/assets/` is served, for profile paths: `http://host:port`.
    pub base_url: String,
}

/// Why a machine gets no script (404).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoScript {
    UnknownMachine,
    Disabled,
    NotAllowed,
    /// No script, no boot profile and no `--osie-url`.
    NothingToBoot,
    /// A value that would break the script (field, why).
    Unsafe(&'static str, &'static str),
}

impl NoScript {
    pub fn describe(&self) -> String {
        match self {
            NoScript::UnknownMachine => "unknown machine".into(),
            NoScript::Disabled => "machine disabled".into(),
            NoScript::NotAllowed => "allowPxe is false".into(),
            NoScript::NothingToBoot => {
                "nothing to boot: no ipxeScriptUrl, ipxeScript or boot profile, and no --osie-url"
                    .into()
            }
            NoScript::Unsafe(field, why) => format!("refused: {field} {why}"),
        }
    }
}

/// Which kind of script was served, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptKind {
    ChainUrl,
    Inline,
    Profile,
    Hook,
    /// Smee's static script, for a machine with no record in auto-proxy mode.
    Static,
    /// The address pool's: sleep, then reboot, until the machine is known.
    Reboot,
}

impl ScriptKind {
    pub fn label(self) -> &'static str {
        match self {
            ScriptKind::ChainUrl => "chain",
            ScriptKind::Inline => "inline",
            ScriptKind::Profile => "profile",
            ScriptKind::Hook => "hook",
            ScriptKind::Static => "static",
            ScriptKind::Reboot => "reboot",
        }
    }
}

/// The script for a machine, in Smee's order with boot profiles before the Hook default.
pub fn script_for(
    machine: Option<&Machine>,
    s: &ScriptSettings,
) -> Result<(ScriptKind, String), NoScript> {
    let Some(m) = machine else {
        return unknown_machine_script(s);
    };
    if m.disabled {
        return Err(NoScript::Disabled);
    }
    if !m.netboot.allow_pxe {
        return Err(NoScript::NotAllowed);
    }
    if let Some(url) = &m.netboot.ipxe_script_url {
        safe("ipxeScriptUrl", url, true)?;
        return Ok((
            ScriptKind::ChainUrl,
            format!("#!ipxe\n\nchain --autofree {url}\n"),
        ));
    }
    if let Some(script) = &m.netboot.ipxe_script {
        let body = script.trim_end();
        let text = if body.starts_with("#!ipxe") {
            format!("{body}\n")
        } else {
            format!("#!ipxe\n\n{body}\n")
        };
        return Ok((ScriptKind::Inline, text));
    }
    if let Some(boot) = &m.boot {
        let who = match &m.hostname {
            Some(host) => format!("{} ({host})", m.mac),
            None => m.mac.to_string(),
        };
        return profile_script(&who, boot.profile.as_deref(), &boot.resolved, s)
            .map(|t| (ScriptKind::Profile, t));
    }
    if let Some(osie) = &s.http.osie_url {
        return hook_script(m, osie, s).map(|t| (ScriptKind::Hook, t));
    }
    Err(NoScript::NothingToBoot)
}

/// What a machine with no record gets: nothing (404), except in auto-proxy mode, where
/// netbootd's DHCP gave it iPXE and so must give it something to run: Smee's static Hook
/// script, or `--auto-proxy-profile`'s boot profile.
pub fn unknown_machine_script(s: &ScriptSettings) -> Result<(ScriptKind, String), NoScript> {
    match &s.http.unknown_script {
        UnknownScript::NotFound => Err(NoScript::UnknownMachine),
        UnknownScript::Profile(name, profile) => {
            profile_script("${mac}", Some(name), profile, s).map(|t| (ScriptKind::Profile, t))
        }
        UnknownScript::StaticHook => match &s.http.osie_url {
            Some(osie) => static_hook_script(osie, s).map(|t| (ScriptKind::Static, t)),
            None => Err(NoScript::NothingToBoot),
        },
    }
}

/// The script of the pool whose network holds `client` (the first pool when none does):
/// a reboot after the pool's `reboot-sleep`, or its boot profile.
pub fn pool_script(
    pools: &[crate::config::pools::PoolSettings],
    client: IpAddr,
    s: &ScriptSettings,
) -> Result<(ScriptKind, String), NoScript> {
    use crate::config::pools::PoolBoot;
    let pool = pools
        .iter()
        .find(|p| p.subnet.contains(client))
        .or(pools.first())
        .ok_or(NoScript::UnknownMachine)?;
    match &pool.boot {
        PoolBoot::Reboot { sleep } => Ok((
            ScriptKind::Reboot,
            format!(
                "#!ipxe\n# netbootd: pool {name}: this machine is not in the inventory yet\n\necho netbootd: ${{mac}} is not in the inventory yet (pool {name}); rebooting in {sleep} s\nsleep {sleep}\nreboot\n",
                name = pool.name
            ),
        )),
        PoolBoot::Profile(name, Some(profile)) => {
            profile_script("${mac}", Some(name), profile, s).map(|t| (ScriptKind::Profile, t))
        }
        PoolBoot::Profile(_, None) => Err(NoScript::NothingToBoot),
    }
}

/// A name GRUB asks for its configuration: `grub.cfg` (`Some(None)`: the machine is the
/// client's address), `grub.cfg-01-<mac>` (`Some(Some(mac))`), or `grub.cfg-<hex address>`
/// (GRUB's per-address names, `Some(None)`). `None`: another name.
pub fn grub_config_name(name: &str) -> Option<Option<MacAddr>> {
    let rest = crate::policy::tftp::base_name(name).strip_prefix("grub.cfg")?;
    if rest.is_empty() {
        return Some(None);
    }
    let rest = rest.strip_prefix('-')?;
    if let Some(mac) = rest.strip_prefix("01-").and_then(MacAddr::parse) {
        return Some(Some(mac));
    }
    (rest.len() <= 8 && rest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(None)
}

/// What `grub.cfg` says when its client's address names no machine (proxy modes: the
/// address is the site server's): ask again by GRUB's own MAC, which GRUB fills in.
const GRUB_ASK_BY_MAC: &str = "# netbootd: no machine has this address; asking by MAC\nconfigfile $prefix/grub.cfg-01-$net_default_mac\n";

/// The answer to a GRUB configuration name ([`grub_config_name`]): `by_mac` is the MAC the
/// name carries, `machine` the one found by it or by the client's address. An address that
/// names no machine is told to ask again by MAC; otherwise [`grub_config`].
pub fn grub_answer(
    by_mac: Option<MacAddr>,
    machine: Option<&Machine>,
    s: &ScriptSettings,
    tftp_ip: std::net::Ipv4Addr,
) -> Result<String, NoScript> {
    match (by_mac, machine) {
        (None, None) => Ok(GRUB_ASK_BY_MAC.to_string()),
        _ => grub_config(machine, s, tftp_ip),
    }
}

/// The GRUB configuration a machine gets (`grub.cfg`, over TFTP and HTTP): the boot its
/// iPXE script would do (boot profile or the machine's own kernel; the Hook with
/// `--osie-url`; `--auto-proxy-profile` for a machine with no record) as GRUB commands.
/// netbootd's assets are named on its TFTP server, `(tftp,<tftp_ip>)/<path>`, whatever
/// device GRUB was started from.
/// URLs become `(http,host[:port])/path` and `(tftp,host)/path` (a port needs GRUB 2.12;
/// GRUB has no https). A machine whose boot is an iPXE script has nothing GRUB can run.
pub fn grub_config(
    machine: Option<&Machine>,
    s: &ScriptSettings,
    tftp_ip: std::net::Ipv4Addr,
) -> Result<String, NoScript> {
    use crate::inventory::BootProfile;
    let hook;
    let (who, profile, boot) = match machine {
        None => match &s.http.unknown_script {
            UnknownScript::Profile(name, profile) => (
                "a machine with no record".to_string(),
                Some(name.as_str()),
                profile,
            ),
            _ => return Err(NoScript::UnknownMachine),
        },
        Some(m) if m.disabled => return Err(NoScript::Disabled),
        Some(m) if !m.netboot.allow_pxe => return Err(NoScript::NotAllowed),
        Some(m) if m.netboot.ipxe_script_url.is_some() || m.netboot.ipxe_script.is_some() => {
            return Err(NoScript::Unsafe(
                "the machine",
                "boots an iPXE script, which GRUB cannot run",
            ))
        }
        Some(m) => {
            let who = match &m.hostname {
                Some(host) => format!("{} ({host})", m.mac),
                None => m.mac.to_string(),
            };
            match (&m.boot, &s.http.osie_url) {
                (Some(boot), _) => (who, boot.profile.as_deref(), &boot.resolved),
                (None, Some(osie)) => {
                    hook = hook_boot(m, osie, s);
                    (who, Some("Hook (--osie-url)"), &hook)
                }
                (None, None) => return Err(NoScript::NothingToBoot),
            }
        }
    };
    let BootProfile {
        kernel,
        initrd,
        cmdline,
    } = boot;
    let mut out = format!(
        "# netbootd: boot profile {} for {who}\nset timeout=0\necho 'netbootd: booting {who}'\nlinux {} {}\n",
        profile.unwrap_or("(the machine's own)"),
        grub_path("kernel", kernel, tftp_ip)?,
        grub_safe("cmdline", cmdline.trim())?,
    );
    if !initrd.is_empty() {
        out.push_str("initrd");
        for i in initrd {
            out.push(' ');
            out.push_str(&grub_path("initrd", i, tftp_ip)?);
        }
        out.push('\n');
    }
    out.push_str("boot\n");
    Ok(out)
}

/// What the Hook script boots, as a kernel, initrd and arguments (iPXE's `${arch}` filled in).
fn hook_boot(m: &Machine, osie_url: &str, s: &ScriptSettings) -> crate::inventory::BootProfile {
    let (h, nb, arch) = (s.http, &m.netboot, hook_arch(m));
    let url = nb
        .osie_base_url
        .as_deref()
        .unwrap_or(osie_url)
        .trim_end_matches('/');
    let file = |own: &Option<String>, default: &str| {
        format!(
            "{url}/{}",
            own.as_deref().unwrap_or(default).replace("${arch}", arch)
        )
    };
    let vlan = m
        .vlan_id
        .map(|v| format!("vlan_id={v} "))
        .unwrap_or_default();
    crate::inventory::BootProfile {
        kernel: file(&nb.osie_kernel, "vmlinuz-${arch}"),
        initrd: vec![file(&nb.osie_initrd, "initramfs-${arch}")],
        cmdline: format!(
            "{vlan}{} facility={} syslog_host={} grpc_authority={} tinkerbell_tls={} tinkerbell_insecure_tls={} worker_id={mac} hw_addr={mac} modules=loop,squashfs,sd-mod,usb-storage intel_iommu=on iommu=pt console=tty0 console=ttyS1,115200",
            h.extra_kernel_args.trim(),
            nb.facility.as_deref().unwrap_or(""),
            s.syslog_host,
            h.tink_server.as_deref().unwrap_or(""),
            h.tink_server_tls,
            h.tink_server_insecure_tls,
            mac = m.mac,
        ),
    }
}

/// A value GRUB's script reader takes literally: what [`safe`] allows, without `$`, quotes or
/// backslashes (GRUB would expand or unquote them).
fn grub_safe<'a>(field: &'static str, value: &'a str) -> Result<&'a str, NoScript> {
    safe(field, value, false)?;
    if value.contains(['$', '\'', '"', '\\']) {
        return Err(NoScript::Unsafe(
            field,
            "contains $, a quote or a backslash",
        ));
    }
    Ok(value)
}

/// A kernel or initrd as GRUB names a file: see [`grub_config`].
fn grub_path(
    field: &'static str,
    value: &str,
    tftp_ip: std::net::Ipv4Addr,
) -> Result<String, NoScript> {
    grub_safe(field, value)?;
    if value.contains(char::is_whitespace) {
        return Err(NoScript::Unsafe(field, "contains a space"));
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return Ok(format!(
            "(tftp,{tftp_ip})/{}",
            value.trim_start_matches('/')
        ));
    };
    if scheme != "http" && scheme != "tftp" {
        return Err(NoScript::Unsafe(
            field,
            "is a URL GRUB cannot fetch (http and tftp only)",
        ));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(format!("({scheme},{host})/{path}"))
}

/// A value may go into a script line: no control characters, no command separators; a `word`
/// (URL, single argument) has no spaces either.
fn safe(field: &'static str, value: &str, word: bool) -> Result<(), NoScript> {
    if value.chars().any(|c| c.is_control()) {
        return Err(NoScript::Unsafe(field, "contains a control character"));
    }
    if ["||", "&&", ";"].iter().any(|op| value.contains(op)) {
        return Err(NoScript::Unsafe(field, "contains ||, && or ;"));
    }
    if word && value.chars().any(char::is_whitespace) {
        return Err(NoScript::Unsafe(field, "contains a space"));
    }
    Ok(())
}

/// An absolute URL as is; a path below `--assets-dir` as `<base>/assets/<path>`.
fn asset_url(value: &str, s: &ScriptSettings) -> String {
    if value.contains("://") {
        value.to_string()
    } else {
        format!("{}/assets/{}", s.base_url, value.trim_start_matches('/'))
    }
}

/// One download with retries: `cmd` is tried `1 + retries` times, `delay` seconds apart, then
/// the script goes to `:failed` with `what` in the message.
fn with_retries(out: &mut String, label: &str, cmd: &str, next: &str, what: &str) {
    out.push_str(&format!(
        ":{label}\nset idx:int32 0\n:{label}_retry\n{cmd} && goto {next} || iseq ${{idx}} ${{retries}} && goto failed_{label} || inc idx && echo retrying {what} in ${{retry_delay}}s && sleep ${{retry_delay}} && goto {label}_retry\n:failed_{label}\nset failed {what}\ngoto failed\n"
    ));
}

fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// `who` names the machine in the script's comment and message: its MAC and host name, or
/// iPXE's `${mac}` for a machine with no record.
fn profile_script(
    who: &str,
    profile: Option<&str>,
    p: &crate::inventory::BootProfile,
    s: &ScriptSettings,
) -> Result<String, NoScript> {
    safe("hostname", who, false)?;
    safe("kernel", &p.kernel, true)?;
    for i in &p.initrd {
        safe("initrd", i, true)?;
    }
    safe("cmdline", &p.cmdline, false)?;
    let kernel = asset_url(&p.kernel, s);
    let initrds: Vec<String> = p.initrd.iter().map(|i| asset_url(i, s)).collect();
    let mut cmdline = p.cmdline.trim().to_string();
    // EFI kernels find iPXE's initrds by name.
    if !cmdline.split_whitespace().any(|a| a.starts_with("initrd=")) {
        for i in &initrds {
            cmdline.push_str(&format!(" initrd={}", file_name(i)));
        }
    }
    let retries = s.http.ipxe_script_retries.max(3);
    let mut out = format!(
        "#!ipxe\n# netbootd: boot profile {} for {who}\n\necho netbootd: booting {who} with {}\nset retries:int32 {retries}\nset retry_delay:int32 {}\n\n",
        profile.unwrap_or("(the machine's own)"),
        file_name(&kernel),
        s.http.ipxe_script_retry_delay.max(1),
    );
    let first_next = if initrds.is_empty() {
        "boot"
    } else {
        "initrd0"
    };
    with_retries(
        &mut out,
        "kernel",
        &format!("kernel {kernel} {}", cmdline.trim()),
        first_next,
        "the kernel",
    );
    for (n, url) in initrds.iter().enumerate() {
        let next = if n + 1 == initrds.len() {
            "boot".to_string()
        } else {
            format!("initrd{}", n + 1)
        };
        out.push('\n');
        with_retries(
            &mut out,
            &format!("initrd{n}"),
            &format!("initrd {url}"),
            &next,
            &format!("initrd {}", file_name(url)),
        );
    }
    out.push_str(
        "\n:boot\nboot || set failed booting\n\n:failed\necho netbootd: could not load ${failed} (error ${errno}); stopping here\nimgfree\nexit 1\n",
    );
    Ok(out)
}

/// The architecture in the Hook file names (`vmlinuz-<arch>`, `initramfs-<arch>`): x86_64
/// when the record has none, the ARM64 aliases as `aarch64`, anything else verbatim (Hook
/// builds for other architectures are named by it; the inventory allows only a safe word).
fn hook_arch(m: &Machine) -> &str {
    match m.arch.as_deref() {
        None | Some("") => "x86_64",
        Some(a)
            if ["aarch64", "arm64"]
                .iter()
                .any(|k| a.eq_ignore_ascii_case(k)) =>
        {
            "aarch64"
        }
        Some(other) => other,
    }
}

/// Smee's retry clause after a Hook script command: try again up to `${retries}` times.
fn hook_retry(what: &str) -> String {
    format!(
        "|| iseq ${{idx}} ${{retries}} && goto {what}-error || inc idx && echo retry in ${{retry_delay}} seconds ; sleep ${{retry_delay}} ; goto retry_{what}"
    )
}

/// What both of Smee's Hook scripts end with, from `:download_initrd` on; `initrd` is the
/// initrd's file name below `${download-url}`.
fn hook_tail(initrd: &str) -> String {
    format!(
        ":download_initrd
set idx:int32 0
:retry_initrd
initrd ${{download-url}}/{initrd} && goto boot {retry_initrd}

:boot
set idx:int32 0
:retry_boot
boot {retry_boot}

:kernel-error
echo Failed to load kernel
imgfree
exit

:initrd-error
echo Failed to load initrd
imgfree
exit

:boot-error
echo Failed to boot
imgfree
exit
",
        retry_initrd = hook_retry("initrd"),
        retry_boot = hook_retry("boot"),
    )
}

/// The Tinkerbell Hook script as Smee renders it (see `../shared/reference/smee.md`, HTTP).
fn hook_script(m: &Machine, osie_url: &str, s: &ScriptSettings) -> Result<String, NoScript> {
    let h = s.http;
    // A machine's own (Tinkerbell's netboot.osie), as Smee applies them.
    let nb = &m.netboot;
    let url = nb.osie_base_url.as_deref().unwrap_or(osie_url);
    let kernel = nb.osie_kernel.as_deref().unwrap_or("vmlinuz-${arch}");
    let initrd = nb.osie_initrd.as_deref().unwrap_or("initramfs-${arch}");
    safe("osie-url", url, true)?;
    safe("osie kernel", kernel, true)?;
    safe("osie initrd", initrd, true)?;
    safe("extra-kernel-args", &h.extra_kernel_args, false)?;
    let facility = m.netboot.facility.as_deref().unwrap_or("");
    safe("facility", facility, true)?;
    let mut args = String::new();
    if let Some(vlan) = m.vlan_id {
        args.push_str(&format!(" vlan_id={vlan}"));
    }
    for a in h.extra_kernel_args.split_whitespace() {
        args.push(' ');
        args.push_str(a);
    }
    let mac = m.mac;
    Ok(format!(
        "#!ipxe

echo Loading the Tinkerbell Hook iPXE script...

set arch {arch}
set download-url {url}
set kernel {kernel}
set initrd {initrd}
set retries:int32 {retries}
set retry_delay:int32 {delay}

set idx:int32 0
:retry_kernel
kernel ${{download-url}}/${{kernel}}{args} \\
facility={facility} syslog_host={syslog} grpc_authority={tink} tinkerbell_tls={tls} tinkerbell_insecure_tls={insecure} worker_id={mac} hw_addr={mac} \\
modules=loop,squashfs,sd-mod,usb-storage intel_iommu=on iommu=pt initrd=initramfs-${{arch}} console=tty0 console=ttyS1,115200 && goto download_initrd {retry_kernel}

{tail}",
        arch = hook_arch(m),
        url = url.trim_end_matches('/'),
        kernel = kernel,
        initrd = initrd,
        retries = h.ipxe_script_retries,
        delay = h.ipxe_script_retry_delay,
        syslog = s.syslog_host,
        tink = h.tink_server.as_deref().unwrap_or(""),
        tls = h.tink_server_tls,
        insecure = h.tink_server_insecure_tls,
        retry_kernel = hook_retry("kernel"),
        tail = hook_tail("${initrd}"),
    ))
}

/// Smee's static script for machines with no record (auto-proxy mode), byte for byte as Smee
/// renders its template: iPXE fills in `${mac}` and `${buildarch}`; the extra kernel arguments
/// are split on single spaces and appear twice, as in Smee. Smee leaves the retry settings at
/// 0 here; netbootd uses `--ipxe-script-retries` and `--ipxe-script-retry-delay` (their
/// defaults differ from 0 only in the delay).
fn static_hook_script(osie_url: &str, s: &ScriptSettings) -> Result<String, NoScript> {
    let h = s.http;
    safe("osie-url", osie_url, true)?;
    safe("extra-kernel-args", &h.extra_kernel_args, false)?;
    safe("dhcp-syslog-ip", s.syslog_host, true)?;
    let tink = h.tink_server.as_deref().unwrap_or("");
    let extra: String = h
        .extra_kernel_args
        .split(' ')
        .map(|a| format!(" {a}"))
        .collect();
    Ok(format!(
        "#!ipxe

echo Loading the static Tinkerbell iPXE script...

set arch ${{buildarch}}
# Tinkerbell only supports 64 bit archectures.
# The build architecture does not necessarily represent the architecture of the machine on which iPXE is running.
# https://ipxe.org/cfg/buildarch
iseq ${{arch}} i386 && set arch x86_64 ||
iseq ${{arch}} arm32 && set arch aarch64 ||
iseq ${{arch}} arm64 && set arch aarch64 ||
set download-url {osie_url}
set retries:int32 {retries}
set retry_delay:int32 {delay}

set worker_id ${{mac}}
set grpc_authority {tink}
set syslog_host {syslog}
set tinkerbell_tls {tls}

echo worker_id=${{mac}}
echo grpc_authority={tink}
echo syslog_host={syslog}
echo tinkerbell_tls={tls}

set idx:int32 0
:retry_kernel
kernel ${{download-url}}/vmlinuz-${{arch}} \\
syslog_host=${{syslog_host}} grpc_authority=${{grpc_authority}} tinkerbell_tls=${{tinkerbell_tls}} worker_id=${{worker_id}} hw_addr=${{mac}} \\
console=tty1 console=tty2 console=ttyAMA0,115200 console=ttyAMA1,115200 console=ttyS0,115200 console=ttyS1,115200{extra} \\
intel_iommu=on iommu=pt{extra} initrd=initramfs-${{arch}} && goto download_initrd {retry_kernel}

{tail}",
        retries = h.ipxe_script_retries,
        delay = h.ipxe_script_retry_delay,
        syslog = s.syslog_host,
        tls = h.tink_server_tls,
        retry_kernel = hook_retry("kernel"),
        tail = hook_tail("initramfs-${arch}"),
    ))
}
