//! DHCPv4 messages (RFC 2131, options RFC 2132): parse from bytes and emit to bytes.
//!
//! [`Message::parse`] validates once: after it, no accessor indexes with a length from the wire.
//! Options keep unknown codes; a code that appears more than once is joined (RFC 3396), and
//! options carried in `file`/`sname` (overload, option 52) are read in RFC 3396's order.
//! [`Message::emit`] splits long options, moves what does not fit into `file`/`sname` (overload)
//! when those are free, drops what still does not fit (and says which), and pads to 300 bytes.

use std::fmt;
use std::net::Ipv4Addr;

use super::MacAddr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// The PXE boot server's port (PXE 2.1 spec): ProxyDHCP's second exchange.
pub const PXE_PORT: u16 = 4011;

/// The `flags` bit a client sets when it cannot receive unicast before it has an address.
pub const BROADCAST_FLAG: u16 = 0x8000;

const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;
const COOKIE: std::ops::Range<usize> = 236..240;
const OPTIONS_START: usize = 240;
/// BOOTP's minimum message: relays and old clients drop anything shorter.
pub const MIN_REPLY_LEN: usize = 300;
/// RFC 2131 §2: every client accepts a 576-byte IP datagram, i.e. 548 bytes of DHCP.
pub const DEFAULT_MAX_LEN: usize = 576 - 28;
/// Replies never need more than an Ethernet frame's worth.
pub const LARGEST_MAX_LEN: usize = 1500 - 28;

/// Option codes used by netbootd. Every other code is kept as its number.
pub mod code {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVERS: u8 = 6;
    pub const LOG_SERVERS: u8 = 7;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const BROADCAST_ADDRESS: u8 = 28;
    pub const NTP_SERVERS: u8 = 42;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_ADDRESS: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_GUID: u8 = 97;
    pub const DOMAIN_SEARCH: u8 = 119;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

/// BOOTP `op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Request,
    Reply,
    Unknown(u8),
}

impl From<u8> for Op {
    fn from(v: u8) -> Op {
        match v {
            1 => Op::Request,
            2 => Op::Reply,
            v => Op::Unknown(v),
        }
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        match op {
            Op::Request => 1,
            Op::Reply => 2,
            Op::Unknown(v) => v,
        }
    }
}

/// Option 53.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> MessageType {
        match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            v => MessageType::Unknown(v),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        match t {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::Unknown(v) => v,
        }
    }
}

impl MessageType {
    /// A name from a fixed set, for metric labels: a client cannot mint new series by sending
    /// types 9..255.
    pub fn label(self) -> &'static str {
        match self {
            MessageType::Discover => "DISCOVER",
            MessageType::Offer => "OFFER",
            MessageType::Request => "REQUEST",
            MessageType::Decline => "DECLINE",
            MessageType::Ack => "ACK",
            MessageType::Nak => "NAK",
            MessageType::Release => "RELEASE",
            MessageType::Inform => "INFORM",
            MessageType::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageType::Unknown(v) => write!(f, "TYPE-{v}"),
            known => f.write_str(known.label()),
        }
    }
}

/// Why bytes are not a DHCP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the 240-byte fixed part (header and magic cookie).
    Truncated(usize),
    /// `hlen` larger than the 16-byte `chaddr` field.
    HardwareAddressTooLong(u8),
    /// BOOTP without DHCP's magic cookie.
    NoMagicCookie,
    /// An option's length runs past the end of its area.
    OptionOverrun { code: u8 },
    /// `file` or `sname` carries another overload option (52).
    OverloadLoop,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated(n) => write!(f, "truncated: {n} bytes, need at least 240"),
            ParseError::HardwareAddressTooLong(n) => write!(f, "hlen {n} is over 16"),
            ParseError::NoMagicCookie => f.write_str("no DHCP magic cookie"),
            ParseError::OptionOverrun { code } => {
                write!(f, "option {code} runs past the end of the packet")
            }
            ParseError::OverloadLoop => f.write_str("option overload (52) inside file/sname"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Options in order of first appearance; repeated codes joined (RFC 3396).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options(Vec<(u8, Vec<u8>)>);

impl Options {
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets `code`, replacing an earlier value in place (or appending).
    pub fn set(&mut self, code: u8, data: impl Into<Vec<u8>>) {
        let data = data.into();
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1 = data,
            None => self.0.push((code, data)),
        }
    }

    pub fn remove(&mut self, code: u8) {
        self.0.retain(|(c, _)| *c != code);
    }

    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.0.iter().map(|(c, v)| (*c, v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn join(&mut self, code: u8, data: &[u8]) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1.extend_from_slice(data),
            None => self.0.push((code, data.to_vec())),
        }
    }

    /// Reads one options area. An END stops it; a missing END is tolerated (many clients pad).
    fn read_area(&mut self, area: &[u8]) -> Result<(), ParseError> {
        let mut at = 0;
        while let Some(&code) = area.get(at) {
            match code {
                code::PAD => at += 1,
                code::END => break,
                _ => {
                    let len = *area.get(at + 1).ok_or(ParseError::OptionOverrun { code })? as usize;
                    let data = area
                        .get(at + 2..at + 2 + len)
                        .ok_or(ParseError::OptionOverrun { code })?;
                    self.join(code, data);
                    at += 2 + len;
                }
            }
        }
        Ok(())
    }
}

/// A DHCP message, header fields named as in RFC 2131.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub op: Op,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    /// Server host name, NUL-trimmed (empty when the field carried options). At most 64 bytes.
    pub sname: Vec<u8>,
    /// Boot file name, NUL-trimmed (empty when the field carried options). At most 128 bytes.
    pub file: Vec<u8>,
    pub options: Options,
}

impl Default for Message {
    fn default() -> Message {
        Message {
            op: Op::Request,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid: 0,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 16],
            sname: Vec::new(),
            file: Vec::new(),
            options: Options::default(),
        }
    }
}

/// Bytes to send, and the options that did not fit (so the caller can log them).
#[derive(Debug)]
pub struct Emitted {
    pub bytes: Vec<u8>,
    pub dropped: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ip(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn trim_nul(field: &[u8]) -> Vec<u8> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field[..end].to_vec()
}

impl Message {
    /// Parses a message. Never panics; any byte string gets a message or an error.
    pub fn parse(b: &[u8]) -> Result<Message, ParseError> {
        if b.len() < OPTIONS_START {
            return Err(ParseError::Truncated(b.len()));
        }
        if b[2] > 16 {
            return Err(ParseError::HardwareAddressTooLong(b[2]));
        }
        if b[COOKIE] != MAGIC_COOKIE {
            return Err(ParseError::NoMagicCookie);
        }
        let mut options = Options::default();
        options.read_area(&b[OPTIONS_START..])?;
        // Read from the options field only; an option 52 inside `file` or `sname` would be
        // an overload loop and is refused.
        let overload = options
            .get(code::OVERLOAD)
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        let mut file = trim_nul(&b[FILE]);
        let mut sname = trim_nul(&b[SNAME]);
        for (bit, area, text) in [(1, FILE, &mut file), (2, SNAME, &mut sname)] {
            if overload & bit == 0 {
                continue;
            }
            let mut carried = Options::default();
            carried.read_area(&b[area])?;
            if carried.get(code::OVERLOAD).is_some() {
                return Err(ParseError::OverloadLoop);
            }
            for (c, v) in carried.iter() {
                options.join(c, v);
            }
            text.clear();
        }
        let mut chaddr = [0; 16];
        chaddr.copy_from_slice(&b[28..44]);
        Ok(Message {
            op: Op::from(b[0]),
            htype: b[1],
            hlen: b[2],
            hops: b[3],
            xid: be32(b, 4),
            secs: be16(b, 8),
            flags: be16(b, 10),
            ciaddr: ip(b, 12),
            yiaddr: ip(b, 16),
            siaddr: ip(b, 20),
            giaddr: ip(b, 24),
            chaddr,
            sname,
            file,
            options,
        })
    }

    /// Emits at most `max_len` bytes (at least [`MIN_REPLY_LEN`]), padded to 300.
    /// Options go in order; those that do not fit move to `file` then `sname` when these are
    /// empty (option 52), and any left over are dropped and listed in [`Emitted::dropped`].
    pub fn emit(&self, max_len: usize) -> Emitted {
        let max_len = max_len.max(MIN_REPLY_LEN);
        let encoded: Vec<(u8, Vec<u8>)> = self
            .options
            .iter()
            .filter(|(c, _)| *c != code::OVERLOAD && *c != code::PAD && *c != code::END)
            .map(|(c, v)| (c, encode_option(c, v)))
            .collect();
        let main_room = max_len - OPTIONS_START - 1;
        let total: usize = encoded.iter().map(|(_, e)| e.len()).sum();

        let mut main = Vec::new();
        let mut file_area = Vec::new();
        let mut sname_area = Vec::new();
        let mut dropped = Vec::new();
        if total <= main_room {
            encoded.into_iter().for_each(|(_, e)| main.extend(e));
        } else {
            // Room for the overload option itself (3 bytes) in the main area.
            let main_room = main_room - 3;
            let file_room = if self.file.is_empty() {
                FILE.len() - 1
            } else {
                0
            };
            let sname_room = if self.sname.is_empty() {
                SNAME.len() - 1
            } else {
                0
            };
            for (c, e) in encoded {
                if main.len() + e.len() <= main_room {
                    main.extend(e);
                } else if file_area.len() + e.len() <= file_room {
                    file_area.extend(e);
                } else if sname_area.len() + e.len() <= sname_room {
                    sname_area.extend(e);
                } else {
                    dropped.push(c);
                }
            }
            let overload =
                u8::from(!file_area.is_empty()) | (u8::from(!sname_area.is_empty()) << 1);
            if overload != 0 {
                main.extend([code::OVERLOAD, 1, overload]);
            }
        }

        let mut b = vec![0u8; OPTIONS_START];
        b[0] = self.op.into();
        b[1] = self.htype;
        b[2] = self.hlen;
        b[3] = self.hops;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[8..10].copy_from_slice(&self.secs.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[16..20].copy_from_slice(&self.yiaddr.octets());
        b[20..24].copy_from_slice(&self.siaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..44].copy_from_slice(&self.chaddr);
        place(&mut b[SNAME], &self.sname, &sname_area);
        place(&mut b[FILE], &self.file, &file_area);
        b[COOKIE].copy_from_slice(&MAGIC_COOKIE);
        b.extend(main);
        b.push(code::END);
        if b.len() < MIN_REPLY_LEN {
            b.resize(MIN_REPLY_LEN, code::PAD);
        }
        Emitted { bytes: b, dropped }
    }

    pub fn message_type(&self) -> Option<MessageType> {
        match self.options.get(code::MESSAGE_TYPE)? {
            [t] => Some(MessageType::from(*t)),
            _ => None,
        }
    }

    /// The client's Ethernet address, when `htype`/`hlen` say Ethernet.
    pub fn mac(&self) -> Option<MacAddr> {
        if self.htype != 1 || self.hlen != 6 {
            return None;
        }
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.chaddr[..6]);
        Some(MacAddr(mac))
    }

    /// A 4-byte option as an address.
    pub fn option_ip(&self, code: u8) -> Option<Ipv4Addr> {
        match self.options.get(code)? {
            [a, b, c, d] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
            _ => None,
        }
    }

    pub fn requested_address(&self) -> Option<Ipv4Addr> {
        self.option_ip(code::REQUESTED_ADDRESS)
    }

    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option_ip(code::SERVER_ID)
    }

    /// The largest reply this client accepts (option 57 less IP and UDP headers), kept within
    /// RFC 2131's floor and one Ethernet frame.
    pub fn max_reply_len(&self) -> usize {
        match self.options.get(code::MAX_MESSAGE_SIZE) {
            Some(&[hi, lo]) => (u16::from_be_bytes([hi, lo]) as usize).saturating_sub(28),
            _ => DEFAULT_MAX_LEN,
        }
        .clamp(DEFAULT_MAX_LEN, LARGEST_MAX_LEN)
    }

    /// Option 93: the client's architecture types, in the client's order.
    pub fn client_arches(&self) -> Vec<u16> {
        self.options
            .get(code::CLIENT_ARCH)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    /// Option 77 entries. iPXE sends its class raw (`iPXE`) rather than RFC 3004's
    /// length-prefixed list; both forms are returned.
    pub fn user_classes(&self) -> Vec<&[u8]> {
        let Some(data) = self.options.get(code::USER_CLASS) else {
            return Vec::new();
        };
        let mut out = vec![data];
        let mut at = 0;
        let mut listed = Vec::new();
        while let Some(&len) = data.get(at) {
            match data.get(at + 1..at + 1 + len as usize) {
                Some(item) if len > 0 => listed.push(item),
                _ => return out,
            }
            at += 1 + len as usize;
        }
        out.extend(listed);
        out
    }
}

/// Writes a `file`/`sname` field: its overload options, or its text (truncated to fit).
fn place(field: &mut [u8], text: &[u8], overload_area: &[u8]) {
    if !overload_area.is_empty() {
        field[..overload_area.len()].copy_from_slice(overload_area);
        field[overload_area.len()] = code::END;
    } else {
        let n = text.len().min(field.len());
        field[..n].copy_from_slice(&text[..n]);
    }
}

/// One option as bytes, split into 255-byte pieces (RFC 3396). An empty value is kept empty.
fn encode_option(code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    if value.is_empty() {
        out.extend([code, 0]);
    }
    for piece in value.chunks(255) {
        out.push(code);
        out.push(piece.len() as u8);
        out.extend_from_slice(piece);
    }
    out
}

/// RFC 3442 classless static routes: for each (destination, prefix width, router), the width,
/// the destination's significant octets, then the router.
pub fn encode_classless_routes(routes: &[(Ipv4Addr, u8, Ipv4Addr)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (destination, width, router) in routes {
        let width = (*width).min(32);
        out.push(width);
        out.extend_from_slice(&destination.octets()[..usize::from(width).div_ceil(8)]);
        out.extend_from_slice(&router.octets());
    }
    out
}

/// RFC 3397 domain search list, uncompressed. Names with empty or over-long labels are skipped.
pub fn encode_domain_search(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
            continue;
        }
        for l in labels {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/dhcp/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn minimal(options: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&[2, 0x77, 0, 0, 0, 0x50]);
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        b.extend_from_slice(options);
        b
    }

    #[test]
    fn captured_clients_parse() {
        let cases: &[(&str, MessageType, &str)] = &[
            (
                "dhclient-discover",
                MessageType::Discover,
                "02:77:00:00:00:50",
            ),
            (
                "dhclient-request",
                MessageType::Request,
                "02:77:00:00:00:50",
            ),
            (
                "dhclient-release",
                MessageType::Release,
                "02:77:00:00:00:50",
            ),
            (
                "udhcpc-discover",
                MessageType::Discover,
                "02:77:00:00:00:50",
            ),
            ("udhcpc-request", MessageType::Request, "02:77:00:00:00:50"),
            (
                "dhcpcd-discover",
                MessageType::Discover,
                "02:77:00:00:00:50",
            ),
            ("dhcpcd-request", MessageType::Request, "02:77:00:00:00:50"),
            ("nmap-discover", MessageType::Discover, "02:77:00:00:00:50"),
            (
                "ipxe-bios-discover",
                MessageType::Discover,
                "52:54:00:12:34:56",
            ),
            (
                "ipxe-bios-request",
                MessageType::Request,
                "52:54:00:12:34:56",
            ),
            (
                "ipxe-efi-discover",
                MessageType::Discover,
                "52:54:00:12:34:56",
            ),
            ("ovmf-discover", MessageType::Discover, "52:54:00:12:34:56"),
            ("ovmf-request", MessageType::Request, "52:54:00:12:34:56"),
            (
                "ovmf-4011-request",
                MessageType::Request,
                "52:54:00:12:34:56",
            ),
            (
                "ipxe-efi-4011-request",
                MessageType::Request,
                "52:54:00:12:34:56",
            ),
            (
                "ipxe-bios-4011-request",
                MessageType::Request,
                "52:54:00:12:34:56",
            ),
        ];
        for (name, ty, mac) in cases {
            let bytes = fixture(name);
            let m = Message::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.op, Op::Request, "{name}");
            assert_eq!(m.message_type(), Some(*ty), "{name}");
            assert_eq!(m.mac().unwrap().to_string(), *mac, "{name}");
            // What we read, we write back the same way.
            let again = Message::parse(&m.emit(LARGEST_MAX_LEN).bytes).unwrap();
            assert_eq!(again, m, "{name}");
        }
    }

    #[test]
    fn firmware_fixtures_carry_pxe_facts() {
        let ovmf = Message::parse(&fixture("ovmf-discover")).unwrap();
        assert_eq!(ovmf.client_arches(), [7]);
        assert!(ovmf
            .options
            .get(code::VENDOR_CLASS)
            .unwrap()
            .starts_with(b"PXEClient:Arch:00007"));
        assert_eq!(ovmf.options.get(code::CLIENT_GUID).unwrap().len(), 17);
        assert!(ovmf.user_classes().is_empty());
        assert_eq!(ovmf.max_reply_len(), 1472 - 28);

        let ipxe = Message::parse(&fixture("ipxe-bios-discover")).unwrap();
        assert_eq!(ipxe.client_arches(), [0]);
        assert!(ipxe.user_classes().contains(&&b"iPXE"[..]));
        assert!(ipxe.options.get(code::IPXE_ENCAP).is_some());

        let udhcpc = Message::parse(&fixture("udhcpc-request")).unwrap();
        assert_eq!(
            udhcpc.requested_address(),
            Some(Ipv4Addr::new(10, 77, 0, 50))
        );
        assert_eq!(udhcpc.server_id(), Some(Ipv4Addr::new(10, 77, 0, 1)));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Message::parse(&[]), Err(ParseError::Truncated(0)));
        assert_eq!(Message::parse(&[1; 239]), Err(ParseError::Truncated(239)));
        let mut b = minimal(&[53, 1, 1, 255]);
        b[2] = 17;
        assert_eq!(
            Message::parse(&b),
            Err(ParseError::HardwareAddressTooLong(17))
        );
        let mut b = minimal(&[53, 1, 1, 255]);
        b[239] = 0;
        assert_eq!(Message::parse(&b), Err(ParseError::NoMagicCookie));
        assert_eq!(
            Message::parse(&minimal(&[53, 1, 1, 12, 10, b'a'])),
            Err(ParseError::OptionOverrun { code: 12 })
        );
        assert_eq!(
            Message::parse(&minimal(&[53])),
            Err(ParseError::OptionOverrun { code: 53 })
        );
    }

    #[test]
    fn zero_length_and_unknown_options_are_kept() {
        let m = Message::parse(&minimal(&[53, 0, 200, 0, 201, 2, 9, 9, 255])).unwrap();
        assert_eq!(m.message_type(), None, "a zero-length type is no type");
        assert_eq!(m.options.get(200), Some(&[][..]));
        assert_eq!(m.options.get(201), Some(&[9, 9][..]));
        let again = Message::parse(&m.emit(DEFAULT_MAX_LEN).bytes).unwrap();
        assert_eq!(again.options, m.options);
    }

    #[test]
    fn missing_end_and_trailing_garbage() {
        let m = Message::parse(&minimal(&[53, 1, 1, 0, 0])).unwrap();
        assert_eq!(m.message_type(), Some(MessageType::Discover));
        let m = Message::parse(&minimal(&[53, 1, 1, 255, 99, 200])).unwrap();
        assert_eq!(m.options.len(), 1);
    }

    #[test]
    fn repeated_options_are_joined() {
        let m = Message::parse(&minimal(&[53, 1, 1, 12, 2, b'a', b'b', 12, 1, b'c', 255])).unwrap();
        assert_eq!(m.options.get(code::HOSTNAME), Some(&b"abc"[..]));
    }

    #[test]
    fn overload_reads_file_then_sname_once() {
        let mut b = minimal(&[53, 1, 3, 52, 1, 3, 12, 1, b'a', 255]);
        // file and sname carry the rest of the hostname, read in RFC 3396 order
        b[108..112].copy_from_slice(&[12, 1, b'b', 255]);
        b[44..49].copy_from_slice(&[12, 1, b'c', 255, 0]);
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.options.get(code::HOSTNAME), Some(&b"abc"[..]));
        assert!(m.file.is_empty() && m.sname.is_empty());
        // another overload option inside file is a loop
        let mut looped = b.clone();
        looped[108..114].copy_from_slice(&[12, 1, b'b', 52, 1, 3]);
        assert_eq!(Message::parse(&looped), Err(ParseError::OverloadLoop));
        // an overrun inside file is an error too
        b[108..111].copy_from_slice(&[12, 200, b'b']);
        assert!(Message::parse(&b).is_err());
    }

    #[test]
    fn long_options_split_and_join() {
        let mut m = Message::default();
        let long: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        m.options.set(code::MESSAGE_TYPE, [2]);
        m.options.set(code::DOMAIN_SEARCH, long.clone());
        let out = m.emit(LARGEST_MAX_LEN);
        assert!(out.dropped.is_empty());
        let again = Message::parse(&out.bytes).unwrap();
        assert_eq!(again.options.get(code::DOMAIN_SEARCH), Some(&long[..]));
    }

    #[test]
    fn overflow_moves_to_file_and_sname_then_drops() {
        let mut m = Message::default();
        m.options.set(code::MESSAGE_TYPE, [2]);
        for c in 128..140u8 {
            m.options.set(c, vec![c; 60]);
        }
        let out = m.emit(DEFAULT_MAX_LEN);
        assert!(out.bytes.len() <= DEFAULT_MAX_LEN);
        let again = Message::parse(&out.bytes).unwrap();
        assert_eq!(again.message_type(), Some(MessageType::Offer));
        assert!(!out.dropped.is_empty());
        for c in 128..140u8 {
            assert_eq!(
                again.options.get(c).is_some(),
                !out.dropped.contains(&c),
                "option {c}"
            );
        }
        assert!(again.options.get(130).is_some(), "overload carried some");
    }

    #[test]
    fn replies_are_padded_and_keep_file_and_sname() {
        let mut m = Message {
            op: Op::Reply,
            file: b"undionly.kpxe".to_vec(),
            sname: b"10.77.0.1".to_vec(),
            ..Message::default()
        };
        m.options.set(code::MESSAGE_TYPE, [2]);
        let out = m.emit(DEFAULT_MAX_LEN);
        assert_eq!(out.bytes.len(), MIN_REPLY_LEN);
        let again = Message::parse(&out.bytes).unwrap();
        assert_eq!(again.file, b"undionly.kpxe");
        assert_eq!(again.sname, b"10.77.0.1");
    }

    #[test]
    fn max_reply_len_is_clamped() {
        let m = Message::parse(&minimal(&[57, 2, 0x01, 0x00, 255])).unwrap();
        assert_eq!(m.max_reply_len(), DEFAULT_MAX_LEN);
        let m = Message::parse(&minimal(&[57, 2, 0xff, 0x00, 255])).unwrap();
        assert_eq!(m.max_reply_len(), LARGEST_MAX_LEN);
        let m = Message::parse(&minimal(&[57, 1, 5, 255])).unwrap();
        assert_eq!(m.max_reply_len(), DEFAULT_MAX_LEN);
    }

    #[test]
    fn user_class_both_forms() {
        let m = Message::parse(&minimal(&[77, 4, b'i', b'P', b'X', b'E', 255])).unwrap();
        assert!(m.user_classes().contains(&&b"iPXE"[..]));
        let m = Message::parse(&minimal(&[
            77, 11, 10, b'T', b'i', b'n', b'k', b'e', b'r', b'b', b'e', b'l', b'l', 255,
        ]))
        .unwrap();
        assert!(m.user_classes().contains(&&b"Tinkerbell"[..]));
    }

    #[test]
    fn classless_routes_encoding() {
        let routes = [
            (
                "10.0.0.0".parse().unwrap(),
                8,
                "10.77.0.254".parse().unwrap(),
            ),
            ("0.0.0.0".parse().unwrap(), 0, "10.77.0.1".parse().unwrap()),
            (
                "192.168.1.128".parse().unwrap(),
                25,
                "10.77.0.2".parse().unwrap(),
            ),
        ];
        assert_eq!(
            encode_classless_routes(&routes),
            [8, 10, 10, 77, 0, 254, 0, 10, 77, 0, 1, 25, 192, 168, 1, 128, 10, 77, 0, 2]
        );
    }

    #[test]
    fn domain_search_encoding() {
        let e = encode_domain_search(&["lab.example".into(), "bad..name".into(), "x.".into()]);
        assert_eq!(e, b"\x03lab\x07example\x00\x01x\x00");
    }

    #[test]
    fn mutated_fixtures_never_panic() {
        let seeds: Vec<Vec<u8>> = ["ovmf-discover", "ipxe-bios-discover", "dhcpcd-request"]
            .iter()
            .map(|n| fixture(n))
            .collect();
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let mut b = seeds[i % seeds.len()].clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            let cut = (next() as usize) % (b.len() + 1);
            b.truncate(cut.max(200));
            if let Ok(m) = Message::parse(&b) {
                let _ = m.emit(m.max_reply_len());
                let _ = (m.client_arches(), m.user_classes(), m.mac());
            }
        }
    }
}
