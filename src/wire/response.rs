//! HTTP/1.1 as a client reads it, for the remote inventory sources: a URL split into what a
//! request needs ([`Target`]), the GET request head, the response head ([`ResponseHead`]) and
//! chunked bodies ([`Chunked`], fed in pieces as they arrive). Pure and bounded: every length a
//! server sends is checked before it is used, and nothing here panics on any input.

use std::fmt;

/// Response heads are refused past this many bytes or headers.
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 100;
/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where a request goes: scheme, host, port and the path with its query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    /// `http://host[:port]/path?query` or `https://...`; user info and fragments are refused
    /// (credentials go in a token file, never in a URL that is logged).
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: not an absolute URL"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("{url:?}: scheme {other:?} is not http or https")),
        };
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("{url:?}: spaces or control characters"));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!(
                "{url:?}: user info in the URL (use a token file instead)"
            ));
        }
        if path.contains('#') {
            return Err(format!("{url:?}: a fragment has no place in a request"));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| format!("{url:?}: bad host or port"))?;
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Target {
            scheme,
            host,
            port,
            path,
        })
    }

    /// The target a `Location` header names: absolute, or a path on the same server.
    pub fn resolve(&self, location: &str) -> Result<Target, String> {
        if location.contains("://") {
            Target::parse(location)
        } else if location.starts_with('/') && !location.starts_with("//") {
            let mut next = self.clone();
            next.path = location.to_string();
            if next.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err("Location with spaces or control characters".into());
            }
            Ok(next)
        } else {
            Err(format!(
                "Location {location:?} is neither absolute nor a path"
            ))
        }
    }

    /// `host` or `host:port` as the Host header wants it.
    pub fn authority(&self) -> String {
        let default = matches!(
            (self.scheme, self.port),
            (Scheme::Http, 80) | (Scheme::Https, 443)
        );
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The GET request head, with `extra` headers (name, value) after Host.
    pub fn get_request(&self, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: netbootd/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
            self.path,
            self.authority(),
            env!("CARGO_PKG_VERSION")
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (authority, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:%".contains(&b));
    host_ok.then(|| (host.to_string(), port))
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
    /// 204, 304 and 1xx carry none.
    None,
}

impl ResponseHead {
    /// Parses `head`, which ends with the blank line (see [`crate::wire::http::head_end`]).
    pub fn parse(head: &[u8]) -> Result<ResponseHead, String> {
        if head.len() > MAX_HEAD {
            return Err(format!("response head over {MAX_HEAD} bytes"));
        }
        let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return Err(format!("not an HTTP/1.x status line: {:.60?}", status_line));
        }
        let status = parts
            .next()
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| format!("bad status in {:.60?}", status_line))?;
        let mut headers = Vec::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            if headers.len() == MAX_HEADERS {
                return Err(format!("more than {MAX_HEADERS} headers"));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header line without a colon: {line:.60?}"))?;
            if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
                return Err(format!("bad header name {name:.60?}"));
            }
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(ResponseHead { status, headers })
    }

    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How the body is delimited (RFC 9112 section 6.3): chunked wins over a length; two
    /// different lengths, or a transfer coding other than chunked, are refused.
    pub fn framing(&self) -> Result<Framing, String> {
        if self.status < 200 || self.status == 204 || self.status == 304 {
            return Ok(Framing::None);
        }
        let codings: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == "transfer-encoding")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        match codings.as_slice() {
            [] => {}
            [c] if c.eq_ignore_ascii_case("chunked") => return Ok(Framing::Chunked),
            other => return Err(format!("transfer coding {other:?} is not supported")),
        }
        let mut length = None;
        for (_, v) in self.headers.iter().filter(|(n, _)| n == "content-length") {
            let n: u64 = v
                .parse()
                .map_err(|_| format!("bad Content-Length {v:.40?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("two different Content-Length headers".into());
            }
            length = Some(n);
        }
        Ok(length.map_or(Framing::Close, Framing::Length))
    }
}

/// A chunked body decoder, fed the bytes as they arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked {
    state: State,
    line: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            line: Vec::new(),
        }
    }
}

impl Chunked {
    /// Decodes what it can of `input` into `out`; returns how many bytes of `input` it used
    /// (less than all only once the body is complete).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            match self.state {
                State::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::Size | State::DataEnd | State::Trailer => {
                    let byte = input[i];
                    i += 1;
                    if byte != b'\n' {
                        if self.line.len() == MAX_CHUNK_LINE {
                            return Err("chunk line too long".into());
                        }
                        self.line.push(byte);
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = match self.state {
                        State::DataEnd if line.is_empty() => State::Size,
                        State::DataEnd => return Err("chunk data longer than its size".into()),
                        State::Trailer if line.is_empty() => State::Done,
                        State::Trailer => State::Trailer,
                        _ => match chunk_size(line)? {
                            0 => State::Trailer,
                            n => State::Data(n),
                        },
                    };
                }
                State::Done => {}
            }
        }
        Ok(i)
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let hex = line.split(|b| *b == b';').next().unwrap_or_default();
    let hex = std::str::from_utf8(hex)
        .map_err(|_| "bad chunk size")?
        .trim();
    if hex.is_empty() || hex.len() > 15 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("bad chunk size {hex:.20?}"));
    }
    u64::from_str_radix(hex, 16).map_err(|_| "bad chunk size".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_refuse_what_has_no_place() {
        let t =
            Target::parse("http://smd.example:27779/hsm/v2/State/Components?type=Node").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, t.path.as_str()),
            (
                Scheme::Http,
                "smd.example",
                27779,
                "/hsm/v2/State/Components?type=Node"
            )
        );
        assert_eq!(t.authority(), "smd.example:27779");
        let t = Target::parse("https://[fd00::1]/x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority()),
            ("fd00::1", 443, "[fd00::1]".into())
        );
        assert_eq!(Target::parse("http://h?q=1").unwrap().path, "/?q=1");
        for bad in [
            "ftp://h/",
            "http://user:pw@h/",
            "http://h/a b",
            "http://h/#f",
            "http://h:0/",
            "http://h:99999/",
            "http:///x",
            "h/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let t = Target::parse("http://h:8080/a").unwrap();
        assert_eq!(t.resolve("/b?c").unwrap().to_string(), "http://h:8080/b?c");
        assert_eq!(t.resolve("https://o/").unwrap().to_string(), "https://o/");
        assert!(t.resolve("//o/x").is_err() && t.resolve("rel").is_err());
        let head = String::from_utf8(t.get_request(&[("If-None-Match", "\"e1\"")])).unwrap();
        assert!(
            head.starts_with("GET /a HTTP/1.1\r\nHost: h:8080\r\n"),
            "{head}"
        );
        assert!(head.ends_with("If-None-Match: \"e1\"\r\n\r\n"), "{head}");
    }

    #[test]
    fn response_heads_and_their_framing() {
        let h = ResponseHead::parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"abc\"\r\nContent-Length: 12\r\n\r\n",
        )
        .unwrap();
        assert_eq!((h.status, h.header("etag")), (200, Some("\"abc\"")));
        assert_eq!(h.framing(), Ok(Framing::Length(12)));
        let h = ResponseHead::parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing(), Ok(Framing::Chunked));
        let h = ResponseHead::parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert_eq!(h.framing(), Ok(Framing::Close));
        let h =
            ResponseHead::parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").unwrap();
        assert_eq!(h.framing(), Ok(Framing::None));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            let h = ResponseHead::parse(bad).unwrap();
            assert!(h.framing().is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        for bad in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"\xff\xfe",
        ] {
            assert!(
                ResponseHead::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, wire.len()] {
            let mut dec = Chunked::default();
            let mut out = Vec::new();
            let mut used = 0;
            for part in wire.chunks(piece) {
                used += dec.feed(part, &mut out).unwrap();
            }
            assert!(dec.is_done(), "piece {piece}");
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(used, wire.len() - 4, "stops before what follows the body");
        }
        for bad in [&b"zz\r\n"[..], b"4\r\nWikiX\r\n", b"ffffffffffffffff\r\n"] {
            let mut out = Vec::new();
            assert!(Chunked::default().feed(bad, &mut out).is_err(), "{bad:?}");
        }
        let mut out = Vec::new();
        let long = vec![b'1'; 2000];
        assert!(Chunked::default().feed(&long, &mut out).is_err());
    }
}
