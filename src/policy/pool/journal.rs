//! The pool journal's format: one record per line, text, each line ending in the CRC-32 of
//! what comes before it, so a torn or damaged line is recognised and skipped.
//!
//! ```text
//! netbootd-pool-journal 1
//! L <ip> <bound|free> <mac> <client-id hex> <expires ms> <crc>
//! X <ip> <crc>
//! Q <ip> <until ms> <crc>
//! D <mac> <first ms> <last ms> <discovers> <via> <arch> <vendor> <user> <host> <ip> <crc>
//! K <mac> <crc>
//! ```
//! `L` is a lease (offers are not written), `X` an address with no lease any more, `Q` a
//! quarantined address, `D` an entry of the discovery list and `K` a MAC that left it (it is
//! known now).
//! Times are milliseconds since the Unix epoch; `<crc>` is 8 lower-case hex digits of the
//! CRC-32 (IEEE) of the line up to the space before it. Text fields are percent-encoded
//! (space, `%`, and anything outside printable ASCII); `-` stands for none. Later records of the
//! same address (or MAC) replace earlier ones.

use std::net::Ipv4Addr;

use super::{ClientKey, Discovered, Lease, LeaseState, Record};
use crate::wire::MacAddr;

pub const HEADER: &str = "netbootd-pool-journal 1";

/// CRC-32 (IEEE 802.3, reflected, as zlib's).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn escape(text: Option<&str>) -> String {
    let Some(text) = text else {
        return "-".into();
    };
    if text == "-" || text.is_empty() {
        return "%2d".into();
    }
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn unescape(field: &str) -> Option<Option<String>> {
    if field == "-" {
        return Some(None);
    }
    let bytes = field.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = field.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Some)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl Record {
    /// The record's line, with its CRC and the newline.
    pub fn encode(&self) -> String {
        let body = match self {
            Record::Lease(l) => format!(
                "L {} {} {} {} {}",
                l.ip,
                if l.state == LeaseState::Bound {
                    "bound"
                } else {
                    "free"
                },
                l.mac,
                l.client.hex(),
                l.expires
            ),
            Record::Forget(ip) => format!("X {ip}"),
            Record::Unseen(mac) => format!("K {mac}"),
            Record::Quarantine { ip, until } => format!("Q {ip} {until}"),
            Record::Seen(d) => format!(
                "D {} {} {} {} {} {} {} {} {} {}",
                d.mac,
                d.first_seen,
                d.last_seen,
                d.discovers,
                escape(Some(&d.via)),
                opt(d.arch),
                escape(d.vendor_class.as_deref()),
                escape(d.user_class.as_deref()),
                escape(d.hostname.as_deref()),
                opt(d.address),
            ),
        };
        format!("{body} {:08x}\n", crc32(body.as_bytes()))
    }

    /// One line (without its newline); `None` when the CRC or a field is wrong.
    pub fn parse(line: &str) -> Option<Record> {
        let (body, crc) = line.rsplit_once(' ')?;
        if crc.len() != 8 || u32::from_str_radix(crc, 16).ok()? != crc32(body.as_bytes()) {
            return None;
        }
        let f: Vec<&str> = body.split(' ').collect();
        let ip = |s: &str| s.parse::<Ipv4Addr>().ok();
        match f.as_slice() {
            ["L", a, state, mac, client, expires] => {
                let hex = client.as_bytes();
                if hex.len() % 2 != 0 || hex.len() > 2 * super::MAX_CLIENT_ID + 2 {
                    return None;
                }
                let key: Option<Vec<u8>> = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(client.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                Some(Record::Lease(Lease {
                    ip: ip(a)?,
                    client: ClientKey(key?),
                    mac: MacAddr::parse(mac)?,
                    state: match *state {
                        "bound" => LeaseState::Bound,
                        "free" => LeaseState::Free,
                        _ => return None,
                    },
                    expires: expires.parse().ok()?,
                }))
            }
            ["X", a] => Some(Record::Forget(ip(a)?)),
            ["K", mac] => Some(Record::Unseen(MacAddr::parse(mac)?)),
            ["Q", a, until] => Some(Record::Quarantine {
                ip: ip(a)?,
                until: until.parse().ok()?,
            }),
            ["D", mac, first, last, count, via, arch, vendor, user, host, addr] => {
                Some(Record::Seen(Discovered {
                    mac: MacAddr::parse(mac)?,
                    first_seen: first.parse().ok()?,
                    last_seen: last.parse().ok()?,
                    discovers: count.parse().ok()?,
                    via: unescape(via)?.unwrap_or_default(),
                    arch: match *arch {
                        "-" => None,
                        a => Some(a.parse().ok()?),
                    },
                    vendor_class: unescape(vendor)?,
                    user_class: unescape(user)?,
                    hostname: unescape(host)?,
                    address: match *addr {
                        "-" => None,
                        a => Some(ip(a)?),
                    },
                }))
            }
            _ => None,
        }
    }
}

/// What reading a journal found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub records: Vec<Record>,
    /// Lines that failed their CRC or did not parse (skipped).
    pub damaged: usize,
    /// The last line had no newline: a write cut short by a crash (ignored).
    pub torn: bool,
}

/// Reads a journal's bytes. The header line is optional (a journal begun by an append);
/// anything else that does not check out is counted and skipped.
pub fn read(bytes: &[u8]) -> Read {
    let mut out = Read::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            out.torn = true;
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let Ok(line) = std::str::from_utf8(line) else {
            out.damaged += 1;
            continue;
        };
        if line == HEADER || line.is_empty() {
            continue;
        }
        match Record::parse(line) {
            Some(r) => out.records.push(r),
            None => out.damaged += 1,
        }
    }
    out
}
