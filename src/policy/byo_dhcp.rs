//! Bring your own DHCP: what a site's own DHCP server must answer so that machines boot from
//! netbootd while netbootd's DHCP is off (`netbootd byo-dhcp dnsmasq|dnsmasq-proxy|kea|isc`).
//! It is the answer netbootd's reservation mode gives (the reservation, then the two-step
//! boot: firmware gets the iPXE binary for its architecture, iPXE gets the script URL),
//! written as that server's configuration. Pure: machines and DHCP settings in, text out.

use std::net::Ipv4Addr;

use super::dhcp::{script_url, IPXE_USER_CLASSES};
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

/// A reservation's options besides its address and name, in the order written.
type HostOptions = Vec<(Opt, Vec<String>)>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Opt {
    Mask,
    Router,
    Dns,
    Ntp,
    Domain,
}

impl Opt {
    /// Its name in dnsmasq (`option:NAME`), and in Kea and ISC dhcpd (the same).
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Opt::Mask => ("netmask", "subnet-mask"),
            Opt::Router => ("router", "routers"),
            Opt::Dns => ("dns-server", "domain-name-servers"),
            Opt::Ntp => ("ntp-server", "ntp-servers"),
            Opt::Domain => ("domain-name", "domain-name"),
        }
    }
}

fn host_options(m: &Machine) -> HostOptions {
    let one = |ip: Option<Ipv4Addr>| ip.map(|ip| vec![ip.to_string()]);
    let list =
        |ips: &[Ipv4Addr]| (!ips.is_empty()).then(|| ips.iter().map(Ipv4Addr::to_string).collect());
    [
        (Opt::Mask, one(m.subnet_mask)),
        (Opt::Router, one(m.default_gateway)),
        (Opt::Dns, list(&m.name_servers)),
        (Opt::Ntp, list(&m.ntp_servers)),
        (Opt::Domain, m.domain_name.clone().map(|d| vec![d])),
    ]
    .into_iter()
    .filter_map(|(opt, values)| Some((opt, values?)))
    .collect()
}

/// One boot rule: for the shared rules (`group` None) or a group with its own script or
/// binary; for iPXE (`arch` None) or for firmware of one architecture.
struct Rule {
    group: Option<usize>,
    arch: Option<u16>,
    file: String,
}

impl Rule {
    /// UEFI HTTP boot: the file is a URL, and option 60 `HTTPClient` is echoed.
    fn http(&self) -> bool {
        self.arch.is_some_and(|a| HTTP_BOOT_ARCHES.contains(&a))
    }

    /// The dnsmasq tag (or Kea class prefix) of the machines it is for.
    fn tag(&self) -> String {
        self.group
            .map_or_else(|| "netbootd-boot".to_string(), group_tag)
    }
}

struct Host<'a> {
    m: &'a Machine,
    /// Hosts with the same options and boot share a group (a dnsmasq tag, an ISC group):
    /// its options and boot are `Plan::groups[group]`.
    group: usize,
}

/// The machines and rules, before any server's syntax.
struct Plan<'a> {
    cfg: &'a Dhcp,
    /// netbootd's TFTP address, the next-server of every boot rule.
    tftp: String,
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
        let mut plan = Plan {
            cfg,
            tftp: cfg.tftp_ip.to_string(),
            script,
            hosts: Vec::new(),
            groups: Vec::new(),
            left_out: Vec::new(),
        };
        // In the inventory's order (the file's): the output follows the operator's layout.
        for &m in machines {
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
            let key = (host_options(m), boot);
            let group = match plan.groups.iter().position(|g| *g == key) {
                Some(i) => i,
                None => {
                    plan.groups.push(key);
                    plan.groups.len() - 1
                }
            };
            plan.hosts.push(Host { m, group });
        }
        plan
    }

    /// How `h` boots: its group's boot.
    fn boot(&self, h: &Host) -> &HostBoot {
        &self.groups[h.group].1
    }

    /// The firmware's boot file for `arch`: a TFTP name, or for HTTP boot an http:// URL.
    fn firmware_file(&self, arch: u16, binary: &str) -> String {
        if HTTP_BOOT_ARCHES.contains(&arch) {
            let mut url = self.cfg.ipxe_binary_base.to_string();
            url.truncate(url.trim_end_matches('/').len());
            url.push('/');
            url.push_str(binary);
            url
        } else {
            binary.to_string()
        }
    }

    /// Every boot rule: iPXE's, then firmware's per architecture (`--dhcp-ipxe-binaries`, shim
    /// for `--dhcp-loaders`' GRUB architectures, or the group's own binary), for the shared
    /// rules and for each group with its own.
    fn rules(&self) -> Vec<Rule> {
        let mut rules = Vec::new();
        let mut add = |group: Option<usize>, script: &str, binary: Option<&str>| {
            rules.push(Rule {
                group,
                arch: None,
                file: script.to_string(),
            });
            for (arch, file) in &self.cfg.ipxe_binaries {
                // `--dhcp-loaders`: shim for the architectures given GRUB.
                let file = match crate::value::grub_binary(*arch) {
                    Some(shim) if self.cfg.grub_arches.contains(arch) => shim,
                    _ => file,
                };
                rules.push(Rule {
                    group,
                    arch: Some(*arch),
                    file: self.firmware_file(*arch, binary.unwrap_or(file)),
                });
            }
        };
        if self.groups.iter().any(|(_, b)| *b == HostBoot::Shared) {
            add(None, &self.script, None);
        }
        for (g, (_, boot)) in self.groups.iter().enumerate() {
            if let HostBoot::Own { script, binary } = boot {
                add(Some(g), script, binary.as_deref());
            }
        }
        rules
    }

    /// The comment every output starts with (`#` is a comment in all four syntaxes).
    fn header(&self, server: Server, how: &str) -> String {
        let netboot = self.hosts.iter().filter(|h| *self.boot(h) != HostBoot::Off);
        let mut out = String::new();
        put(
            &mut out,
            "# netbootd byo-dhcp {}: {} machines ({} netboot) from netbootd's inventory",
            &[
                server.name(),
                &self.hosts.len().to_string(),
                &netboot.count().to_string(),
            ],
        );
        if !self.left_out.is_empty() {
            put(
                &mut out,
                ", {} left out",
                &[&self.left_out.len().to_string()],
            );
        }
        put(
            &mut out,
            ".\n# Run netbootd with --dhcp-mode off: it serves TFTP on {} and the iPXE script\n\
             # {} (iPXE fills in ${mac}).\n\
             # Firmware gets the iPXE binary for its architecture (option 93; UEFI HTTP boot\n\
             # an http:// URL, and option 60 HTTPClient echoed);\n\
             # iPXE, known by its user class (option 77: iPXE or Tinkerbell) or its own options\n\
             # (175), gets the script.\n\
             # Generated: run `netbootd byo-dhcp {}` again when the inventory changes.\n{}",
            &[&self.tftp, &self.script, server.name(), how],
        );
        for (mac, why) in &self.left_out {
            put(&mut out, "# left out: {}: {}\n", &[&mac.to_string(), why]);
        }
        out
    }
}

/// Appends `template` with each `{}` replaced by the next of `values` (one code path for
/// every line written: the output is all text, and the binary's size counts on routers).
fn put(out: &mut String, template: &str, values: &[&str]) {
    let mut parts = template.split("{}");
    out.push_str(parts.next().unwrap_or(""));
    for (part, value) in parts.zip(values.iter().chain(std::iter::repeat(&""))) {
        out.push_str(value);
        out.push_str(part);
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

fn network(ip: Ipv4Addr, mask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & u32::from(mask))
}

/// dnsmasq's name of a client system type (option 93) in `pxe-service`; others by number.
fn dnsmasq_csa(arch: u16) -> String {
    match arch {
        0 => "x86PC",
        6 => "IA32_EFI",
        7 => "X86-64_EFI",
        9 => "BC_EFI",
        10 => "ARM32_EFI",
        11 => "ARM64_EFI",
        _ => return arch.to_string(),
    }
    .into()
}

fn dnsmasq(plan: &Plan, proxy: bool) -> String {
    let (server, how) = if proxy {
        (
            Server::DnsmasqProxy,
            "# Add to dnsmasq's configuration beside a router that hands out the addresses: dnsmasq\n\
             # answers as ProxyDHCP (and on UDP 4011) for netbooting machines only; no addresses.\n",
        )
    } else {
        (
            Server::Dnsmasq,
            "# Add to dnsmasq's configuration: conf-file=/etc/dnsmasq.d/netbootd.conf\n",
        )
    };
    let mut out = plan.header(server, how);
    let tftp: &str = &plan.tftp;
    if proxy {
        put(
            &mut out,
            "\n# ProxyDHCP on netbootd's network (one line per further network).\ndhcp-range={},proxy\n",
            &[tftp],
        );
    } else {
        out.push_str(
            "\n# The reservations' networks: a static range answers reserved machines only\n\
             # (a dhcp-range of your own for the same network does as well).\n",
        );
        let mut networks: Vec<(Ipv4Addr, Ipv4Addr)> = Vec::new();
        for h in &plan.hosts {
            if let (Some(ip), Some(mask)) = (h.m.ip_address, h.m.subnet_mask) {
                let net = (network(ip, mask), mask);
                if !networks.contains(&net) {
                    networks.push(net);
                    put(
                        &mut out,
                        "dhcp-range={},static,{}\n",
                        &[&net.0.to_string(), &mask.to_string()],
                    );
                }
            }
        }
    }
    out.push_str("\n# iPXE says so in its user class: it gets the script, not the binary again.\n");
    for class in IPXE_USER_CLASSES {
        put(&mut out, "dhcp-userclass=set:netbootd-ipxe,{}\n", &[class]);
    }
    out.push_str("dhcp-match=set:netbootd-ipxe,175\n");
    out.push_str("# The firmware's architecture (option 93).\n");
    for (arch, _) in &plan.cfg.ipxe_binaries {
        let arch = arch.to_string();
        put(
            &mut out,
            "dhcp-match=set:netbootd-arch-{},option:client-arch,{}\n",
            &[&arch, &arch],
        );
    }
    out.push_str(
        "\n# The machines: one tag per group of machines with the same options and boot.\n",
    );
    for h in &plan.hosts {
        if proxy && *plan.boot(h) == HostBoot::Off {
            continue;
        }
        put(
            &mut out,
            "dhcp-host={},set:netbootd-{}",
            &[&h.m.mac.to_string(), &(h.group + 1).to_string()],
        );
        if !proxy {
            if let Some(ip) = h.m.ip_address {
                put(&mut out, ",{}", &[&ip.to_string()]);
            }
            if let Some(name) = &h.m.hostname {
                put(&mut out, ",{}", &[name]);
            }
            put(&mut out, ",{}", &[&h.m.lease_time.to_string()]);
        }
        out.push('\n');
    }
    for (g, (options, boot)) in plan.groups.iter().enumerate() {
        let tag = group_tag(g);
        for (opt, values) in options.iter().filter(|_| !proxy) {
            put(
                &mut out,
                "dhcp-option=tag:{},option:{},{}\n",
                &[&tag, opt.names().0, &values.join(",")],
            );
        }
        if *boot == HostBoot::Shared {
            put(&mut out, "tag-if=set:netbootd-boot,tag:{}\n", &[&tag]);
        }
        if proxy && *boot != HostBoot::Off {
            put(&mut out, "tag-if=set:netbootd-known,tag:{}\n", &[&tag]);
        }
    }
    if proxy {
        out.push_str(
            "# Only the inventory's netbooting machines get ProxyDHCP answers.\n\
             dhcp-ignore=tag:!netbootd-known\n",
        );
    }
    out.push_str("\n# Boot: iPXE gets the script, firmware iPXE (from netbootd's TFTP).\n");
    let rules = plan.rules();
    for r in &rules {
        let tag = r.tag();
        let file: &str = &r.file;
        match (proxy, r.arch) {
            (false, None) => put(
                &mut out,
                "dhcp-boot=tag:{},tag:netbootd-ipxe,{},,{}\n",
                &[&tag, file, tftp],
            ),
            (false, Some(arch)) => {
                let arch = arch.to_string();
                put(
                    &mut out,
                    "dhcp-boot=tag:{},tag:!netbootd-ipxe,tag:netbootd-arch-{},{},,{}\n",
                    &[&tag, &arch, file, tftp],
                );
                if r.http() {
                    put(
                        &mut out,
                        "dhcp-option-force=tag:{},tag:!netbootd-ipxe,tag:netbootd-arch-{},60,HTTPClient\n",
                        &[&tag, &arch],
                    );
                }
            }
            // HTTP boot firmware does not use ProxyDHCP.
            (true, _) if r.http() => {}
            (true, None) => {
                // iPXE, whatever architecture it runs on (the non-HTTP ones of the table).
                for firmware in rules
                    .iter()
                    .filter(|f| f.group == r.group && f.arch.is_some() && !f.http())
                {
                    put(
                        &mut out,
                        "pxe-service=tag:{},tag:netbootd-ipxe,{},\"netbootd script\",{}\n",
                        &[&tag, &dnsmasq_csa(firmware.arch.unwrap_or(0)), file],
                    );
                }
            }
            (true, Some(arch)) => put(
                &mut out,
                "pxe-service=tag:{},tag:!netbootd-ipxe,{},\"netbootd iPXE\",{},{}\n",
                &[&tag, &dnsmasq_csa(arch), file, tftp],
            ),
        }
    }
    out
}

/// The dnsmasq tag, Kea class or ISC group name of group `g`.
fn group_tag(g: usize) -> String {
    let mut tag = String::from("netbootd-");
    tag.push_str(&(g + 1).to_string());
    tag
}

fn quoted(s: &str) -> String {
    let mut out = String::new();
    json::string_into(&mut out, s);
    out
}

fn kea(plan: &Plan) -> String {
    let how = "# Members of Kea's \"Dhcp4\" map, ending with a comma: put them in their own file and\n\
               # include it first, \"Dhcp4\": { <?include \"/etc/kea/netbootd-kea.json\"?> \"interfaces-config\": ...\n\
               # The reservations are global (reservations-global); set no second\n\
               # \"client-classes\" or \"reservations\" list beside them. Lease times: your\n\
               # subnets' valid-lifetime (Kea reservations carry none).\n";
    let mut out = plan.header(Server::Kea, how);
    out.push_str(
        "\"reservations-global\": true,\n\"reservations-in-subnet\": true,\n\"client-classes\": [\n",
    );
    let mut ipxe = String::from("(");
    for class in IPXE_USER_CLASSES {
        let len = class.len().to_string();
        put(
            &mut ipxe,
            "substring(option[77].hex,0,{}) == '{}' or ",
            &[&len, class],
        );
    }
    ipxe.push_str("option[175].exists)");
    let ipxe: &str = &ipxe;
    // Machines outside the shared rules (no netboot, their own script or binary): a class
    // per group, by MAC; the shared rules are for the other reserved (KNOWN) machines.
    let mut classes: Vec<String> = Vec::new();
    let mut shared = String::from("member('KNOWN')");
    for (g, (_, boot)) in plan.groups.iter().enumerate() {
        if *boot == HostBoot::Shared {
            continue;
        }
        let macs: Vec<String> = plan
            .hosts
            .iter()
            .filter(|h| h.group == g)
            .map(|h| {
                let mut test = String::from("pkt4.mac == 0x");
                test.push_str(&h.m.mac.to_string().replace(':', ""));
                test
            })
            .collect();
        let mut class = String::new();
        put(
            &mut class,
            "{ \"name\": \"{}\", \"test\": {} }",
            &[&group_tag(g), &quoted(&macs.join(" or "))],
        );
        classes.push(class);
        put(&mut shared, " and not member('{}')", &[&group_tag(g)]);
    }
    for r in plan.rules() {
        let (name, who) = match r.group {
            None => ("netbootd".to_string(), shared.clone()),
            Some(_) => {
                let tag = r.tag();
                let mut who = String::new();
                put(&mut who, "member('{}')", &[&tag]);
                (tag, who)
            }
        };
        let mut name_test = (String::new(), String::new());
        match r.arch {
            None => {
                put(&mut name_test.0, "{}-ipxe", &[&name]);
                put(&mut name_test.1, "{} and {}", &[&who, ipxe]);
            }
            Some(arch) => {
                let hex = format!("{arch:04x}");
                put(&mut name_test.0, "{}-arch-{}", &[&name, &arch.to_string()]);
                put(
                    &mut name_test.1,
                    "{} and not {} and substring(option[93].hex,0,2) == 0x{}",
                    &[&who, ipxe, &hex],
                );
            }
        }
        let mut class = String::new();
        put(
            &mut class,
            "{ \"name\": \"{}\", \"test\": {}, \"boot-file-name\": {}, \"next-server\": \"{}\"",
            &[
                &name_test.0,
                &quoted(&name_test.1),
                &quoted(&r.file),
                &plan.tftp,
            ],
        );
        if r.http() {
            class.push_str(", \"option-data\": [ { \"name\": \"vendor-class-identifier\", \"data\": \"HTTPClient\", \"always-send\": true } ]");
        }
        class.push_str(" }");
        classes.push(class);
    }
    put(
        &mut out,
        "  {}\n],\n\"reservations\": [\n",
        &[&classes.join(",\n  ")],
    );
    let reservations: Vec<String> = plan
        .hosts
        .iter()
        .map(|h| {
            let mut r = String::new();
            put(&mut r, "{ \"hw-address\": \"{}\"", &[&h.m.mac.to_string()]);
            if let Some(ip) = h.m.ip_address {
                put(&mut r, ", \"ip-address\": \"{}\"", &[&ip.to_string()]);
            }
            if let Some(name) = &h.m.hostname {
                put(&mut r, ", \"hostname\": {}", &[&quoted(name)]);
            }
            let data: Vec<String> = plan.groups[h.group]
                .0
                .iter()
                .map(|(opt, values)| {
                    let mut d = String::new();
                    put(
                        &mut d,
                        "{ \"name\": \"{}\", \"data\": {} }",
                        &[opt.names().1, &quoted(&values.join(", "))],
                    );
                    d
                })
                .collect();
            if !data.is_empty() {
                put(&mut r, ", \"option-data\": [ {} ]", &[&data.join(", ")]);
            }
            r.push_str(" }");
            r
        })
        .collect();
    if !reservations.is_empty() {
        put(&mut out, "  {}\n", &[&reservations.join(",\n  ")]);
    }
    out.push_str("],\n");
    out
}

fn isc(plan: &Plan) -> String {
    let how =
        "# Include it in dhcpd.conf after your subnet declarations (a reservation's address\n\
               # must lie in one): include \"/etc/dhcp/netbootd-isc.conf\";\n";
    let mut out = plan.header(Server::Isc, how);
    // iPXE's own options (175), by a name of ours: a site's `ipxe-encap-opts` may be there too.
    out.push_str("\noption netbootd-ipxe-options code 175 = string;\n");
    let rules = plan.rules();
    for (g, (options, boot)) in plan.groups.iter().enumerate() {
        put(&mut out, "\ngroup { # {}\n", &[&group_tag(g)]);
        for (opt, values) in options {
            let value = match opt {
                Opt::Domain => quoted(&values.join(" ")),
                _ => values.join(", "),
            };
            put(&mut out, "  option {} {};\n", &[opt.names().1, &value]);
        }
        let group = match boot {
            HostBoot::Off => None,
            HostBoot::Shared => Some(None),
            HostBoot::Own { .. } => Some(Some(g)),
        };
        if group.is_some() {
            put(&mut out, "  next-server {};\n", &[&plan.tftp]);
        }
        for r in rules.iter().filter(|r| Some(r.group) == group) {
            match r.arch {
                None => {
                    let classes: Vec<String> =
                        IPXE_USER_CLASSES.iter().map(|c| quoted(c)).collect();
                    put(
                        &mut out,
                        "  if exists netbootd-ipxe-options or (exists user-class and (option user-class = {}))",
                        &[&classes.join(" or option user-class = ")],
                    );
                }
                Some(arch) => {
                    let [hi, lo] = arch.to_be_bytes();
                    let code = format!("{hi:02x}:{lo:02x}");
                    put(&mut out, "  elsif option pxe-system-type = {}", &[&code]);
                }
            }
            put(&mut out, " {\n    filename {};\n", &[&quoted(&r.file)]);
            if r.http() {
                out.push_str("    option vendor-class-identifier \"HTTPClient\";\n");
            }
            out.push_str("  }\n");
        }
        for h in plan.hosts.iter().filter(|h| h.group == g) {
            let mac = h.m.mac.to_string();
            put(
                &mut out,
                "  host netbootd-{} { hardware ethernet {};",
                &[&mac.replace(':', "-"), &mac],
            );
            if let Some(ip) = h.m.ip_address {
                put(&mut out, " fixed-address {};", &[&ip.to_string()]);
            }
            if let Some(host) = &h.m.hostname {
                put(&mut out, " option host-name {};", &[&quoted(host)]);
            }
            let lease = h.m.lease_time.to_string();
            put(
                &mut out,
                " default-lease-time {}; max-lease-time {}; }\n",
                &[&lease, &lease],
            );
        }
        out.push_str("}\n");
    }
    out
}

#[cfg(test)]
mod tests;
