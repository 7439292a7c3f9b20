//! Bring your own DHCP: what a site's own DHCP server must answer so that machines boot from
//! netbootd while netbootd's DHCP is off (`netbootd byo-dhcp dnsmasq|dnsmasq-proxy|kea|isc`).
//! It is the answer netbootd's reservation mode gives (the reservation, then the two-step
//! boot: firmware gets the iPXE binary for its architecture, iPXE gets the script URL),
//! written as that server's configuration. Pure: machines and DHCP settings in, text out.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::dhcp::script_url;
use crate::config::Dhcp;
use crate::inventory::Machine;
use crate::wire::json;
use crate::wire::MacAddr;

/// The servers a configuration can be written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// dnsmasq handing out the addresses and the boot files.
    Dnsmasq,
    /// dnsmasq as ProxyDHCP beside another server that hands out the addresses.
    DnsmasqProxy,
    /// Kea's kea-dhcp4: members of its `Dhcp4` map, for an `<?include?>`.
    Kea,
    /// ISC dhcpd: statements for an `include` after the site's subnet declarations.
    Isc,
}

impl Server {
    pub const NAMES: &'static str = "dnsmasq, dnsmasq-proxy, kea or isc";

    pub fn parse(name: &str) -> Option<Server> {
        match name {
            "dnsmasq" => Some(Server::Dnsmasq),
            "dnsmasq-proxy" => Some(Server::DnsmasqProxy),
            "kea" => Some(Server::Kea),
            "isc" | "dhcpd" => Some(Server::Isc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Server::Dnsmasq => "dnsmasq",
            Server::DnsmasqProxy => "dnsmasq-proxy",
            Server::Kea => "kea",
            Server::Isc => "isc",
        }
    }
}

/// Client architectures (option 93) of UEFI HTTP boot firmware: they get an http:// URL of
/// the binary, with option 60 `HTTPClient` echoed; every other architecture a TFTP name.
pub const HTTP_BOOT_ARCHES: [u16; 4] = [15, 16, 18, 19];

/// What iPXE says in its user class (option 77): stock iPXE, and Tinkerbell's builds.
const IPXE_USER_CLASSES: [&str; 2] = ["iPXE", "Tinkerbell"];

/// How one machine boots.
#[derive(Clone, Debug, PartialEq)]
enum HostBoot {
    /// An address only: its record does not allow netboot.
    Off,
    /// The shared rules.
    Shared,
    /// Its own script URL (its `ipxeScriptUrl`, or a remote source's template) or binary.
    Own {
        script: String,
        binary: Option<String>,
    },
}

/// The options a reservation carries, besides its address and name.
#[derive(Clone, Debug, PartialEq)]
struct HostOptions {
    mask: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    ntp: Vec<Ipv4Addr>,
    domain: Option<String>,
}

struct Host<'a> {
    m: &'a Machine,
    boot: HostBoot,
    options: HostOptions,
    /// Hosts with the same options and boot share a group (a dnsmasq tag, an ISC group).
    group: usize,
}

/// The machines and rules, before any server's syntax.
struct Plan<'a> {
    cfg: &'a Dhcp,
    /// iPXE's script URL; iPXE fills in `${mac}` itself.
    script: String,
    hosts: Vec<Host<'a>>,
    /// The groups: (options, boot) of each.
    groups: Vec<(HostOptions, HostBoot)>,
    left_out: Vec<(MacAddr, &'static str)>,
}

/// A MAC no machine has, standing in for iPXE's `${mac}` while the URL is built.
const MAC_STAND_IN: MacAddr = MacAddr([0x02, 0x6e, 0x62, 0x79, 0x6f, 0x00]);

impl<'a> Plan<'a> {
    fn new(machines: &[&'a Machine], cfg: &'a Dhcp) -> Plan<'a> {
        let script =
            script_url(None, MAC_STAND_IN, cfg).replace(&MAC_STAND_IN.to_string(), "${mac}");
        let mut sorted: Vec<&Machine> = machines.to_vec();
        sorted.sort_by_key(|m| m.mac);
        let mut plan = Plan {
            cfg,
            script,
            hosts: Vec::new(),
            groups: Vec::new(),
            left_out: Vec::new(),
        };
        for m in sorted {
            if m.disabled {
                plan.left_out
                    .push((m.mac, "disableDhcp: netbootd would not answer it either"));
                continue;
            }
            let boot = if !m.netboots() {
                HostBoot::Off
            } else {
                let own_script = script_url(Some(m), m.mac, cfg);
                let shared = plan.script.replace("${mac}", &m.mac.to_string());
                let binary = m.netboot.ipxe_binary.clone();
                match (own_script == shared, binary) {
                    (true, None) => HostBoot::Shared,
                    // Its own binary only: the shared script URL, with iPXE's ${mac}.
                    (true, binary) => HostBoot::Own {
                        script: plan.script.clone(),
                        binary,
                    },
                    (false, binary) => HostBoot::Own {
                        script: own_script,
                        binary,
                    },
                }
            };
            let options = HostOptions {
                mask: m.subnet_mask,
                gateway: m.default_gateway,
                dns: m.name_servers.clone(),
                ntp: m.ntp_servers.clone(),
                domain: m.domain_name.clone(),
            };
            let key = (options.clone(), boot.clone());
            let group = match plan.groups.iter().position(|g| *g == key) {
                Some(i) => i,
                None => {
                    plan.groups.push(key);
                    plan.groups.len() - 1
                }
            };
            plan.hosts.push(Host {
                m,
                boot,
                options,
                group,
            });
        }
        plan
    }

    /// The firmware's boot file for `arch`: a TFTP name, or for HTTP boot an http:// URL.
    fn firmware_file(&self, arch: u16, binary: &str) -> String {
        if HTTP_BOOT_ARCHES.contains(&arch) {
            let base = self.cfg.ipxe_binary_base.to_string();
            format!("{}/{binary}", base.trim_end_matches('/'))
        } else {
            binary.to_string()
        }
    }

    /// (arch, file) for every architecture in `--dhcp-ipxe-binaries`, with `binary` instead
    /// of the table's when the machine names its own.
    fn firmware_files(&self, binary: Option<&str>) -> Vec<(u16, String)> {
        self.cfg
            .ipxe_binaries
            .iter()
            .map(|(arch, file)| (*arch, self.firmware_file(*arch, binary.unwrap_or(file))))
            .collect()
    }

    fn netboot_count(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.boot != HostBoot::Off)
            .count()
    }

    /// The comment every output starts with (`#` is a comment in all four syntaxes).
    fn header(&self, server: Server, how: &str) -> String {
        let mut out = format!(
            "# netbootd byo-dhcp {}: {} machines ({} netboot) from netbootd's inventory",
            server.name(),
            self.hosts.len(),
            self.netboot_count()
        );
        if !self.left_out.is_empty() {
            let _ = write!(out, ", {} left out", self.left_out.len());
        }
        let _ = write!(
            out,
            ".\n# Run netbootd with --dhcp-mode off: it serves TFTP on {} and the iPXE script\n\
             # {} (iPXE fills in ${{mac}}).\n\
             # Firmware gets the iPXE binary for its architecture (option 93; UEFI HTTP boot\n\
             # an http:// URL, and option 60 HTTPClient echoed);\n\
             # iPXE, known by its user class (option 77: iPXE or Tinkerbell), gets the script.\n\
             # Generated: run `netbootd byo-dhcp {}` again when the inventory changes.\n{how}",
            self.cfg.tftp_ip,
            self.script,
            server.name()
        );
        for (mac, why) in &self.left_out {
            let _ = writeln!(out, "# left out: {mac}: {why}");
        }
        out
    }
}

/// The configuration for `server` that gives `machines` what netbootd's DHCP would.
pub fn generate(server: Server, machines: &[&Machine], cfg: &Dhcp) -> String {
    let plan = Plan::new(machines, cfg);
    match server {
        Server::Dnsmasq => dnsmasq(&plan, false),
        Server::DnsmasqProxy => dnsmasq(&plan, true),
        Server::Kea => kea(&plan),
        Server::Isc => isc(&plan),
    }
}

fn join(ips: &[Ipv4Addr], sep: &str) -> String {
    ips.iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

fn network(ip: Ipv4Addr, mask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & u32::from(mask))
}

/// dnsmasq's name of a client system type (option 93) in `pxe-service`; others by number.
fn dnsmasq_csa(arch: u16) -> String {
    match arch {
        0 => "x86PC".into(),
        6 => "IA32_EFI".into(),
        7 => "X86-64_EFI".into(),
        9 => "BC_EFI".into(),
        10 => "ARM32_EFI".into(),
        11 => "ARM64_EFI".into(),
        n => n.to_string(),
    }
}

fn dnsmasq(plan: &Plan, proxy: bool) -> String {
    let server = if proxy {
        Server::DnsmasqProxy
    } else {
        Server::Dnsmasq
    };
    let how = if proxy {
        "# Add to dnsmasq's configuration beside a router that hands out the addresses: dnsmasq\n\
         # answers as ProxyDHCP (and on UDP 4011) for netbooting machines only; no addresses.\n"
    } else {
        "# Add to dnsmasq's configuration: conf-file=/etc/dnsmasq.d/netbootd.conf\n"
    };
    let mut out = plan.header(server, how);
    let tftp = plan.cfg.tftp_ip;
    if proxy {
        let _ = writeln!(
            out,
            "\n# ProxyDHCP on netbootd's network (one line per further network).\ndhcp-range={tftp},proxy"
        );
    } else {
        let mut networks: Vec<(Ipv4Addr, Ipv4Addr)> = plan
            .hosts
            .iter()
            .filter_map(|h| Some((network(h.m.ip_address?, h.m.subnet_mask?), h.m.subnet_mask?)))
            .collect();
        networks.sort();
        networks.dedup();
        if !networks.is_empty() {
            out.push_str(
                "\n# The reservations' networks: a static range answers reserved machines only\n\
                 # (a dhcp-range of your own for the same network does as well).\n",
            );
        }
        for (net, mask) in networks {
            let _ = writeln!(out, "dhcp-range={net},static,{mask}");
        }
    }
    out.push_str("\n# iPXE says so in its user class: it gets the script, not the binary again.\n");
    for class in IPXE_USER_CLASSES {
        let _ = writeln!(out, "dhcp-userclass=set:netbootd-ipxe,{class}");
    }
    out.push_str("# The firmware's architecture (option 93).\n");
    for (arch, _) in &plan.cfg.ipxe_binaries {
        if proxy && HTTP_BOOT_ARCHES.contains(arch) {
            continue;
        }
        let _ = writeln!(
            out,
            "dhcp-match=set:netbootd-arch-{arch},option:client-arch,{arch}"
        );
    }
    out.push_str(
        "\n# The machines: one tag per group of machines with the same options and boot.\n",
    );
    for h in &plan.hosts {
        if proxy && h.boot == HostBoot::Off {
            continue;
        }
        let tag = format!("netbootd-{}", h.group + 1);
        let mut line = format!("dhcp-host={},set:{tag}", h.m.mac);
        if !proxy {
            if let Some(ip) = h.m.ip_address {
                let _ = write!(line, ",{ip}");
            }
            if let Some(name) = &h.m.hostname {
                let _ = write!(line, ",{name}");
            }
            let _ = write!(line, ",{}", h.m.lease_time);
        }
        let _ = writeln!(out, "{line}");
    }
    if proxy {
        out.push_str("# Only the inventory's netbooting machines get ProxyDHCP answers.\n");
    }
    for (i, (options, boot)) in plan.groups.iter().enumerate() {
        let tag = format!("netbootd-{}", i + 1);
        if !proxy {
            let o = options;
            let mut lines = Vec::new();
            if let Some(mask) = o.mask {
                lines.push(format!("option:netmask,{mask}"));
            }
            if let Some(gw) = o.gateway {
                lines.push(format!("option:router,{gw}"));
            }
            if !o.dns.is_empty() {
                lines.push(format!("option:dns-server,{}", join(&o.dns, ",")));
            }
            if !o.ntp.is_empty() {
                lines.push(format!("option:ntp-server,{}", join(&o.ntp, ",")));
            }
            if let Some(domain) = &o.domain {
                lines.push(format!("option:domain-name,{domain}"));
            }
            for l in lines {
                let _ = writeln!(out, "dhcp-option=tag:{tag},{l}");
            }
        }
        match boot {
            HostBoot::Shared => {
                let _ = writeln!(out, "tag-if=set:netbootd-boot,tag:{tag}");
            }
            HostBoot::Off | HostBoot::Own { .. } => {}
        }
        if proxy && *boot != HostBoot::Off {
            let _ = writeln!(out, "tag-if=set:netbootd-known,tag:{tag}");
        }
    }
    if proxy {
        out.push_str("dhcp-ignore=tag:!netbootd-known\n");
    }
    let boot_rules = |out: &mut String, tag: &str, script: &str, binary: Option<&str>| {
        for (arch, file) in plan.firmware_files(binary) {
            let http = HTTP_BOOT_ARCHES.contains(&arch);
            if proxy {
                if http {
                    continue;
                }
                let csa = dnsmasq_csa(arch);
                let _ = writeln!(
                    out,
                    "pxe-service=tag:{tag},tag:netbootd-ipxe,{csa},\"netbootd script\",{script}\n\
                     pxe-service=tag:{tag},tag:!netbootd-ipxe,{csa},\"netbootd iPXE\",{file},{tftp}"
                );
            } else if http {
                let _ = writeln!(
                    out,
                    "dhcp-boot=tag:{tag},tag:!netbootd-ipxe,tag:netbootd-arch-{arch},{file},,{tftp}\n\
                     dhcp-option-force=tag:{tag},tag:!netbootd-ipxe,tag:netbootd-arch-{arch},60,HTTPClient"
                );
            } else {
                let _ = writeln!(
                    out,
                    "dhcp-boot=tag:{tag},tag:!netbootd-ipxe,tag:netbootd-arch-{arch},{file},,{tftp}"
                );
            }
        }
        if !proxy {
            let _ = writeln!(
                out,
                "dhcp-boot=tag:{tag},tag:netbootd-ipxe,{script},,{tftp}"
            );
        }
    };
    out.push_str("\n# Boot: firmware gets iPXE (from netbootd's TFTP), iPXE gets the script.\n");
    if plan.groups.iter().any(|(_, b)| *b == HostBoot::Shared) {
        boot_rules(&mut out, "netbootd-boot", &plan.script, None);
    }
    for (i, (_, boot)) in plan.groups.iter().enumerate() {
        if let HostBoot::Own { script, binary } = boot {
            let _ = writeln!(out, "# group netbootd-{}: its own script or binary", i + 1);
            boot_rules(
                &mut out,
                &format!("netbootd-{}", i + 1),
                script,
                binary.as_deref(),
            );
        }
    }
    out
}

fn quoted(s: &str) -> String {
    let mut out = String::new();
    json::string_into(&mut out, s);
    out
}

/// Kea's test that the client is iPXE.
fn kea_is_ipxe() -> String {
    let tests: Vec<String> = IPXE_USER_CLASSES
        .iter()
        .map(|c| format!("substring(option[77].hex,0,{}) == '{c}'", c.len()))
        .collect();
    format!("({})", tests.join(" or "))
}

fn kea_mac(mac: MacAddr) -> String {
    let hex: String = mac.0.iter().map(|b| format!("{b:02x}")).collect();
    format!("pkt4.mac == 0x{hex}")
}

fn kea(plan: &Plan) -> String {
    let how = "# Members of Kea's \"Dhcp4\" map, ending with a comma: put them in their own file and\n\
               # include it first, \"Dhcp4\": { <?include \"/etc/kea/netbootd-kea.json\"?> \"interfaces-config\": ...\n\
               # The reservations are global (reservations-global); set no second\n\
               # \"client-classes\" or \"reservations\" list beside them. Lease times: your\n\
               # subnets' valid-lifetime (Kea reservations carry none).\n";
    let mut out = plan.header(Server::Kea, how);
    let tftp = plan.cfg.tftp_ip;
    let ipxe = kea_is_ipxe();
    let mut classes: Vec<String> = Vec::new();
    // Machines outside the shared rules: those not allowed to netboot, and those with their
    // own script or binary (each group a class of its own, by MAC).
    let own_groups: Vec<usize> = (0..plan.groups.len())
        .filter(|&g| !matches!(plan.groups[g].1, HostBoot::Shared))
        .collect();
    for &g in &own_groups {
        let macs: Vec<String> = plan
            .hosts
            .iter()
            .filter(|h| h.group == g)
            .map(|h| kea_mac(h.m.mac))
            .collect();
        classes.push(format!(
            "{{ \"name\": \"netbootd-{}\", \"test\": {} }}",
            g + 1,
            quoted(&macs.join(" or "))
        ));
    }
    let not_own: String = own_groups
        .iter()
        .map(|g| format!(" and not member('netbootd-{}')", g + 1))
        .collect();
    let rules = |classes: &mut Vec<String>, name: &str, who: &str, script: &str, binary| {
        classes.push(format!(
            "{{ \"name\": \"{name}-ipxe\", \"test\": {}, \"boot-file-name\": {}, \"next-server\": \"{tftp}\" }}",
            quoted(&format!("{who} and {ipxe}")),
            quoted(script)
        ));
        for (arch, file) in plan.firmware_files(binary) {
            let test = quoted(&format!(
                "{who} and not {ipxe} and substring(option[93].hex,0,2) == 0x{arch:04x}"
            ));
            let mut extra = format!(", \"next-server\": \"{tftp}\"");
            if HTTP_BOOT_ARCHES.contains(&arch) {
                extra.push_str(", \"option-data\": [ { \"name\": \"vendor-class-identifier\", \"data\": \"HTTPClient\", \"always-send\": true } ]");
            }
            classes.push(format!(
                "{{ \"name\": \"{name}-arch-{arch}\", \"test\": {test}, \"boot-file-name\": {}{extra} }}",
                quoted(&file)
            ));
        }
    };
    if plan.groups.iter().any(|(_, b)| *b == HostBoot::Shared) {
        // KNOWN: a reservation matched; netbootd's reservations are the ones below.
        let who = format!("member('KNOWN'){not_own}");
        rules(&mut classes, "netbootd", &who, &plan.script, None);
    }
    for &g in &own_groups {
        if let HostBoot::Own { script, binary } = &plan.groups[g].1 {
            let name = format!("netbootd-{}", g + 1);
            let who = format!("member('{name}')");
            rules(&mut classes, &name, &who, script, binary.as_deref());
        }
    }
    out.push_str("\"reservations-global\": true,\n\"reservations-in-subnet\": true,\n");
    out.push_str("\"client-classes\": [\n");
    let _ = writeln!(out, "  {}", classes.join(",\n  "));
    out.push_str("],\n\"reservations\": [\n");
    let reservations: Vec<String> = plan
        .hosts
        .iter()
        .map(|h| {
            let mut r = format!("{{ \"hw-address\": \"{}\"", h.m.mac);
            if let Some(ip) = h.m.ip_address {
                let _ = write!(r, ", \"ip-address\": \"{ip}\"");
            }
            if let Some(name) = &h.m.hostname {
                let _ = write!(r, ", \"hostname\": {}", quoted(name));
            }
            let o = &h.options;
            let mut data = Vec::new();
            let mut option = |name: &str, value: String| {
                data.push(format!(
                    "{{ \"name\": \"{name}\", \"data\": {} }}",
                    quoted(&value)
                ));
            };
            if let Some(mask) = o.mask {
                option("subnet-mask", mask.to_string());
            }
            if let Some(gw) = o.gateway {
                option("routers", gw.to_string());
            }
            if !o.dns.is_empty() {
                option("domain-name-servers", join(&o.dns, ", "));
            }
            if !o.ntp.is_empty() {
                option("ntp-servers", join(&o.ntp, ", "));
            }
            if let Some(domain) = &o.domain {
                option("domain-name", domain.clone());
            }
            if !data.is_empty() {
                let _ = write!(r, ", \"option-data\": [ {} ]", data.join(", "));
            }
            r.push_str(" }");
            r
        })
        .collect();
    if !reservations.is_empty() {
        let _ = writeln!(out, "  {}", reservations.join(",\n  "));
    }
    out.push_str("],\n");
    out
}

fn isc(plan: &Plan) -> String {
    let how =
        "# Include it in dhcpd.conf after your subnet declarations (a reservation's address\n\
               # must lie in one): include \"/etc/dhcp/netbootd-isc.conf\";\n";
    let mut out = plan.header(Server::Isc, how);
    let tftp = plan.cfg.tftp_ip;
    let is_ipxe: Vec<String> = IPXE_USER_CLASSES
        .iter()
        .map(|c| format!("option user-class = \"{c}\""))
        .collect();
    for (g, (options, boot)) in plan.groups.iter().enumerate() {
        let _ = writeln!(out, "\ngroup {{ # netbootd-{}", g + 1);
        let o = options;
        if let Some(mask) = o.mask {
            let _ = writeln!(out, "  option subnet-mask {mask};");
        }
        if let Some(gw) = o.gateway {
            let _ = writeln!(out, "  option routers {gw};");
        }
        if !o.dns.is_empty() {
            let _ = writeln!(out, "  option domain-name-servers {};", join(&o.dns, ", "));
        }
        if !o.ntp.is_empty() {
            let _ = writeln!(out, "  option ntp-servers {};", join(&o.ntp, ", "));
        }
        if let Some(domain) = &o.domain {
            let _ = writeln!(out, "  option domain-name {};", quoted(domain));
        }
        let (script, binary) = match boot {
            HostBoot::Off => (None, None),
            HostBoot::Shared => (Some(plan.script.as_str()), None),
            HostBoot::Own { script, binary } => (Some(script.as_str()), binary.as_deref()),
        };
        if let Some(script) = script {
            let _ = writeln!(
                out,
                "  next-server {tftp};\n  if exists user-class and ({}) {{\n    filename {};\n  }}",
                is_ipxe.join(" or "),
                quoted(script)
            );
            for (arch, file) in plan.firmware_files(binary) {
                let _ = writeln!(
                    out,
                    "  elsif option pxe-system-type = {:02x}:{:02x} {{\n    filename {};",
                    arch >> 8,
                    arch & 0xff,
                    quoted(&file)
                );
                if HTTP_BOOT_ARCHES.contains(&arch) {
                    out.push_str("    option vendor-class-identifier \"HTTPClient\";\n");
                }
                out.push_str("  }\n");
            }
        }
        for h in plan.hosts.iter().filter(|h| h.group == g) {
            let name = h.m.mac.to_string().replace(':', "-");
            let _ = write!(
                out,
                "  host netbootd-{name} {{ hardware ethernet {};",
                h.m.mac
            );
            if let Some(ip) = h.m.ip_address {
                let _ = write!(out, " fixed-address {ip};");
            }
            if let Some(host) = &h.m.hostname {
                let _ = write!(out, " option host-name {};", quoted(host));
            }
            let _ = writeln!(
                out,
                " default-lease-time {0}; max-lease-time {0}; }}",
                h.m.lease_time
            );
        }
        out.push_str("}\n");
    }
    out
}

#[cfg(test)]
mod tests;
