//! TFTP packets (RFC 1350) with option extension (RFC 2347): `blksize` (RFC 2348), `tsize` and
//! `timeout` (RFC 2349), `windowsize` (RFC 7440). Parse from bytes, emit into a buffer.
//!
//! [`Packet::parse`] validates once; option values a server must not accept (out of their RFC's
//! range, not a number) are dropped at parse time and unknown options are ignored, so
//! [`RequestOptions`] only holds values that are legal on the wire. Nothing here panics.

use std::fmt;

/// Where requests arrive (RFC 1350).
pub const SERVER_PORT: u16 = 69;
/// The block size of a transfer that negotiated none.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// RFC 2348's range.
pub const MIN_BLKSIZE: u16 = 8;
pub const MAX_BLKSIZE: u16 = 65464;
/// Opcode + block number in front of DATA.
pub const DATA_HEADER_LEN: usize = 4;
/// IPv4 + UDP headers: blksize must stay within MTU minus this (RFC 2348 §Example: 1468 on
/// Ethernet).
pub const IP_UDP_HEADER_LEN: usize = 28;
/// Longest request read: RFC 2347 limits a request to 512 bytes; some clients send a little
/// more, so a full datagram up to this size is parsed.
pub const MAX_REQUEST_LEN: usize = 2048;

mod opcode {
    pub const RRQ: u16 = 1;
    pub const WRQ: u16 = 2;
    pub const DATA: u16 = 3;
    pub const ACK: u16 = 4;
    pub const ERROR: u16 = 5;
    pub const OACK: u16 = 6;
}

/// Transfer mode. `mail` is obsolete (RFC 1350) and kept as unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
    Unknown(String),
}

impl Mode {
    fn parse(text: &str) -> Mode {
        if text.eq_ignore_ascii_case("octet") {
            Mode::Octet
        } else if text.eq_ignore_ascii_case("netascii") {
            Mode::Netascii
        } else {
            Mode::Unknown(text.to_string())
        }
    }
}

/// RFC 1350 error codes (RFC 2347 adds 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NotDefined,
    FileNotFound,
    AccessViolation,
    DiskFull,
    IllegalOperation,
    UnknownTransferId,
    FileExists,
    NoSuchUser,
    OptionRefused,
    Unknown(u16),
}

impl ErrorCode {
    pub fn value(self) -> u16 {
        match self {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionRefused => 8,
            ErrorCode::Unknown(v) => v,
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(v: u16) -> ErrorCode {
        match v {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            v => ErrorCode::Unknown(v),
        }
    }
}

/// The options of a request that are within their RFC's range. Others are ignored, as
/// RFC 2347 lets a server do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// RFC 2348: 8..=65464.
    pub blksize: Option<u16>,
    /// RFC 2349: the client asks for the size (it sends 0 in a read request).
    pub tsize: bool,
    /// RFC 2349: 1..=255 seconds.
    pub timeout: Option<u8>,
    /// RFC 7440: 1..=65535.
    pub windowsize: Option<u16>,
}

impl RequestOptions {
    fn accept(&mut self, name: &str, value: &str) {
        let number = value.trim().parse::<u64>().ok();
        match name.to_ascii_lowercase().as_str() {
            "blksize" => {
                self.blksize = number
                    .filter(|n| (MIN_BLKSIZE as u64..=MAX_BLKSIZE as u64).contains(n))
                    .map(|n| n as u16)
            }
            "tsize" => self.tsize = number.is_some(),
            "timeout" => self.timeout = number.filter(|n| (1..=255).contains(n)).map(|n| n as u8),
            "windowsize" => {
                self.windowsize = number.filter(|n| (1..=65535).contains(n)).map(|n| n as u16)
            }
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == RequestOptions::default()
    }
}

/// A read or write request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// As sent, decoded as UTF-8 (with U+FFFD for invalid bytes, which no file name matches).
    pub filename: String,
    pub mode: Mode,
    pub options: RequestOptions,
}

/// A parsed packet. DATA borrows its payload from the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request),
    Wrq(Request),
    Data {
        block: u16,
        data: &'a [u8],
    },
    Ack {
        block: u16,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Option acknowledgement: name/value pairs in the order sent.
    Oack(Vec<(String, String)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its opcode's fixed part.
    Truncated,
    UnknownOpcode(u16),
    /// A request whose file name or mode is missing or not NUL-terminated.
    MalformedRequest,
    /// A request with an empty file name.
    EmptyFilename,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("truncated packet"),
            ParseError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            ParseError::MalformedRequest => f.write_str("malformed request"),
            ParseError::EmptyFilename => f.write_str("empty file name"),
        }
    }
}

impl std::error::Error for ParseError {}

fn be16(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// NUL-terminated strings; the last one may lack its NUL only where `strict` is false.
fn strings(bytes: &[u8]) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == 0) {
            Some(end) => {
                out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
                rest = &rest[end + 1..];
            }
            None => {
                out.push(String::from_utf8_lossy(rest).into_owned());
                return (out, false);
            }
        }
    }
    (out, true)
}

fn parse_request(body: &[u8]) -> Result<Request, ParseError> {
    let (fields, terminated) = strings(body);
    // File name and mode must be terminated; a trailing unterminated option pair is dropped.
    if fields.len() < 2 || (!terminated && fields.len() < 3) {
        return Err(ParseError::MalformedRequest);
    }
    let complete = if terminated {
        fields.len()
    } else {
        fields.len() - 1
    };
    let filename = fields[0].clone();
    if filename.is_empty() {
        return Err(ParseError::EmptyFilename);
    }
    let mode = Mode::parse(&fields[1]);
    let mut options = RequestOptions::default();
    for pair in fields[2..complete].chunks_exact(2) {
        options.accept(&pair[0], &pair[1]);
    }
    Ok(Request {
        filename,
        mode,
        options,
    })
}

impl<'a> Packet<'a> {
    /// The opcode's name (for logs).
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Rrq(_) => "RRQ",
            Packet::Wrq(_) => "WRQ",
            Packet::Data { .. } => "DATA",
            Packet::Ack { .. } => "ACK",
            Packet::Error { .. } => "ERROR",
            Packet::Oack(_) => "OACK",
        }
    }

    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, ParseError> {
        let op = be16(bytes).ok_or(ParseError::Truncated)?;
        let body = &bytes[2..];
        match op {
            opcode::RRQ => parse_request(body).map(Packet::Rrq),
            opcode::WRQ => parse_request(body).map(Packet::Wrq),
            opcode::DATA => Ok(Packet::Data {
                block: be16(body).ok_or(ParseError::Truncated)?,
                data: &body[2..],
            }),
            opcode::ACK => Ok(Packet::Ack {
                block: be16(body).ok_or(ParseError::Truncated)?,
            }),
            opcode::ERROR => {
                let code = ErrorCode::from(be16(body).ok_or(ParseError::Truncated)?);
                let (texts, _) = strings(&body[2..]);
                Ok(Packet::Error {
                    code,
                    message: texts.into_iter().next().unwrap_or_default(),
                })
            }
            opcode::OACK => {
                let (fields, _) = strings(body);
                let pairs = fields
                    .chunks_exact(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                Ok(Packet::Oack(pairs))
            }
            other => Err(ParseError::UnknownOpcode(other)),
        }
    }
}

/// Writes DATA into `out` (cleared first): header then `data`.
pub fn emit_data_header(out: &mut Vec<u8>, block: u16) {
    out.clear();
    out.extend_from_slice(&opcode::DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

pub fn emit_ack(block: u16) -> [u8; 4] {
    let [a, b] = opcode::ACK.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

/// ERROR with its message; the message is cut to 255 bytes and NUL bytes in it are removed.
pub fn emit_error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len().min(255));
    out.extend_from_slice(&opcode::ERROR.to_be_bytes());
    out.extend_from_slice(&code.value().to_be_bytes());
    out.extend(message.bytes().filter(|&b| b != 0).take(255));
    out.push(0);
    out
}

pub fn emit_oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut out = opcode::OACK.to_be_bytes().to_vec();
    for (name, value) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// A read request (used by tests and the benchmark's own client).
pub fn emit_rrq(filename: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = opcode::RRQ.to_be_bytes().to_vec();
    for s in [filename, mode]
        .into_iter()
        .chain(options.iter().flat_map(|(n, v)| [*n, *v]))
    {
        out.extend(s.bytes().filter(|&b| b != 0));
        out.push(0);
    }
    out
}

/// Converts file bytes to netascii (RFC 764): LF → CR LF, CR → CR NUL.
pub fn to_netascii(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_request_with_every_option_parses() {
        let bytes = emit_rrq(
            "/pxe/ipxe.efi",
            "OCTET",
            &[
                ("tsize", "0"),
                ("BLKSIZE", "1468"),
                ("windowsize", "4"),
                ("timeout", "3"),
                ("x-vendor", "1"),
            ],
        );
        let Packet::Rrq(r) = Packet::parse(&bytes).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(r.filename, "/pxe/ipxe.efi");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(
            r.options,
            RequestOptions {
                blksize: Some(1468),
                tsize: true,
                timeout: Some(3),
                windowsize: Some(4),
            }
        );
    }

    #[test]
    fn out_of_range_option_values_are_ignored() {
        for (name, value) in [
            ("blksize", "7"),
            ("blksize", "65465"),
            ("blksize", "big"),
            ("timeout", "0"),
            ("timeout", "256"),
            ("windowsize", "0"),
            ("windowsize", "65536"),
            ("tsize", "-1"),
        ] {
            let bytes = emit_rrq("f", "octet", &[(name, value)]);
            let Packet::Rrq(r) = Packet::parse(&bytes).unwrap() else {
                panic!()
            };
            assert!(r.options.is_empty(), "{name}={value} accepted");
        }
    }

    #[test]
    fn a_request_without_its_terminators_is_refused() {
        assert_eq!(
            Packet::parse(b"\x00\x01file"),
            Err(ParseError::MalformedRequest)
        );
        assert_eq!(
            Packet::parse(b"\x00\x01file\x00octet"),
            Err(ParseError::MalformedRequest)
        );
        assert_eq!(
            Packet::parse(b"\x00\x01\x00octet\x00"),
            Err(ParseError::EmptyFilename)
        );
        // A trailing option without its NUL is dropped, the request stands.
        let Ok(Packet::Rrq(r)) = Packet::parse(b"\x00\x01f\x00octet\x00blksize\x001024") else {
            panic!()
        };
        assert!(r.options.is_empty());
        assert_eq!(r.mode, Mode::Octet);
    }

    #[test]
    fn every_opcode_round_trips() {
        let mut data = Vec::new();
        emit_data_header(&mut data, 65535);
        data.extend_from_slice(b"abc");
        assert_eq!(
            Packet::parse(&data),
            Ok(Packet::Data {
                block: 65535,
                data: b"abc"
            })
        );
        assert_eq!(Packet::parse(&emit_ack(7)), Ok(Packet::Ack { block: 7 }));
        assert_eq!(
            Packet::parse(&emit_error(ErrorCode::OptionRefused, "no\0pe")),
            Ok(Packet::Error {
                code: ErrorCode::OptionRefused,
                message: "nope".into()
            })
        );
        assert_eq!(
            Packet::parse(&emit_oack(&[("blksize", "1468".into())])),
            Ok(Packet::Oack(vec![("blksize".into(), "1468".into())]))
        );
        assert_eq!(
            Packet::parse(b"\x00\x02up\x00netascii\x00"),
            Ok(Packet::Wrq(Request {
                filename: "up".into(),
                mode: Mode::Netascii,
                options: RequestOptions::default()
            }))
        );
        assert_eq!(
            Packet::parse(b"\x00\x09"),
            Err(ParseError::UnknownOpcode(9))
        );
        assert_eq!(
            Packet::parse(b"\x00\x05\x00\x63"),
            Ok(Packet::Error {
                code: ErrorCode::Unknown(99),
                message: String::new()
            })
        );
    }

    #[test]
    fn short_and_random_input_never_panics() {
        for len in 0..8 {
            for b in 0..=255u8 {
                let _ = Packet::parse(&vec![b; len]);
            }
        }
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed % 8) as u8 // small values: many NULs and valid opcodes
                })
                .collect();
            let _ = Packet::parse(&bytes);
        }
    }

    #[test]
    fn netascii_expands_line_ends() {
        assert_eq!(to_netascii(b"a\nb\rc"), b"a\r\nb\r\0c");
    }
}
