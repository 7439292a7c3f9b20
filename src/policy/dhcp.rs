//! DHCP decisions: a parsed request, where it arrived, the inventory and the DHCP config go
//! in; a reply and its destination, or the reason to stay silent, come out.
//!
//! - `reservation`: known, enabled MACs with an address get OFFER/ACK with their options;
//!   a REQUEST for another address is NAKed, one naming another server is ignored.
//! - `proxy`: PXE clients with a record that allows netboot get boot information only
//!   (yiaddr 0) on port 67, and the boot file on port 4011. `auto-proxy`: any PXE client.
//! - Boot information: firmware gets the iPXE binary for its architecture, iPXE (user class
//!   `iPXE`/`Tinkerbell`, or option 175) the script URL, UEFI HTTP boot an http:// URL.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::pools::PoolSettings;
use crate::config::{Dhcp, DhcpMode};
use crate::inventory::{Inventory, Loader, Machine, Netboot};
use crate::policy::pool::{Ask, AskKind, ClientKey, Decision, Quiet};
use crate::wire::dhcp::{code, Message, MessageType, Op, BROADCAST_FLAG};
use crate::wire::{pxe, MacAddr};

/// MAC prefixes of Raspberry Pi boards: they boot as architecture 41 and need PXE menu
/// sub-options in option 43.
const RASPBERRY_PI_OUIS: &[[u8; 3]] = &[
    [0xb8, 0x27, 0xeb],
    [0xdc, 0xa6, 0x32],
    [0xe4, 0x5f, 0x01],
    [0x28, 0xcd, 0xc1],
    [0xd8, 0x3a, 0xdd],
];
const ARCH_RASPBERRY_PI: u16 = 41;

/// Which socket a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// UDP 67, from a client (broadcast or unicast) or a relay.
    Dhcp,
    /// UDP 4011, the PXE boot server; replies go back to `source`.
    BootServer { source: SocketAddrV4 },
}

/// What kind of client is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// No PXE vendor class: an ordinary DHCP client.
    Plain,
    /// Firmware PXE (`PXEClient`): needs an iPXE binary over TFTP.
    Firmware,
    /// UEFI HTTP boot (`HTTPClient`): needs an http:// URL.
    HttpBoot,
    /// iPXE itself: needs the script URL.
    Ipxe,
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientKind::Plain => "plain",
            ClientKind::Firmware => "firmware",
            ClientKind::HttpBoot => "http-boot",
            ClientKind::Ipxe => "ipxe",
        })
    }
}

/// Facts about the client read from its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub kind: ClientKind,
    /// First architecture of option 93 that the config knows, else the first one.
    pub arch: Option<u16>,
    /// Option 97, echoed when present and well-formed (17 bytes, type 0).
    pub guid: Option<Vec<u8>>,
}

impl Client {
    pub fn netboot(&self) -> bool {
        self.kind != ClientKind::Plain
    }
}

/// Where a reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Unicast to a relay's giaddr, port 67.
    Relay(Ipv4Addr),
    /// 255.255.255.255:68 to ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// Unicast to the client at `ip`:68, to its MAC (no ARP needed on a packet socket).
    Client { ip: Ipv4Addr, mac: MacAddr },
    /// Back to where a boot-server request came from.
    Source(SocketAddrV4),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Relay(ip) => write!(f, "relay {ip}:67"),
            Destination::Broadcast => f.write_str("broadcast"),
            Destination::Client { ip, .. } => write!(f, "unicast {ip}:68"),
            Destination::Source(addr) => write!(f, "unicast {addr}"),
        }
    }
}

/// The boot information chosen for a netboot client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boot {
    /// A binary name (firmware, fetched over TFTP from `next_server`) or a URL.
    pub file: String,
    pub next_server: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub message: Message,
    pub to: Destination,
    /// Set when the reply carries boot information.
    pub boot: Option<Boot>,
}

impl Reply {
    pub fn message_type(&self) -> MessageType {
        self.message
            .message_type()
            .unwrap_or(MessageType::Unknown(0))
    }
}

/// Why there is no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Silence {
    DhcpOff,
    NotARequest,
    NotEthernet,
    NoMessageType,
    UnexpectedType(MessageType),
    UnknownMachine,
    /// Not found while the remote source has no usable snapshot: maybe known there.
    SourcePending,
    Disabled,
    NoReservedAddress,
    NotPxe,
    NetbootNotAllowed,
    NoBinaryForArch(Option<u16>),
    /// A REQUEST selecting, or renewing with, another server.
    OtherServer(Ipv4Addr),
    NoRequestedAddress,
    /// In proxy modes, REQUESTs on port 67 belong to the server that gives addresses.
    ProxyIgnoresRequest,
    /// The client says its reserved address is in use on the network.
    Declined(Option<Ipv4Addr>),
    Released(Ipv4Addr),
    /// A giaddr no relay can have (multicast, broadcast, 0/8, reserved, or loopback from off
    /// this host): answering would send the reply there.
    ForgedRelay(Ipv4Addr),
    /// A giaddr outside `--dhcp-relays`.
    UnlistedRelay(Ipv4Addr),
    /// A ciaddr no client can have, or an unrelayed INFORM whose ciaddr is not its source.
    ForgedClientAddress(Ipv4Addr),
    /// An unknown MAC the address pool does not answer.
    Pool(Quiet),
}

impl Silence {
    /// A short fixed name, for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Silence::DhcpOff => "dhcp_off",
            Silence::NotARequest => "not_a_request",
            Silence::NotEthernet => "not_ethernet",
            Silence::NoMessageType => "bootp",
            Silence::UnexpectedType(_) => "unexpected_type",
            Silence::UnknownMachine => "unknown_machine",
            Silence::SourcePending => "source_pending",
            Silence::Disabled => "disabled",
            Silence::NoReservedAddress => "no_reserved_address",
            Silence::NotPxe => "not_pxe",
            Silence::NetbootNotAllowed => "netboot_not_allowed",
            Silence::NoBinaryForArch(_) => "no_binary_for_arch",
            Silence::OtherServer(_) => "other_server",
            Silence::NoRequestedAddress => "no_requested_address",
            Silence::ProxyIgnoresRequest => "proxy_ignores_request",
            Silence::Declined(_) => "declined",
            Silence::Released(_) => "released",
            Silence::ForgedRelay(_) => "forged_relay",
            Silence::UnlistedRelay(_) => "unlisted_relay",
            Silence::ForgedClientAddress(_) => "forged_client_address",
            Silence::Pool(Quiet::NoPool) => "unknown_machine",
            Silence::Pool(Quiet::Full { .. }) => "pool_full",
            Silence::Pool(Quiet::Probing(_)) => "pool_probing",
            Silence::Pool(Quiet::NoLease) => "no_pool_lease",
        }
    }

    /// Worth an operator's attention (logged at warning level).
    pub fn is_notable(&self) -> bool {
        matches!(
            self,
            Silence::Declined(_)
                | Silence::NoBinaryForArch(_)
                | Silence::ForgedRelay(_)
                | Silence::UnlistedRelay(_)
                | Silence::ForgedClientAddress(_)
        )
    }

    /// Routine noise on a shared segment (logged at debug level).
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            Silence::NotPxe
                | Silence::OtherServer(_)
                | Silence::ProxyIgnoresRequest
                | Silence::NotARequest
        )
    }
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Silence::DhcpOff => f.write_str("DHCP is off"),
            Silence::NotARequest => f.write_str("not a BOOTREQUEST"),
            Silence::NotEthernet => f.write_str("hardware type is not Ethernet"),
            Silence::NoMessageType => f.write_str("no DHCP message type (BOOTP is not served)"),
            Silence::UnexpectedType(t) => write!(f, "{t} is not answered"),
            Silence::UnknownMachine => f.write_str("unknown MAC"),
            Silence::SourcePending => f.write_str(
                "MAC not found and the remote inventory has no usable snapshot (not treated as unknown)",
            ),
            Silence::Disabled => f.write_str("machine is disabled"),
            Silence::NoReservedAddress => f.write_str("machine has no ipAddress"),
            Silence::NotPxe => f.write_str("not a PXE client (proxy mode)"),
            Silence::NetbootNotAllowed => f.write_str("netboot not allowed (allowPxe: false)"),
            Silence::NoBinaryForArch(Some(a)) => {
                write!(
                    f,
                    "no boot loader for architecture {a} (see --dhcp-ipxe-binaries, --dhcp-loaders)"
                )
            }
            Silence::NoBinaryForArch(None) => f.write_str("no iPXE binary for this client"),
            Silence::OtherServer(ip) => write!(f, "addressed to server {ip}"),
            Silence::NoRequestedAddress => f.write_str("REQUEST names no address"),
            Silence::ProxyIgnoresRequest => {
                f.write_str("proxy mode: REQUESTs on port 67 belong to the address server")
            }
            Silence::Declined(Some(ip)) => write!(f, "client DECLINEd {ip}: address in use?"),
            Silence::Declined(None) => f.write_str("client DECLINEd its address"),
            Silence::Released(ip) => write!(f, "client RELEASEd {ip}"),
            Silence::ForgedRelay(ip) => write!(f, "giaddr {ip} is no relay's address"),
            Silence::UnlistedRelay(ip) => {
                write!(f, "giaddr {ip} is not among --dhcp-relays")
            }
            Silence::ForgedClientAddress(ip) => {
                write!(f, "ciaddr {ip} is not the client's address")
            }
            Silence::Pool(quiet) => write!(f, "{quiet}"),
        }
    }
}

pub type Verdict = Result<Reply, Silence>;

fn is_raspberry_pi(msg: &Message) -> bool {
    msg.mac()
        .is_some_and(|m| RASPBERRY_PI_OUIS.iter().any(|oui| m.0[..3] == oui[..]))
}

/// What iPXE says in its user class (option 77): stock iPXE, and Tinkerbell's builds. With
/// option 175 (iPXE's own options) it is how a request is known to come from iPXE (the loop
/// break); `byo-dhcp` writes the same test for other servers.
pub const IPXE_USER_CLASSES: [&str; 2] = ["iPXE", "Tinkerbell"];

/// Reads the client facts from a request (never fails: missing facts are `None`/`Plain`).
pub fn classify(msg: &Message, cfg: &Dhcp) -> Client {
    let vendor = msg.options.get(code::VENDOR_CLASS).unwrap_or(&[]);
    let classes = msg.user_classes();
    let ipxe = classes
        .iter()
        .any(|c| IPXE_USER_CLASSES.iter().any(|i| *c == i.as_bytes()))
        || msg.options.get(code::IPXE_ENCAP).is_some();
    let kind = if vendor.starts_with(b"HTTPClient") {
        ClientKind::HttpBoot
    } else if ipxe {
        ClientKind::Ipxe
    } else if vendor.starts_with(b"PXEClient") {
        ClientKind::Firmware
    } else {
        ClientKind::Plain
    };
    let arches = msg.client_arches();
    let arch = if is_raspberry_pi(msg) {
        Some(ARCH_RASPBERRY_PI)
    } else {
        arches
            .iter()
            .copied()
            .find(|a| cfg.ipxe_binaries.iter().any(|(known, _)| known == a))
            .or(arches.first().copied())
            // PXE clients that leave option 93 out are the oldest: x86 BIOS.
            .or(Some(0).filter(|_| kind != ClientKind::Plain))
    };
    let guid = msg
        .options
        .get(code::CLIENT_GUID)
        .filter(|g| g.len() == 17 && g[0] == 0)
        .map(<[u8]>::to_vec);
    Client { kind, arch, guid }
}

/// Where a request came from, as the socket saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// The IPv4 source address of the datagram (a relay's, or a configured client's, or
    /// 0.0.0.0).
    pub ip: Ipv4Addr,
    /// It arrived on the loopback interface (a relay on this host, or a test).
    pub on_loopback: bool,
}

/// An address a reply may be sent to: not multicast, broadcast, "this network" or reserved,
/// and loopback only when the request itself came over loopback.
fn deliverable(ip: Ipv4Addr, source: &Source) -> bool {
    let [first, ..] = ip.octets();
    !(ip.is_multicast()
        || ip.is_broadcast()
        || first == 0
        || first >= 240
        || (ip.is_loopback() && !source.on_loopback))
}

/// Refuses requests whose giaddr or ciaddr would steer the reply somewhere it must not go:
/// a forged relay address, a relay outside `--dhcp-relays` (when set), a client address no
/// client can have, or an unrelayed INFORM (answered at its ciaddr) whose ciaddr is not the
/// address it was sent from.
pub fn screen(msg: &Message, source: &Source, cfg: &Dhcp) -> Result<(), Silence> {
    let relayed = !msg.giaddr.is_unspecified();
    if relayed {
        if !deliverable(msg.giaddr, source) {
            return Err(Silence::ForgedRelay(msg.giaddr));
        }
        if !cfg.relays.is_empty() && !cfg.relays.iter().any(|c| c.contains(msg.giaddr.into())) {
            return Err(Silence::UnlistedRelay(msg.giaddr));
        }
    }
    if !msg.ciaddr.is_unspecified() {
        if !deliverable(msg.ciaddr, source) {
            return Err(Silence::ForgedClientAddress(msg.ciaddr));
        }
        let inform = msg.message_type() == Some(MessageType::Inform);
        if inform && !relayed && msg.ciaddr != source.ip {
            return Err(Silence::ForgedClientAddress(msg.ciaddr));
        }
    }
    Ok(())
}

/// The whole decision for one request.
pub fn decide(msg: &Message, port: Port, inventory: &Inventory, cfg: &Dhcp) -> Verdict {
    if cfg.mode == DhcpMode::Off {
        return Err(Silence::DhcpOff);
    }
    if msg.op != Op::Request {
        return Err(Silence::NotARequest);
    }
    let mac = msg.mac().ok_or(Silence::NotEthernet)?;
    let msg_type = msg.message_type().ok_or(Silence::NoMessageType)?;
    let client = classify(msg, cfg);
    let machine = inventory.by_mac(mac);
    if machine.is_none() && inventory.is_pending() {
        return Err(Silence::SourcePending);
    }
    // A machine with an address on several networks gets the one of the network the request
    // came from: the relay's, else the one of the server's own address.
    let network = if msg.giaddr.is_unspecified() {
        cfg.ip_for_packet
    } else {
        msg.giaddr
    };
    let moved = machine.and_then(|m| m.on_network(network));
    let machine = moved.as_ref().or(machine);
    match port {
        Port::BootServer { source } => boot_server(msg, msg_type, source, &client, machine, cfg),
        Port::Dhcp if cfg.mode == DhcpMode::Reservation => {
            reservation(msg, msg_type, &client, machine, cfg)
        }
        Port::Dhcp => proxy_offer(msg, msg_type, &client, machine, cfg),
    }
}

fn reservation(
    msg: &Message,
    msg_type: MessageType,
    client: &Client,
    machine: Option<&Machine>,
    cfg: &Dhcp,
) -> Verdict {
    let machine = machine.ok_or(Silence::UnknownMachine)?;
    if machine.disabled {
        return Err(Silence::Disabled);
    }
    let reserved = machine.ip_address.ok_or(Silence::NoReservedAddress)?;
    let requested = msg
        .requested_address()
        .or(Some(msg.ciaddr).filter(|ip| !ip.is_unspecified()));
    match msg_type {
        MessageType::Discover => Ok(lease_reply(msg, MessageType::Offer, client, machine, cfg)),
        MessageType::Request => {
            if let Some(server) = msg.server_id().filter(|s| *s != cfg.ip_for_packet) {
                return Err(Silence::OtherServer(server));
            }
            match requested {
                None => Err(Silence::NoRequestedAddress),
                Some(ip) if ip == reserved => {
                    Ok(lease_reply(msg, MessageType::Ack, client, machine, cfg))
                }
                Some(ip) => Ok(nak(msg, ip, reserved, cfg)),
            }
        }
        MessageType::Inform => Ok(inform_ack(msg, client, machine, cfg)),
        MessageType::Decline => Err(Silence::Declined(msg.requested_address())),
        MessageType::Release => Err(Silence::Released(msg.ciaddr)),
        other => Err(Silence::UnexpectedType(other)),
    }
}

/// The reply skeleton: header copied from the request as RFC 2131 table 3 says.
fn reply_to(msg: &Message, msg_type: MessageType, cfg: &Dhcp) -> Message {
    let mut reply = Message {
        op: Op::Reply,
        htype: msg.htype,
        hlen: msg.hlen,
        hops: 0,
        xid: msg.xid,
        secs: 0,
        flags: msg.flags,
        giaddr: msg.giaddr,
        chaddr: msg.chaddr,
        ..Message::default()
    };
    reply.options.set(code::MESSAGE_TYPE, [u8::from(msg_type)]);
    reply
        .options
        .set(code::SERVER_ID, cfg.ip_for_packet.octets());
    reply
}

/// Options echoed from the request, put last (option 82 must end the options).
fn echo_tail(reply: &mut Message, msg: &Message) {
    for c in [code::CLIENT_ID, code::RELAY_AGENT_INFO] {
        if let Some(v) = msg.options.get(c) {
            reply.options.set(c, v);
        }
    }
}

fn ips(list: &[Ipv4Addr]) -> Vec<u8> {
    list.iter().flat_map(|ip| ip.octets()).collect()
}

/// The machine's network options, as Smee sends them.
fn machine_options(reply: &mut Message, machine: &Machine, cfg: &Dhcp) {
    let o = &mut reply.options;
    if let Some(mask) = machine.subnet_mask {
        o.set(code::SUBNET_MASK, mask.octets());
    }
    if let Some(gw) = machine.default_gateway {
        o.set(code::ROUTER, gw.octets());
    }
    if !machine.name_servers.is_empty() {
        o.set(code::DNS_SERVERS, ips(&machine.name_servers));
    }
    if !cfg.syslog_ip.is_unspecified() {
        o.set(code::LOG_SERVERS, cfg.syslog_ip.octets());
    }
    if let Some(name) = &machine.hostname {
        o.set(code::HOSTNAME, name.as_bytes());
    }
    if let Some(name) = &machine.domain_name {
        o.set(code::DOMAIN_NAME, name.as_bytes());
    }
    if let Some(b) = machine.broadcast_address {
        o.set(code::BROADCAST_ADDRESS, b.octets());
    }
    if !machine.ntp_servers.is_empty() {
        o.set(code::NTP_SERVERS, ips(&machine.ntp_servers));
    }
    if !machine.routes.is_empty() {
        let encoded = crate::wire::dhcp::encode_classless_routes(&machine.routes);
        o.set(code::CLASSLESS_ROUTES, encoded);
    }
    if !machine.domain_search.is_empty() {
        let encoded = crate::wire::dhcp::encode_domain_search(&machine.domain_search);
        if !encoded.is_empty() {
            o.set(code::DOMAIN_SEARCH, encoded);
        }
    }
}

/// OFFER or ACK of the machine's reserved address.
fn lease_reply(
    msg: &Message,
    msg_type: MessageType,
    client: &Client,
    machine: &Machine,
    cfg: &Dhcp,
) -> Reply {
    let mut reply = reply_to(msg, msg_type, cfg);
    let yiaddr = machine.ip_address.unwrap_or(Ipv4Addr::UNSPECIFIED);
    reply.yiaddr = yiaddr;
    reply.ciaddr = msg.ciaddr;
    reply.siaddr = cfg.ip_for_packet;
    reply
        .options
        .set(code::LEASE_TIME, machine.lease_time.to_be_bytes());
    machine_options(&mut reply, machine, cfg);
    let boot = netboot_options(&mut reply, msg, client, machine, cfg, true);
    echo_tail(&mut reply, msg);
    let to = destination(msg, msg_type, yiaddr);
    Reply {
        message: reply,
        to,
        boot,
    }
}

/// DHCPINFORM: options for a client that already has its address; no lease, no yiaddr.
fn inform_ack(msg: &Message, client: &Client, machine: &Machine, cfg: &Dhcp) -> Reply {
    let mut reply = reply_to(msg, MessageType::Ack, cfg);
    reply.ciaddr = msg.ciaddr;
    machine_options(&mut reply, machine, cfg);
    let boot = netboot_options(&mut reply, msg, client, machine, cfg, true);
    echo_tail(&mut reply, msg);
    Reply {
        to: destination(msg, MessageType::Ack, Ipv4Addr::UNSPECIFIED),
        message: reply,
        boot,
    }
}

fn nak(msg: &Message, requested: Ipv4Addr, reserved: Ipv4Addr, cfg: &Dhcp) -> Reply {
    nak_saying(
        msg,
        format!("{requested} is not yours; your address is {reserved}"),
        cfg,
    )
}

/// A NAK with `why` in option 56.
fn nak_saying(msg: &Message, why: String, cfg: &Dhcp) -> Reply {
    let mut reply = reply_to(msg, MessageType::Nak, cfg);
    reply.options.set(code::MESSAGE, why.into_bytes());
    if !msg.giaddr.is_unspecified() {
        reply.flags |= BROADCAST_FLAG;
    }
    echo_tail(&mut reply, msg);
    Reply {
        to: destination(msg, MessageType::Nak, Ipv4Addr::UNSPECIFIED),
        message: reply,
        boot: None,
    }
}

/// RFC 2131 §4.1: relay, else NAK broadcast, else ciaddr, else broadcast flag or no address,
/// else unicast to the new address at the client's MAC.
fn destination(msg: &Message, msg_type: MessageType, yiaddr: Ipv4Addr) -> Destination {
    let mac = msg.mac().unwrap_or_default();
    if !msg.giaddr.is_unspecified() {
        Destination::Relay(msg.giaddr)
    } else if msg_type == MessageType::Nak {
        Destination::Broadcast
    } else if !msg.ciaddr.is_unspecified() {
        Destination::Client {
            ip: msg.ciaddr,
            mac,
        }
    } else if msg.flags & BROADCAST_FLAG != 0 || yiaddr.is_unspecified() {
        Destination::Broadcast
    } else {
        Destination::Client { ip: yiaddr, mac }
    }
}

/// Adds boot information when the client netboots and the machine may. `skip_discovery`
/// adds option 43 with sub-option 6 = 8 (boot `file` straight away, no boot-server discovery).
/// Returns what was chosen. A machine that may not netboot gets an address only.
fn netboot_options(
    reply: &mut Message,
    msg: &Message,
    client: &Client,
    machine: &Machine,
    cfg: &Dhcp,
    skip_discovery: bool,
) -> Option<Boot> {
    if !client.netboot() || !machine.netboots() {
        return None;
    }
    let boot = choose_boot(client, Some(machine), msg.mac()?, cfg).ok()?;
    add_boot(reply, msg, client, &boot, skip_discovery);
    if client.kind == ClientKind::Ipxe {
        // iPXE's `no-pxedhcp` (175.176 = 1): this reply gives the address and the boot file,
        // so iPXE need not wait its 2 s for ProxyDHCP offers before it requests (dnsmasq
        // leaves this out). Never in ProxyDHCP offers: there the address server's offer rules.
        reply.options.set(
            code::IPXE_ENCAP,
            pxe::emit_without_end(&[(pxe::IPXE_NO_PXEDHCP, &[1])]),
        );
    }
    Some(boot)
}

fn add_boot(
    reply: &mut Message,
    msg: &Message,
    client: &Client,
    boot: &Boot,
    skip_discovery: bool,
) {
    reply.siaddr = boot.next_server;
    // `file` is 128 bytes with its NUL; a longer URL goes in option 67.
    if boot.file.len() < 128 {
        reply.file = boot.file.clone().into_bytes();
    } else {
        reply.options.set(code::BOOTFILE_NAME, boot.file.as_bytes());
    }
    if skip_discovery {
        reply
            .options
            .set(code::VENDOR_SPECIFIC, pxe_vendor_options(msg));
    }
    if client.kind == ClientKind::HttpBoot {
        reply.options.set(code::VENDOR_CLASS, &b"HTTPClient"[..]);
    }
    if let Some(guid) = &client.guid {
        reply.options.set(code::CLIENT_GUID, guid.as_slice());
    }
}

/// Option 43 for PXE: discovery control 8 (boot `file`); Raspberry Pis also need a boot menu
/// (type 0, "Raspberry Pi Boot") and a prompt (no wait, "PXE") before their firmware accepts
/// the offer.
fn pxe_vendor_options(msg: &Message) -> Vec<u8> {
    const RPI_MENU: &[u8] = b"\0\0\x11Raspberry Pi Boot";
    const RPI_PROMPT: &[u8] = b"\0PXE";
    let at_once: &[u8] = &[pxe::BOOT_FILE_AT_ONCE];
    if is_raspberry_pi(msg) {
        pxe::emit(&[
            (pxe::DISCOVERY_CONTROL, at_once),
            (pxe::MENU_PROMPT, RPI_PROMPT),
            (pxe::BOOT_MENU, RPI_MENU),
        ])
    } else {
        pxe::emit(&[(pxe::DISCOVERY_CONTROL, at_once)])
    }
}

/// The boot file or URL for this client: iPXE gets the script URL, UEFI HTTP boot an http://
/// URL of its binary, firmware the binary's name on the TFTP server.
pub fn choose_boot(
    client: &Client,
    machine: Option<&Machine>,
    mac: MacAddr,
    cfg: &Dhcp,
) -> Result<Boot, Silence> {
    let next_server = cfg.tftp_ip;
    if client.kind == ClientKind::Ipxe {
        return Ok(Boot {
            file: script_url(machine, mac, cfg),
            next_server,
        });
    }
    // The machine's loader, else its architecture's (`--dhcp-loaders`), else iPXE; a machine
    // with its own iPXE binary chose iPXE.
    let grub = match machine.and_then(|m| m.netboot.loader) {
        Some(loader) => loader == Loader::Grub,
        None => {
            machine.is_none_or(|m| m.netboot.ipxe_binary.is_none())
                && client.arch.is_some_and(|a| cfg.grub_arches.contains(&a))
        }
    };
    let binary = if grub {
        client
            .arch
            .and_then(crate::value::grub_binary)
            .map(String::from)
    } else {
        machine
            .and_then(|m| m.netboot.ipxe_binary.clone())
            .or_else(|| {
                let arch = client.arch?;
                cfg.ipxe_binaries
                    .iter()
                    .find(|(a, _)| *a == arch)
                    .map(|(_, f)| f.clone())
            })
    }
    .ok_or(Silence::NoBinaryForArch(client.arch))?;
    let file = match client.kind {
        ClientKind::HttpBoot => {
            let base = &cfg.ipxe_binary_base;
            let base = base.to_string();
            format!("{}/{mac}/{binary}", base.trim_end_matches('/'))
        }
        _ => binary,
    };
    Ok(Boot { file, next_server })
}

/// The machine's own script URL (verbatim), else `--dhcp-http-ipxe-script-url`, else the
/// script base; with `--dhcp-http-ipxe-script-prepend-mac` the MAC goes in front of the last
/// path element of either, as Smee does (`/smee/auto.ipxe` → `/smee/<mac>/auto.ipxe`).
pub fn script_url(machine: Option<&Machine>, mac: MacAddr, cfg: &Dhcp) -> String {
    if let Some(url) = machine.and_then(|m| m.netboot.ipxe_script_url.clone()) {
        return url;
    }
    // A remote source's machine (it has an xname) and a template (OpenCHAMI BSS).
    if let (Some(m), Some(template)) = (
        machine.filter(|m| m.xname.is_some()),
        &cfg.ipxe_script_url_template,
    ) {
        return fill_template(template, m);
    }
    let url = match &cfg.ipxe_script_url {
        Some(url) => url.clone(),
        None => cfg.ipxe_script_base.to_string(),
    };
    if cfg.ipxe_script_prepend_mac {
        insert_mac(&url, mac)
    } else {
        url
    }
}

/// `--ipxe-script-url-template` for `m`: `{mac}` (aa:bb:..), `{mac-hyphen}` (aa-bb-..),
/// `{ip}`, `{xname}`, `{nid}` and `{arch}` (x86_64 unless the machine says). Every value is a
/// validated word (no spaces, no quotes), so nothing can break the URL out of its option.
pub fn fill_template(template: &str, m: &Machine) -> String {
    let mac = m.mac.to_string();
    template
        .replace("{mac-hyphen}", &mac.replace(':', "-"))
        .replace("{mac}", &mac)
        .replace(
            "{ip}",
            &m.ip_address.map(|ip| ip.to_string()).unwrap_or_default(),
        )
        .replace("{xname}", m.xname.as_deref().unwrap_or(""))
        .replace("{nid}", &m.nid.map(|n| n.to_string()).unwrap_or_default())
        .replace("{arch}", m.arch.as_deref().unwrap_or("x86_64"))
}

/// `scheme://host/a/b/file?q` → `scheme://host/a/b/<mac>/file?q`. Like Go's `path.Join`
/// (which Smee uses), empty and `.` elements are dropped; a URL with no path gets `/<mac>`.
pub fn insert_mac(url: &str, mac: MacAddr) -> String {
    let path_start = match url.find("://") {
        Some(i) => url[i + 3..].find('/').map_or(url.len(), |j| i + 3 + j),
        None => 0,
    };
    let path_end = url[path_start..]
        .find(['?', '#'])
        .map_or(url.len(), |j| path_start + j);
    let (head, path, tail) = (
        &url[..path_start],
        &url[path_start..path_end],
        &url[path_end..],
    );
    let mut parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mac = mac.to_string();
    match parts.pop() {
        None => format!("{head}/{mac}{tail}"),
        Some(last) => {
            parts.push(&mac);
            parts.push(last);
            format!("{head}/{}{tail}", parts.join("/"))
        }
    }
}

/// Who proxy modes answer: PXE clients; in `proxy` mode only those with a record that allows
/// netboot, in `auto-proxy` mode any (a record can still disable or deny it).
fn proxy_eligible<'m>(
    client: &Client,
    machine: Option<&'m Machine>,
    cfg: &Dhcp,
) -> Result<Option<&'m Machine>, Silence> {
    if !client.netboot() {
        return Err(Silence::NotPxe);
    }
    match machine {
        Some(m) if m.disabled => Err(Silence::Disabled),
        Some(m) if !m.netboot.allow_pxe => Err(Silence::NetbootNotAllowed),
        Some(m) => Ok(Some(m)),
        None if cfg.mode == DhcpMode::AutoProxy => Ok(None),
        None => Err(Silence::UnknownMachine),
    }
}

/// ProxyDHCP on port 67: a DISCOVER gets an OFFER with boot information and no address.
/// Architectures in `--dhcp-boot-server-arches` get no option 43, so they ask on port 4011.
fn proxy_offer(
    msg: &Message,
    msg_type: MessageType,
    client: &Client,
    machine: Option<&Machine>,
    cfg: &Dhcp,
) -> Verdict {
    let machine = proxy_eligible(client, machine, cfg)?;
    match msg_type {
        MessageType::Discover => {}
        MessageType::Request => return Err(Silence::ProxyIgnoresRequest),
        other => return Err(Silence::UnexpectedType(other)),
    }
    let mac = msg.mac().ok_or(Silence::NotEthernet)?;
    let boot = choose_boot(client, machine, mac, cfg)?;
    let mut reply = reply_to(msg, MessageType::Offer, cfg);
    reply.ciaddr = msg.ciaddr;
    // No address is offered, so the client cannot take a unicast reply.
    reply.flags |= BROADCAST_FLAG;
    let via_boot_server = client.kind == ClientKind::Firmware
        && client
            .arch
            .is_some_and(|a| cfg.boot_server_arches.contains(&a));
    reply
        .options
        .set(code::VENDOR_CLASS, vendor_class_echo(client));
    add_boot(&mut reply, msg, client, &boot, !via_boot_server);
    echo_tail(&mut reply, msg);
    Ok(Reply {
        to: destination(msg, MessageType::Offer, Ipv4Addr::UNSPECIFIED),
        message: reply,
        boot: Some(boot),
    })
}

fn vendor_class_echo(client: &Client) -> &'static [u8] {
    if client.kind == ClientKind::HttpBoot {
        b"HTTPClient"
    } else {
        b"PXEClient"
    }
}

/// The PXE boot server on UDP 4011: a REQUEST (or INFORM) gets an ACK with the boot file.
fn boot_server(
    msg: &Message,
    msg_type: MessageType,
    source: SocketAddrV4,
    client: &Client,
    machine: Option<&Machine>,
    cfg: &Dhcp,
) -> Verdict {
    if !matches!(msg_type, MessageType::Request | MessageType::Inform) {
        return Err(Silence::UnexpectedType(msg_type));
    }
    let machine = if cfg.mode == DhcpMode::Reservation {
        let m = machine.ok_or(Silence::UnknownMachine)?;
        proxy_eligible(client, Some(m), cfg)?
    } else {
        proxy_eligible(client, machine, cfg)?
    };
    let mac = msg.mac().ok_or(Silence::NotEthernet)?;
    let boot = choose_boot(client, machine, mac, cfg)?;
    let mut reply = reply_to(msg, MessageType::Ack, cfg);
    reply.ciaddr = msg.ciaddr;
    reply.sname = cfg.ip_for_packet.to_string().into_bytes();
    reply
        .options
        .set(code::VENDOR_CLASS, vendor_class_echo(client));
    add_boot(&mut reply, msg, client, &boot, false);
    // Echo the PXE boot item (sub-option 71) the client asked for.
    let asked = msg.options.get(code::VENDOR_SPECIFIC).unwrap_or(&[]);
    if let Some(item) = pxe::find(asked, pxe::BOOT_ITEM) {
        reply
            .options
            .set(code::VENDOR_SPECIFIC, pxe::emit(&[(pxe::BOOT_ITEM, item)]));
    }
    echo_tail(&mut reply, msg);
    let to = if source.ip().is_unspecified() {
        Destination::Broadcast
    } else {
        Destination::Source(source)
    };
    Ok(Reply {
        message: reply,
        to,
        boot: Some(boot),
    })
}

/// What an unknown MAC's message asks of the address pool. REQUESTs, RELEASEs and DECLINEs
/// naming another server are not ours.
pub fn pool_ask(msg: &Message, cfg: &Dhcp) -> Result<Ask, Silence> {
    let mac = msg.mac().ok_or(Silence::NotEthernet)?;
    let msg_type = msg.message_type().ok_or(Silence::NoMessageType)?;
    if let Some(server) = msg.server_id().filter(|s| *s != cfg.ip_for_packet) {
        return Err(Silence::OtherServer(server));
    }
    let ciaddr = Some(msg.ciaddr).filter(|ip| !ip.is_unspecified());
    let kind = match msg_type {
        MessageType::Discover => AskKind::Discover {
            requested: msg.requested_address(),
        },
        MessageType::Request => match (msg.server_id(), msg.requested_address(), ciaddr) {
            (Some(_), Some(requested), _) => AskKind::Select { requested },
            (None, Some(requested), None) => AskKind::InitReboot { requested },
            (_, _, Some(ciaddr)) => AskKind::Renew { ciaddr },
            _ => return Err(Silence::NoRequestedAddress),
        },
        MessageType::Release => AskKind::Release {
            ciaddr: ciaddr.ok_or(Silence::Released(msg.ciaddr))?,
        },
        MessageType::Decline => AskKind::Decline {
            requested: msg.requested_address().ok_or(Silence::Declined(None))?,
        },
        other => return Err(Silence::UnexpectedType(other)),
    };
    Ok(Ask {
        kind,
        client: ClientKey::new(msg.options.get(code::CLIENT_ID), mac),
        mac,
        network: network_of(msg, cfg),
    })
}

/// The network a request comes from: the relay's, else the server's own address's.
pub fn network_of(msg: &Message, cfg: &Dhcp) -> Ipv4Addr {
    if msg.giaddr.is_unspecified() {
        cfg.ip_for_packet
    } else {
        msg.giaddr
    }
}

/// Where iPXE on an unknown machine finds its script: `/unknown.ipxe` on the script server.
pub fn unknown_script_url(cfg: &Dhcp) -> String {
    let base = crate::config::UrlBase {
        path: "/unknown.ipxe".into(),
        ..cfg.ipxe_script_base.clone()
    };
    base.to_string()
}

/// A pool client as a machine record: the pool's address and network settings, and, when it
/// netboots, the iPXE binary for its architecture, then [`unknown_script_url`].
pub fn pool_machine(mac: MacAddr, ip: Ipv4Addr, s: &PoolSettings, cfg: &Dhcp) -> Machine {
    Machine {
        mac,
        ip_address: Some(ip),
        subnet_mask: Some(s.mask()),
        default_gateway: s.gateway,
        name_servers: s.name_servers.clone(),
        domain_name: s.domain.clone(),
        lease_time: s.lease_time,
        netboot: Netboot {
            allow_pxe: true,
            ipxe_script_url: Some(unknown_script_url(cfg)),
            ..Netboot::default()
        },
        ..Machine::default()
    }
}

/// The reply for the pool's decision (`settings` of the pool it names).
pub fn pool_reply(
    msg: &Message,
    decision: &Decision,
    settings: Option<&PoolSettings>,
    cfg: &Dhcp,
) -> Verdict {
    let client = classify(msg, cfg);
    let mac = msg.mac().ok_or(Silence::NotEthernet)?;
    let lease = |msg_type, ip| {
        let s = settings.ok_or(Silence::Pool(Quiet::NoPool))?;
        let machine = pool_machine(mac, ip, s, cfg);
        Ok(lease_reply(msg, msg_type, &client, &machine, cfg))
    };
    match decision {
        Decision::Offer { ip, .. } => lease(MessageType::Offer, *ip),
        Decision::Ack { ip, .. } => lease(MessageType::Ack, *ip),
        Decision::Nak { why } => Ok(nak_saying(msg, why.clone(), cfg)),
        Decision::Probe { ip, .. } => Err(Silence::Pool(Quiet::Probing(*ip))),
        Decision::Released(ip) => Err(Silence::Released(*ip)),
        Decision::Declined(ip) => Err(Silence::Declined(Some(*ip))),
        Decision::Silent(quiet) => Err(Silence::Pool(quiet.clone())),
    }
}

#[cfg(test)]
pub(crate) mod tests;
