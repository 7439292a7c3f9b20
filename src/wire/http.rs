//! HTTP/1.x request heads and the pieces of responses netbootd needs: parse a request head
//! (request line and headers, size-capped by the caller), a single `Range: bytes=` range,
//! percent-decoding of paths, the IMF-fixdate of `Last-Modified`, reason phrases and response
//! heads. Pure; never panics.

use std::fmt;

/// The longest request head read; more gets 431.
pub const MAX_HEAD_LEN: usize = 8192;
/// Headers kept per request; more gets 431.
pub const MAX_HEADERS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request target as sent (path and query).
    pub target: String,
    pub version: Version,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Not `METHOD SP target SP HTTP/1.x`.
    BadRequestLine,
    BadVersion,
    BadHeader,
    TooManyHeaders,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeadError::BadRequestLine => "malformed request line",
            HeadError::BadVersion => "unsupported HTTP version",
            HeadError::BadHeader => "malformed header",
            HeadError::TooManyHeaders => "too many headers",
        })
    }
}

impl std::error::Error for HeadError {}

/// The lines of a head, without their line ends.
fn head_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// The words of a request line: `METHOD target HTTP/1.x`.
fn request_line_words(line: &str) -> std::str::Split<'_, char> {
    line.split(' ')
}

/// Method and target for the access log, from any head, parsed or not: the first two words
/// of its first line, split as [`RequestHead::parse`] splits them, cut to 16 and 512
/// characters, the target with control characters escaped ("-" when missing).
pub fn method_and_target_for_log(head: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(head);
    let mut words = request_line_words(head_lines(&text).next().unwrap_or(""));
    let method = words.next().filter(|m| !m.is_empty()).unwrap_or("-");
    let target = words.next().unwrap_or("-");
    (
        method
            .chars()
            .take(16)
            .flat_map(char::escape_default)
            .collect(),
        target
            .chars()
            .take(512)
            .flat_map(char::escape_default)
            .collect(),
    )
}

/// The reason phrase of the statuses netbootd sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// A response head: the status line, `headers`, then Content-Length (always: UEFI HTTP boot
/// needs it), Server and Connection, and the blank line.
pub fn emit_response_head(
    status: u16,
    headers: &[(&str, String)],
    content_length: u64,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {content_length}\r\nServer: netbootd\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    ));
    out.into_bytes()
}

/// Where the head ends (the index just past `\r\n\r\n`, or `\n\n` from lax clients).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl RequestHead {
    /// Parses a head (as found by [`head_end`]).
    pub fn parse(head: &[u8]) -> Result<RequestHead, HeadError> {
        let text = String::from_utf8_lossy(head);
        let mut lines = head_lines(&text);
        let request_line = lines.next().ok_or(HeadError::BadRequestLine)?;
        let mut parts = request_line_words(request_line);
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HeadError::BadRequestLine);
        };
        if method.is_empty() || target.is_empty() || target.chars().any(|c| c.is_control()) {
            return Err(HeadError::BadRequestLine);
        }
        let version = match version {
            "HTTP/1.1" => Version::Http11,
            "HTTP/1.0" => Version::Http10,
            _ => return Err(HeadError::BadVersion),
        };
        let method = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            other => Method::Other(other.chars().take(16).collect()),
        };
        let mut headers = Vec::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or(HeadError::BadHeader)?;
            if name.is_empty() || name.contains(' ') {
                return Err(HeadError::BadHeader);
            }
            if headers.len() == MAX_HEADERS {
                return Err(HeadError::TooManyHeaders);
            }
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(RequestHead {
            method,
            target: target.to_string(),
            version,
            headers,
        })
    }

    /// The first value of a header (names are compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order (X-Forwarded-For may come more than once).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// HTTP/1.1 keeps the connection unless told to close; 1.0 closes unless told to keep it.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        match self.version {
            Version::Http11 => !connection.contains("close"),
            Version::Http10 => connection.contains("keep-alive"),
        }
    }

    /// True when the request says it carries a body (netbootd serves GET and HEAD only).
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }
}

/// What a `Range` header asks of a body of `len` bytes (RFC 9110 §14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, several ranges or a malformed one: the whole body (ignoring is allowed).
    Full,
    /// Bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeRequest::Full,
        },
        (start, end) => {
            let Some(start) = number(start) else {
                return RangeRequest::Full;
            };
            let end = match end {
                "" => None,
                e => match number(e) {
                    Some(e) if e >= start => Some(e),
                    _ => return RangeRequest::Full,
                },
            };
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial {
                start,
                end: end.unwrap_or(u64::MAX).min(len - 1),
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query value (a
/// Kubernetes `continue` token or resource version).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// Decodes `%XX` escapes. `None` for a bad escape, an encoded NUL or text that is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if value == 0 {
                return None;
            }
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// (year, month 1..=12, day 1..=31) of a day counted from 1970-01-01 (Howard Hinnant's
/// algorithm).
pub fn civil_date(days: u64) -> (i64, i64, i64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) of seconds since the Unix epoch.
pub fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86400;
    let secs = unix_secs % 86400;
    let (year, month, day) = civil_date(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_carry_length_server_and_connection() {
        let head = emit_response_head(206, &[("Content-Range", "bytes 0-1/9".into())], 2, true);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/9\r\nContent-Length: 2\r\n\
             Server: netbootd\r\nConnection: keep-alive\r\n\r\n"
        );
        let head = emit_response_head(503, &[], 0, false);
        assert!(String::from_utf8(head)
            .unwrap()
            .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert_eq!(reason(999), "Internal Server Error");
    }

    #[test]
    fn the_log_reads_method_and_target_from_any_head() {
        assert_eq!(
            method_and_target_for_log(b"GET /a\x1bb HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("GET".to_string(), "/a\\u{1b}b".to_string())
        );
        assert_eq!(
            method_and_target_for_log(b""),
            ("-".to_string(), "-".to_string())
        );
        let long = format!("{} {}", "M".repeat(40), "/".repeat(900));
        let (m, t) = method_and_target_for_log(long.as_bytes());
        assert_eq!((m.len(), t.len()), (16, 512));
    }

    #[test]
    fn a_request_head_parses() {
        let raw = b"GET /02:00:00:00:00:01/auto.ipxe?x=1 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\nRange: bytes=0-9\r\n\r\n";
        assert_eq!(head_end(raw), Some(raw.len()));
        let h = RequestHead::parse(raw).unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path(), "/02:00:00:00:00:01/auto.ipxe");
        assert_eq!(h.header("HOST"), Some("a"));
        assert_eq!(
            h.headers_named("x-forwarded-for").collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2"]
        );
        assert!(h.keep_alive());
        assert!(!h.has_body());
        let h = RequestHead::parse(b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((&h.method, h.keep_alive()), (&Method::Head, false));
    }

    #[test]
    fn bad_heads_are_refused() {
        for raw in [
            &b"GET /\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"",
        ] {
            assert!(RequestHead::parse(raw).is_err(), "{raw:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            RequestHead::parse(raw.as_bytes()),
            Err(HeadError::TooManyHeaders)
        );
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(r("bytes=0-9"), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=90-"), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=90-500"), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-10"), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-500"), Partial { start: 0, end: 99 });
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Full);
        assert_eq!(r("bytes=9-1"), Full);
        assert_eq!(r("bytes=x-1"), Full);
        assert_eq!(r("items=0-1"), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%2e%2e"), Some("..".into()));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%0"), None);
        assert_eq!(percent_decode("%00"), None);
        assert_eq!(percent_decode("%ff"), None);
        // A continue token (base64 with '=' and '/') goes out encoded and comes back whole.
        let token = "eyJ2IjoibWV0YS5rOHMuaW8vdjEi/+=";
        let encoded = percent_encode(token);
        assert_eq!(encoded, "eyJ2IjoibWV0YS5rOHMuaW8vdjEi%2F%2B%3D");
        assert_eq!(percent_decode(&encoded).as_deref(), Some(token));
        assert_eq!(percent_encode("a b~é"), "a%20b~%C3%A9");
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 GMT");
    }
}
