//! A small synchronous HTTP/1.1 client for the remote inventory sources and the asset
//! cache's upstreams, run on background threads only (never on the loop's): one GET with a
//! connect timeout, a read timeout, a deadline for the whole exchange, a cap on the body, a
//! bounded number of redirects (never from https to http), an optional bearer token and
//! `If-None-Match` (a 304 comes back as [`Fetched::NotModified`]). A body is read whole
//! ([`get`]) or as it arrives ([`open`]); it may be framed by length, chunked or by the close.
//! `https://` URLs go through TLS ([`crate::io::tls`]) with the request's client
//! configuration; without one they are refused.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::io::tls::{self, Stream};
use crate::wire::http::head_end;
use crate::wire::response::{Chunked, Framing, ResponseHead, Scheme, Target, MAX_HEAD};

/// The bounds of one fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub connect: Duration,
    /// Longest wait for any bytes.
    pub read: Duration,
    /// The whole exchange, redirects included.
    pub total: Duration,
    pub max_body: usize,
    pub max_redirects: u8,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(10),
            total: Duration::from_secs(30),
            max_body: 64 << 20,
            max_redirects: 3,
        }
    }
}

/// One GET.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    pub url: &'a str,
    /// The ETag of the copy held: a 304 means it is still current.
    pub etag: Option<&'a str>,
    pub bearer: Option<&'a str>,
    pub accept: Option<&'a str>,
    /// The `Last-Modified` of the copy held, sent as `If-Modified-Since`.
    pub if_modified_since: Option<&'a str>,
    /// How `https://` URLs are verified (and the client authenticated).
    pub tls: Option<&'a tls::Client>,
}

/// A response read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    Fresh(Response),
    NotModified,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    Url(String),
    /// The TLS handshake or record layer failed, or https was asked without a TLS setting.
    Tls(String),
    Connect(String),
    /// What was being waited for.
    Timeout(&'static str),
    Io(String),
    /// The server broke the protocol (bad head, bad chunk, wrong length).
    Protocol(String),
    /// The body would be larger than [`Limits::max_body`].
    TooLarge(usize),
    /// The connection closed before the body its head announced.
    Truncated {
        got: usize,
    },
    TooManyRedirects(u8),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Url(why) => write!(f, "bad URL: {why}"),
            FetchError::Tls(why) => write!(f, "TLS: {why}"),
            FetchError::Connect(why) => write!(f, "cannot connect: {why}"),
            FetchError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            FetchError::Io(why) => write!(f, "read failed: {why}"),
            FetchError::Protocol(why) => write!(f, "bad response: {why}"),
            FetchError::TooLarge(max) => write!(f, "body larger than {max} bytes"),
            FetchError::Truncated { got } => {
                write!(f, "connection closed after {got} bytes of the body")
            }
            FetchError::TooManyRedirects(n) => write!(f, "more than {n} redirects"),
        }
    }
}

/// GETs `req.url` and reads its body whole (at most `limits.max_body` bytes), following up
/// to `limits.max_redirects` redirects.
pub fn get(req: &Request, limits: &Limits) -> Result<Fetched, FetchError> {
    let deadline = Instant::now() + limits.total;
    let mut body = open_by(req, limits, deadline)?;
    if body.status == 304 {
        return Ok(Fetched::NotModified);
    }
    let max = limits.max_body;
    if body.length.is_some_and(|n| n > max as u64) {
        return Err(FetchError::TooLarge(max));
    }
    body.read_to_end(max, deadline, limits.read)?;
    Ok(Fetched::Fresh(Response {
        status: body.status,
        content_type: body.content_type,
        etag: body.etag,
        body: body.pending,
    }))
}

fn remaining(deadline: Instant, what: &'static str) -> Result<Duration, FetchError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(FetchError::Timeout(what))
}

fn connect(
    target: &Target,
    req: &Request,
    limits: &Limits,
    deadline: Instant,
) -> Result<Stream, FetchError> {
    match (target.scheme, req.tls) {
        (Scheme::Http, _) => Ok(Stream::Plain(connect_tcp(target, limits, deadline)?)),
        (Scheme::Https, Some(client)) => {
            let socket = connect_tcp(target, limits, deadline)?;
            Stream::tls(client, &target.host, socket).map_err(FetchError::Tls)
        }
        (Scheme::Https, None) => Err(FetchError::Tls(
            "https is not set up for this source".into(),
        )),
    }
}

fn connect_tcp(
    target: &Target,
    limits: &Limits,
    deadline: Instant,
) -> Result<TcpStream, FetchError> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| FetchError::Connect(format!("{}: {e}", target.host)))?
        .collect();
    let mut last = FetchError::Connect(format!("{}: no address", target.host));
    for addr in addrs {
        let wait = remaining(deadline, "the connection")?.min(limits.connect);
        match TcpStream::connect_timeout(&addr, wait) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = FetchError::Timeout("the connection")
            }
            Err(e) => last = FetchError::Connect(format!("{addr}: {e}")),
        }
    }
    Err(last)
}

/// What went wrong in a read or write: a TLS failure (rustls reports them as invalid data) or
/// an I/O error.
fn io_error(e: std::io::Error) -> FetchError {
    match e.get_ref() {
        Some(inner) if e.kind() == std::io::ErrorKind::InvalidData => {
            FetchError::Tls(inner.to_string())
        }
        _ => FetchError::Io(e.to_string()),
    }
}

/// Reads into `buf` within the read timeout and the deadline; 0 at the end of the stream.
/// A TLS peer that closes without close_notify ends the stream too: the framing (length,
/// chunks, or a JSON body that must parse) catches a truncation.
fn read_some(
    stream: &mut Stream,
    buf: &mut [u8],
    limits: &Limits,
    deadline: Instant,
    what: &'static str,
) -> Result<usize, FetchError> {
    let wait = remaining(deadline, what)?.min(limits.read);
    stream
        .socket()
        .set_read_timeout(Some(wait))
        .map_err(io_error)?;
    match stream.read(buf) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(FetchError::Timeout(what))
        }
        Err(e) => Err(io_error(e)),
    }
}

/// Sends the request and reads the response's head: the stream, the head, and the bytes of
/// the body read with it.
fn send(
    target: &Target,
    req: &Request,
    limits: &Limits,
    deadline: Instant,
) -> Result<(Stream, ResponseHead, Vec<u8>), FetchError> {
    let mut stream = connect(target, req, limits, deadline)?;
    let bearer = req.bearer.map(|t| format!("Bearer {t}"));
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(etag) = req.etag {
        extra.push(("If-None-Match", etag));
    }
    if let Some(auth) = &bearer {
        extra.push(("Authorization", auth));
    }
    if let Some(accept) = req.accept {
        extra.push(("Accept", accept));
    }
    if let Some(since) = req.if_modified_since {
        extra.push(("If-Modified-Since", since));
    }
    let wait = remaining(deadline, "the request to be sent")?;
    stream
        .socket()
        .set_write_timeout(Some(wait.min(limits.read)))
        .map_err(io_error)?;
    stream
        .write_all(&target.get_request(&extra))
        .and_then(|()| stream.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                FetchError::Timeout("the TLS handshake or the request to be sent")
            }
            _ => io_error(e),
        })?;

    // The head.
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(FetchError::Protocol(format!("head over {MAX_HEAD} bytes")));
        }
        let n = read_some(
            &mut stream,
            &mut chunk,
            limits,
            deadline,
            "the response head",
        )?;
        if n == 0 {
            return Err(FetchError::Protocol(
                "connection closed before a whole head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = ResponseHead::parse(&buf[..head_len]).map_err(FetchError::Protocol)?;
    Ok((stream, head, buf[head_len..].to_vec()))
}

/// A response whose body is read as it arrives, line by line (a Kubernetes WATCH stream).
pub struct Streaming {
    pub status: u16,
    pub content_type: Option<String>,
    /// The body's length when the head gave one (not chunked, not until the close).
    pub length: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    stream: Stream,
    framing: Framing,
    decoder: Chunked,
    /// Body bytes still to come, for a body framed by length.
    left: u64,
    /// Decoded body bytes not handed out yet.
    pending: Vec<u8>,
    ended: bool,
}

/// Opens `req.url`, following up to `limits.max_redirects` redirects (never from https to
/// http), and reads the head; the body is read with [`Streaming::next_line`],
/// [`Streaming::next_chunk`] or [`Streaming::rest`].
pub fn open(req: &Request, limits: &Limits) -> Result<Streaming, FetchError> {
    open_by(req, limits, Instant::now() + limits.total)
}

/// [`open`], the head due by `deadline`.
fn open_by(req: &Request, limits: &Limits, deadline: Instant) -> Result<Streaming, FetchError> {
    let mut target = Target::parse(req.url).map_err(FetchError::Url)?;
    for _ in 0..=limits.max_redirects {
        let (stream, head, first) = send(&target, req, limits, deadline)?;
        if let 301 | 302 | 303 | 307 | 308 = head.status {
            let location = head
                .header("location")
                .ok_or_else(|| FetchError::Protocol("redirect without Location".into()))?;
            let next = target.resolve(location).map_err(FetchError::Url)?;
            // The token and the data were meant to travel encrypted.
            if target.scheme == Scheme::Https && next.scheme == Scheme::Http {
                return Err(FetchError::Url(format!(
                    "redirect from https to {location} refused"
                )));
            }
            target = next;
            continue;
        }
        let framing = head.framing().map_err(FetchError::Protocol)?;
        let mut body = Streaming {
            status: head.status,
            content_type: head.header("content-type").map(str::to_string),
            length: match framing {
                Framing::Length(n) => Some(n),
                _ => None,
            },
            etag: head.header("etag").map(str::to_string),
            last_modified: head.header("last-modified").map(str::to_string),
            stream,
            framing,
            decoder: Chunked::default(),
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            pending: Vec::new(),
            ended: framing == Framing::None,
        };
        body.take_in(&first)?;
        return Ok(body);
    }
    Err(FetchError::TooManyRedirects(limits.max_redirects))
}

impl Streaming {
    /// Decodes `input` into [`Self::pending`].
    fn take_in(&mut self, input: &[u8]) -> Result<(), FetchError> {
        match self.framing {
            Framing::Chunked => {
                self.decoder
                    .feed(input, &mut self.pending)
                    .map_err(FetchError::Protocol)?;
                self.ended = self.decoder.is_done();
            }
            Framing::Length(_) => {
                let take = input
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.pending.extend_from_slice(&input[..take]);
                self.left -= take as u64;
                self.ended = self.left == 0;
            }
            Framing::Close => self.pending.extend_from_slice(input),
            Framing::None => {}
        }
        Ok(())
    }

    /// Reads more of the body, waiting at most `wait`; false at its end.
    fn read_more(&mut self, wait: Duration) -> Result<bool, FetchError> {
        if self.ended {
            return Ok(false);
        }
        let mut chunk = [0u8; 16 * 1024];
        let limits = Limits {
            read: wait,
            ..Limits::default()
        };
        let deadline = Instant::now() + wait;
        let n = read_some(
            &mut self.stream,
            &mut chunk,
            &limits,
            deadline,
            "the stream",
        )?;
        if n == 0 {
            if self.framing == Framing::Close {
                self.ended = true;
                return Ok(false);
            }
            return Err(FetchError::Truncated {
                got: self.pending.len(),
            });
        }
        self.take_in(&chunk[..n])?;
        Ok(true)
    }

    /// The next line of the body (without its newline; blank lines skipped), waiting at most
    /// `wait` for it: `Ok(None)` at the end of the body, [`FetchError::Timeout`] when it did
    /// not come in time (what arrived of it is kept for the next call). A line longer than
    /// `max_line` is an error.
    pub fn next_line(
        &mut self,
        wait: Duration,
        max_line: usize,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let until = Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).take(end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.pending.len() > max_line {
                return Err(FetchError::TooLarge(max_line));
            }
            let wait = remaining(until, "the stream")?;
            if !self.read_more(wait)? {
                // The last line may lack its newline.
                let line = std::mem::take(&mut self.pending);
                return Ok(Some(line).filter(|l| !l.iter().all(u8::is_ascii_whitespace)));
            }
        }
    }

    /// The next bytes of the body, waiting at most `wait` for them (the decoded bytes of one
    /// read); `Ok(None)` at the end of the body. A body that ends before its announced length
    /// is [`FetchError::Truncated`].
    pub fn next_chunk(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, FetchError> {
        while self.pending.is_empty() {
            if !self.read_more(wait)? {
                return Ok(None);
            }
        }
        Ok(Some(std::mem::take(&mut self.pending)))
    }

    /// The rest of the body, whole (at most `max` bytes), within `wait`.
    pub fn rest(mut self, wait: Duration, max: usize) -> Result<Vec<u8>, FetchError> {
        self.read_to_end(max, Instant::now() + wait, wait)?;
        Ok(self.pending)
    }

    /// Reads the body to its end into [`Self::pending`]: at most `max` bytes, by `deadline`,
    /// no wait for bytes longer than `each`.
    fn read_to_end(
        &mut self,
        max: usize,
        deadline: Instant,
        each: Duration,
    ) -> Result<(), FetchError> {
        loop {
            if self.pending.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            if !self.read_more(remaining(deadline, "the body")?.min(each))? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server on loopback: answers the first connection with `reply` (written in
    /// pieces, `pause` apart), then closes. Returns its URL.
    fn serve(replies: Vec<Vec<u8>>, pause: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for reply in replies {
                let Ok((mut conn, _)) = listener.accept() else {
                    return;
                };
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head);
                for piece in reply.chunks(7) {
                    if conn.write_all(piece).is_err() {
                        break;
                    }
                    std::thread::sleep(pause);
                }
            }
        });
        format!("http://127.0.0.1:{port}/x")
    }

    fn quick() -> Limits {
        Limits {
            connect: Duration::from_secs(2),
            read: Duration::from_millis(300),
            total: Duration::from_secs(3),
            max_body: 1000,
            max_redirects: 2,
        }
    }

    fn fetch(replies: &[&[u8]]) -> Result<Fetched, FetchError> {
        let url = serve(replies.iter().map(|r| r.to_vec()).collect(), Duration::ZERO);
        get(
            &Request {
                url: &url,
                ..Request::default()
            },
            &quick(),
        )
    }

    #[test]
    fn lengths_chunks_and_closes_give_the_body() {
        let ok = |r: Result<Fetched, FetchError>| match r {
            Ok(Fetched::Fresh(resp)) => resp,
            other => panic!("{other:?}"),
        };
        let r = ok(fetch(&[b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"v1\"\r\nContent-Length: 2\r\n\r\n{}"]));
        assert_eq!(
            (r.status, r.body.as_slice(), r.etag.as_deref()),
            (200, &b"{}"[..], Some("\"v1\""))
        );
        let r = ok(fetch(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"]));
        assert_eq!(r.body, b"abcde");
        let r = ok(fetch(&[b"HTTP/1.0 503 Busy\r\n\r\n{\"status\":503}"]));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (503, &b"{\"status\":503}"[..])
        );
        assert_eq!(
            fetch(&[b"HTTP/1.1 304 Not Modified\r\n\r\n"]),
            Ok(Fetched::NotModified)
        );
        // A redirect to a path on the same server (the second connection).
        let r = ok(fetch(&[
            b"HTTP/1.1 302 Found\r\nLocation: /y\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
        ]));
        assert_eq!(r.body, b"z");
    }

    #[test]
    fn a_stream_is_read_line_by_line_as_it_arrives() {
        let url = serve(
            vec![b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"a\":1\r\n3\r\n}\n\n\r\n4\r\n{}\n\n\r\n0\r\n\r\n".to_vec()],
            Duration::from_millis(30),
        );
        let request = Request {
            url: &url,
            ..Request::default()
        };
        let mut body = open(&request, &quick()).unwrap();
        assert_eq!(body.status, 200);
        let wait = Duration::from_secs(2);
        assert_eq!(body.next_line(wait, 100), Ok(Some(b"{\"a\":1}".to_vec())));
        assert_eq!(body.next_line(wait, 100), Ok(Some(b"{}".to_vec())));
        assert_eq!(body.next_line(wait, 100), Ok(None));
        // A line that does not come in time: a timeout; one too long: an error.
        let url = serve(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n0123456789".to_vec()],
            Duration::from_millis(200),
        );
        let request = Request {
            url: &url,
            ..Request::default()
        };
        let mut body = open(&request, &quick()).unwrap();
        assert_eq!(
            body.next_line(Duration::from_millis(50), 100),
            Err(FetchError::Timeout("the stream"))
        );
        assert_eq!(body.next_line(wait, 5), Err(FetchError::TooLarge(5)));
        // A redirect first: the stream is the second answer's.
        let url = serve(
            vec![
                b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\n\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nmoved\n".to_vec(),
            ],
            Duration::ZERO,
        );
        let request = Request {
            url: &url,
            ..Request::default()
        };
        let mut body = open(&request, &quick()).unwrap();
        assert_eq!((body.status, body.length), (200, Some(6)));
        assert_eq!(body.next_chunk(wait), Ok(Some(b"moved\n".to_vec())));
        assert_eq!(body.next_chunk(wait), Ok(None));
        let no_redirects = Limits {
            max_redirects: 0,
            ..quick()
        };
        let url = serve(
            vec![b"HTTP/1.1 302 Found\r\nLocation: /y\r\n\r\n".to_vec()],
            Duration::ZERO,
        );
        let request = Request {
            url: &url,
            ..Request::default()
        };
        assert_eq!(
            open(&request, &no_redirects).err(),
            Some(FetchError::TooManyRedirects(0))
        );
    }

    #[test]
    fn bad_short_huge_and_slow_responses_are_errors() {
        assert_eq!(
            fetch(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]),
            Err(FetchError::Truncated { got: 3 })
        );
        assert_eq!(
            fetch(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"]),
            Err(FetchError::TooLarge(1000))
        );
        let big = [b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), vec![b'x'; 5000]].concat();
        assert_eq!(fetch(&[&big]), Err(FetchError::TooLarge(1000)));
        assert!(matches!(
            fetch(&[b"SSH-2.0-OpenSSH\r\n\r\n"]),
            Err(FetchError::Protocol(_))
        ));
        assert!(matches!(
            fetch(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]),
            Err(FetchError::Protocol(_))
        ));
        let loop_ = b"HTTP/1.1 302 Found\r\nLocation: /again\r\n\r\n";
        assert_eq!(
            fetch(&[loop_, loop_, loop_, loop_]),
            Err(FetchError::TooManyRedirects(2))
        );
        // A server that stalls mid-body: the read timeout ends it.
        let url = serve(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabcdefghijklmn".to_vec()],
            Duration::from_millis(800),
        );
        let started = Instant::now();
        let r = get(
            &Request {
                url: &url,
                ..Request::default()
            },
            &quick(),
        );
        assert!(matches!(r, Err(FetchError::Timeout(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            get(
                &Request {
                    url: "https://127.0.0.1/",
                    ..Request::default()
                },
                &quick()
            ),
            Err(FetchError::Tls(
                "https is not set up for this source".into()
            ))
        );
    }
}
