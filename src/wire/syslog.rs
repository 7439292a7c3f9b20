//! Syslog messages as they arrive over UDP: RFC 5424 (with structured data) and the BSD format
//! of RFC 3164 (timestamp, hostname, tag and pid each optional). [`Message::parse`] borrows from
//! the datagram, validates once and never panics; header fields are ASCII by construction, the
//! message body stays bytes (it may be UTF-8 or anything else) for the caller to escape.

use std::fmt;

/// RFC 5424 §6.2.1: PRI is at most 191 (facility 23, severity 7).
const MAX_PRI: u16 = 191;
/// RFC 5424 §6: field length limits.
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROCID: usize = 128;
const MAX_MSGID: usize = 32;
/// RFC 5424 §6.3.2: SD-ID and PARAM-NAME are at most 32 characters.
const MAX_SD_NAME: usize = 32;
/// RFC 3164 §4.1.3: the TAG is at most 32 characters; some senders use a little more.
const MAX_TAG: usize = 48;
/// Structured-data elements kept per message; more is a malformed message, not a reason to
/// allocate without bound.
pub const MAX_SD_ELEMENTS: usize = 32;
pub const MAX_SD_PARAMS: usize = 64;
/// RFC 5424 §6.4: a UTF-8 message body may start with a byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";
const NIL: &str = "-";

/// Facility (RFC 5424 table 1), `Unknown` above 23 cannot occur after PRI validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(pub u8);

impl Facility {
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 24] = [
            "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
            "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
            "local3", "local4", "local5", "local6", "local7",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("unknown")
    }
}

/// Severity (RFC 5424 table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Severity(pub u8);

impl Severity {
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 8] = [
            "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("unknown")
    }
}

/// Which format the message was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
        }
    }
}

/// One SD-ELEMENT: `[id name="value" ...]`. Values are kept as sent (escapes included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdElement<'a> {
    pub id: &'a str,
    pub params: Vec<(&'a str, &'a [u8])>,
}

/// A parsed message. Absent fields (RFC 5424's `-`, or missing in RFC 3164) are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub format: Format,
    pub facility: Facility,
    pub severity: Severity,
    pub timestamp: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub proc_id: Option<&'a str>,
    pub msg_id: Option<&'a str>,
    pub structured_data: Vec<SdElement<'a>>,
    /// The structured data as sent, for logging; empty when there is none.
    pub structured_data_raw: &'a [u8],
    /// The free-form message, without a BOM and without trailing newlines or NULs.
    pub msg: &'a [u8],
}

/// Why a datagram is not a syslog message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    /// No `<PRI>` in front, or one that is not 0..=191 written without leading zeros.
    BadPriority,
    /// An RFC 5424 header (version 1) with a field that breaks the grammar; names the field.
    BadHeader(&'static str),
    BadStructuredData,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty datagram"),
            ParseError::BadPriority => f.write_str("no valid <PRI> in front"),
            ParseError::BadHeader(field) => write!(f, "RFC 5424 header: bad {field}"),
            ParseError::BadStructuredData => f.write_str("RFC 5424 structured data is malformed"),
        }
    }
}

impl std::error::Error for ParseError {}

impl<'a> Message<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let datagram = trim_end(datagram);
        if datagram.is_empty() {
            return Err(ParseError::Empty);
        }
        let (pri, rest) = priority(datagram)?;
        let facility = Facility((pri / 8) as u8);
        let severity = Severity((pri % 8) as u8);
        match rest.strip_prefix(b"1 ") {
            Some(header) => parse_5424(facility, severity, header),
            None => Ok(parse_3164(facility, severity, rest)),
        }
    }
}

/// Drops what senders append: newlines, carriage returns, NULs.
fn trim_end(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | 0] = bytes {
        bytes = rest;
    }
    bytes
}

/// `<PRI>`: 1 to 3 digits, no leading zero except `<0>`, at most 191.
fn priority(bytes: &[u8]) -> Result<(u16, &[u8]), ParseError> {
    let rest = bytes.strip_prefix(b"<").ok_or(ParseError::BadPriority)?;
    let close = rest
        .iter()
        .take(4)
        .position(|&b| b == b'>')
        .ok_or(ParseError::BadPriority)?;
    let digits = &rest[..close];
    let valid = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    if !valid {
        return Err(ParseError::BadPriority);
    }
    let pri = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if pri > MAX_PRI {
        return Err(ParseError::BadPriority);
    }
    Ok((pri, &rest[close + 1..]))
}

/// Splits at the first space: (token, rest after the space). Without a space the rest is empty.
fn token(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// A header field of RFC 5424: printable US-ASCII (33..=126), 1..=max bytes, `-` is absent.
fn header_field<'a>(
    bytes: &'a [u8],
    max: usize,
    name: &'static str,
) -> Result<Option<&'a str>, ParseError> {
    let printable = bytes.iter().all(|b| (33..=126).contains(b));
    if bytes.is_empty() || bytes.len() > max || !printable {
        return Err(ParseError::BadHeader(name));
    }
    // Printable ASCII is UTF-8.
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::BadHeader(name))?;
    Ok((text != NIL).then_some(text))
}

fn parse_5424(
    facility: Facility,
    severity: Severity,
    header: &[u8],
) -> Result<Message<'_>, ParseError> {
    let (ts, rest) = token(header);
    let timestamp = header_field(ts, 64, "timestamp")?;
    if timestamp.is_some_and(|t| !is_rfc3339(t)) {
        return Err(ParseError::BadHeader("timestamp"));
    }
    let (host, rest) = token(rest);
    let hostname = header_field(host, MAX_HOSTNAME, "hostname")?;
    let (app, rest) = token(rest);
    let app_name = header_field(app, MAX_APP_NAME, "app-name")?;
    let (pid, rest) = token(rest);
    let proc_id = header_field(pid, MAX_PROCID, "procid")?;
    let (mid, rest) = token(rest);
    let msg_id = header_field(mid, MAX_MSGID, "msgid")?;
    let (structured_data, sd_len) = structured_data(rest)?;
    let after = &rest[sd_len..];
    let msg = match after {
        [] => after,
        [b' ', body @ ..] => body.strip_prefix(BOM).unwrap_or(body),
        _ => return Err(ParseError::BadStructuredData),
    };
    Ok(Message {
        format: Format::Rfc5424,
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        structured_data_raw: if sd_len == 1 { &[] } else { &rest[..sd_len] },
        msg,
    })
}

/// `YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)`, RFC 5424 §6.2.3 (RFC 3339 with upper-case
/// `T` and `Z`, at most 6 fraction digits).
fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|d| d.len() == range.len() && d.iter().all(u8::is_ascii_digit))
    };
    let date_time = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !date_time {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=6).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// Parses STRUCTURED-DATA at the start of `bytes`: `-` or one or more SD-ELEMENTs. Returns the
/// elements and how many bytes they took.
fn structured_data(bytes: &[u8]) -> Result<(Vec<SdElement<'_>>, usize), ParseError> {
    if bytes.first() == Some(&b'-') {
        return Ok((Vec::new(), 1));
    }
    let mut elements = Vec::new();
    let mut at = 0;
    while bytes.get(at) == Some(&b'[') {
        if elements.len() == MAX_SD_ELEMENTS {
            return Err(ParseError::BadStructuredData);
        }
        let (element, len) = sd_element(&bytes[at..])?;
        elements.push(element);
        at += len;
    }
    if elements.is_empty() {
        return Err(ParseError::BadStructuredData);
    }
    Ok((elements, at))
}

/// SD-NAME: printable ASCII except `=`, space, `]` and `"`; 1 to 32 characters.
fn sd_name(bytes: &[u8]) -> Option<(&str, usize)> {
    let len = bytes
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
        .count();
    if len == 0 || len > MAX_SD_NAME {
        return None;
    }
    let name = std::str::from_utf8(&bytes[..len]).ok()?;
    Some((name, len))
}

/// One `[id param="value" ...]` at the start of `bytes`.
fn sd_element(bytes: &[u8]) -> Result<(SdElement<'_>, usize), ParseError> {
    let bad = ParseError::BadStructuredData;
    let (id, id_len) = sd_name(&bytes[1..]).ok_or(bad)?;
    let mut at = 1 + id_len;
    let mut params = Vec::new();
    loop {
        match bytes.get(at) {
            Some(b']') => return Ok((SdElement { id, params }, at + 1)),
            Some(b' ') => at += 1,
            _ => return Err(bad),
        }
        if params.len() == MAX_SD_PARAMS {
            return Err(bad);
        }
        let (name, name_len) = sd_name(&bytes[at..]).ok_or(bad)?;
        at += name_len;
        if bytes.get(at..at + 2) != Some(b"=\"") {
            return Err(bad);
        }
        at += 2;
        let start = at;
        // The value ends at the first `"` not escaped by a backslash (§6.3.3).
        loop {
            match bytes.get(at) {
                None => return Err(bad),
                Some(b'\\') => at += 2,
                Some(b'"') => break,
                Some(_) => at += 1,
            }
        }
        params.push((name, &bytes[start..at]));
        at += 1;
    }
}

/// RFC 3164: after PRI, an optional timestamp (`Mmm dd hh:mm:ss`, or RFC 3339 as rsyslog
/// sends), then an optional hostname (only after a timestamp), then an optional `TAG[PID]:`,
/// then the message. Nothing here fails: what does not fit a field is message text.
fn parse_3164(facility: Facility, severity: Severity, rest: &[u8]) -> Message<'_> {
    let (timestamp, rest) = bsd_timestamp(rest);
    let (hostname, rest) = match timestamp {
        Some(_) => bsd_hostname(rest),
        None => (None, rest),
    };
    let (tag, proc_id, msg) = match bsd_tag(rest) {
        Some((tag, pid, msg)) => (Some(tag), pid, msg),
        None => (None, None, rest),
    };
    Message {
        format: Format::Rfc3164,
        facility,
        severity,
        timestamp,
        hostname,
        app_name: tag,
        proc_id,
        msg_id: None,
        structured_data: Vec::new(),
        structured_data_raw: &[],
        msg,
    }
}

fn ascii(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().filter(|s| s.is_ascii())
}

/// `Mmm dd hh:mm:ss ` (day space-padded; some senders pad with a zero) or an RFC 3339 token.
fn bsd_timestamp(bytes: &[u8]) -> (Option<&str>, &[u8]) {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    if let Some(ts) = bytes.get(..15) {
        let day_ok = matches!(ts[4], b' ' | b'0'..=b'3') && ts[5].is_ascii_digit();
        let time_ok = ts[9] == b':'
            && ts[12] == b':'
            && [7, 8, 10, 11, 13, 14]
                .iter()
                .all(|&i| ts[i].is_ascii_digit());
        if MONTHS.contains(&&ts[..3])
            && ts[3] == b' '
            && day_ok
            && ts[6] == b' '
            && time_ok
            && bytes.get(15).is_none_or(|&b| b == b' ')
        {
            let rest = bytes.get(16..).unwrap_or(&[]);
            return (ascii(ts), rest);
        }
    }
    let (first, rest) = token(bytes);
    match ascii(first) {
        Some(t) if is_rfc3339(t) => (Some(t), rest),
        _ => (None, bytes),
    }
}

/// The hostname after a timestamp, unless that word is already the tag (`tag:`, `tag[1]:`),
/// as senders that leave the hostname out write it.
fn bsd_hostname(bytes: &[u8]) -> (Option<&str>, &[u8]) {
    let (word, rest) = token(bytes);
    let is_tag = word.ends_with(b":") || word.contains(&b'[');
    let printable = !word.is_empty() && word.iter().all(|b| (33..=126).contains(b));
    if is_tag || !printable || word.len() > MAX_HOSTNAME || rest.is_empty() {
        return (None, bytes);
    }
    (ascii(word), rest)
}

/// `TAG: msg` or `TAG[PID]: msg`: TAG is letters, digits and `-_./@`.
fn bsd_tag(bytes: &[u8]) -> Option<(&str, Option<&str>, &[u8])> {
    let tag_len = bytes
        .iter()
        .take(MAX_TAG + 1)
        .take_while(|&&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@')
        })
        .count();
    if tag_len == 0 || tag_len > MAX_TAG {
        return None;
    }
    let tag = ascii(&bytes[..tag_len])?;
    let mut rest = &bytes[tag_len..];
    let mut pid = None;
    if let Some(after) = rest.strip_prefix(b"[") {
        let close = after.iter().take(MAX_PROCID + 1).position(|&b| b == b']')?;
        let inner = &after[..close];
        if inner.is_empty() || !inner.iter().all(|b| (33..=126).contains(b)) {
            return None;
        }
        pid = Some(ascii(inner)?);
        rest = &after[close + 1..];
    }
    let rest = rest.strip_prefix(b":")?;
    Some((tag, pid, rest.strip_prefix(b" ").unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from util-linux `logger --udp` (2.38).
    const LOGGER_3164: &[u8] = b"<13>Nov 21 07:49:10 vm pxelab: hello 3164";
    const LOGGER_3164_PID: &[u8] = b"<13>Nov 21 07:49:10 vm tag[31966]: with pid\n";
    const LOGGER_5424: &[u8] = b"<13>1 2026-11-21T07:49:10.166521+00:00 vm pxelab - INST \
        [timeQuality tzKnown=\"1\" isSynced=\"0\"][install@32473 phase=\"disk\"] hello 5424";
    const LOGGER_5424_BARE: &[u8] = b"<155>1 - - x - - - m";

    #[test]
    fn rfc3164_from_logger() {
        let m = Message::parse(LOGGER_3164).unwrap();
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!((m.facility.name(), m.severity.name()), ("user", "notice"));
        assert_eq!(m.timestamp, Some("Nov 21 07:49:10"));
        assert_eq!(m.hostname, Some("vm"));
        assert_eq!(m.app_name, Some("pxelab"));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg, b"hello 3164");

        let m = Message::parse(LOGGER_3164_PID).unwrap();
        assert_eq!((m.app_name, m.proc_id), (Some("tag"), Some("31966")));
        assert_eq!(m.msg, b"with pid", "the trailing newline is dropped");
    }

    #[test]
    fn rfc5424_from_logger_with_structured_data() {
        let m = Message::parse(LOGGER_5424).unwrap();
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(m.timestamp, Some("2026-11-21T07:49:10.166521+00:00"));
        assert_eq!(
            (m.hostname, m.app_name, m.proc_id, m.msg_id),
            (Some("vm"), Some("pxelab"), None, Some("INST"))
        );
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[1].id, "install@32473");
        assert_eq!(m.structured_data[1].params, vec![("phase", &b"disk"[..])]);
        assert_eq!(
            m.structured_data_raw,
            &b"[timeQuality tzKnown=\"1\" isSynced=\"0\"][install@32473 phase=\"disk\"]"[..]
        );
        assert_eq!(m.msg, b"hello 5424");

        let m = Message::parse(LOGGER_5424_BARE).unwrap();
        assert_eq!((m.facility.name(), m.severity.name()), ("local3", "err"));
        assert_eq!(
            (m.timestamp, m.hostname, m.app_name),
            (None, None, Some("x"))
        );
        assert!(m.structured_data.is_empty() && m.structured_data_raw.is_empty());
        assert_eq!(m.msg, b"m");
    }

    #[test]
    fn rfc5424_examples_from_the_rfc() {
        // RFC 5424 §6.5 examples 1, 3 and 4.
        let m = Message::parse(
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
        )
        .unwrap();
        assert_eq!((m.facility.name(), m.severity.name()), ("auth", "crit"));
        assert!(m.msg.starts_with(b"'su root'"), "the BOM is dropped");
        let m = Message::parse(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...",
        )
        .unwrap();
        assert_eq!(m.structured_data[0].params.len(), 3);
        assert_eq!(m.msg, b"An application event log entry...");
        let m = Message::parse(
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
        )
        .unwrap();
        assert_eq!(m.structured_data.len(), 2);
        assert!(m.msg.is_empty());
    }

    #[test]
    fn structured_data_escapes_and_errors() {
        let m = Message::parse(b"<13>1 - - - - - [a b=\"x\\\"y\\]z\"] m").unwrap();
        assert_eq!(m.structured_data[0].params[0], ("b", &b"x\\\"y\\]z"[..]));
        for bad in [
            &b"<13>1 - - - - - [a b=\"x] m"[..],
            b"<13>1 - - - - - [a b=x] m",
            b"<13>1 - - - - - [] m",
            b"<13>1 - - - - - [a b=\"x\"]m",
            b"<13>1 - - - - - x",
            b"<13>1 - - - - - [a b=\"x\\",
        ] {
            assert_eq!(
                Message::parse(bad),
                Err(ParseError::BadStructuredData),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!("<13>1 - - - - - {} m", "[a]".repeat(MAX_SD_ELEMENTS + 1));
        assert_eq!(
            Message::parse(many.as_bytes()),
            Err(ParseError::BadStructuredData)
        );
    }

    #[test]
    fn rfc5424_header_errors_name_the_field() {
        for (bad, field) in [
            (&b"<13>1 yesterday - - - - - m"[..], "timestamp"),
            (b"<13>1 2003-10-11T22:14:15 - - - - - m", "timestamp"),
            (
                b"<13>1 2003-10-11T22:14:15.1234567Z - - - - - m",
                "timestamp",
            ),
            (b"<13>1 -  - - - - m", "hostname"),
            (
                b"<13>1 - h aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa - - - m",
                "app-name",
            ),
            (
                b"<13>1 - h a - 123456789012345678901234567890123 - m",
                "msgid",
            ),
            (b"<13>1 - h\x01 - - - - m", "hostname"),
        ] {
            assert_eq!(Message::parse(bad), Err(ParseError::BadHeader(field)));
        }
        assert!(Message::parse(b"<13>1 2003-08-24T05:14:15.000003-07:00 h a p m - x").is_ok());
    }

    #[test]
    fn priority_is_validated() {
        for bad in [
            &b"hello"[..],
            b"<>x",
            b"<192>x",
            b"<013>x",
            b"<1000>x",
            b"<1a>x",
            b"<13",
        ] {
            assert_eq!(Message::parse(bad), Err(ParseError::BadPriority));
        }
        assert_eq!(Message::parse(b"\n\0"), Err(ParseError::Empty));
        let m = Message::parse(b"<0>x").unwrap();
        assert_eq!((m.facility.name(), m.severity.name()), ("kern", "emerg"));
        let m = Message::parse(b"<191>x").unwrap();
        assert_eq!((m.facility.name(), m.severity.name()), ("local7", "debug"));
    }

    #[test]
    fn rfc3164_fields_are_each_optional() {
        // No timestamp: no hostname either, the first word may be a tag.
        let m = Message::parse(b"<14>anaconda[12]: Installing").unwrap();
        assert_eq!(m.timestamp, None);
        assert_eq!(
            (m.hostname, m.app_name, m.proc_id),
            (None, Some("anaconda"), Some("12"))
        );
        assert_eq!(m.msg, b"Installing");
        // Timestamp and tag without a hostname (busybox and others).
        let m = Message::parse(b"<14>Nov  1 07:49:10 udhcpc: lease obtained").unwrap();
        assert_eq!(m.timestamp, Some("Nov  1 07:49:10"));
        assert_eq!((m.hostname, m.app_name), (None, Some("udhcpc")));
        // RFC 3339 timestamp, as rsyslog forwards.
        let m = Message::parse(b"<14>2026-11-21T07:49:10+01:00 node1 kernel: hi").unwrap();
        assert_eq!(
            (m.timestamp, m.hostname, m.app_name),
            (
                Some("2026-11-21T07:49:10+01:00"),
                Some("node1"),
                Some("kernel")
            )
        );
        // Only text.
        let m = Message::parse(b"<14>just some words: here").unwrap();
        assert_eq!((m.app_name, m.msg), (None, &b"just some words: here"[..]));
        let m = Message::parse(b"<14>").unwrap();
        assert!(m.msg.is_empty());
        // Non-UTF-8 bytes stay in the message.
        let m = Message::parse(b"<14>Nov 21 07:49:10 h t: \xff\x1b[31m").unwrap();
        assert_eq!(m.msg, b"\xff\x1b[31m");
        // A bad pid bracket leaves everything in the message.
        let m = Message::parse(b"<14>t[: x").unwrap();
        assert_eq!((m.app_name, m.msg), (None, &b"t[: x"[..]));
    }

    #[test]
    fn never_panics_on_truncations_and_mutations() {
        let seeds = [LOGGER_3164, LOGGER_3164_PID, LOGGER_5424, LOGGER_5424_BARE];
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for seed in seeds {
            for len in 0..=seed.len() {
                let _ = Message::parse(&seed[..len]);
            }
            for _ in 0..5000 {
                let mut bytes = seed.to_vec();
                for _ in 0..3 {
                    let state = next();
                    let at = (state % bytes.len() as u64) as usize;
                    bytes[at] = (state >> 32) as u8;
                }
                let _ = Message::parse(&bytes);
            }
        }
    }
}
