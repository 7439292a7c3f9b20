//! The HTTP service: iPXE scripts, iPXE binaries, boot assets, `/healthcheck` and `/metrics`.
//!
//! A small HTTP/1.1 server of its own (GET and HEAD, keep-alive, one `Range`), because
//! tiny_http cannot be bounded: its connection pool grows without limit, it has no read or
//! idle timeouts, and one failed `accept` ends its accept thread (deps.md).
//!
//! - The listening socket is in the main poll loop. Each accepted connection gets a thread
//!   (small stack) up to [`MAX_CONNECTIONS`]; over that it gets `503` at once and is closed.
//! - Every connection has a read timeout ([`IDLE_TIMEOUT`]: a client that sends nothing, or
//!   only part of a request head, is dropped) and a write timeout ([`WRITE_TIMEOUT`]: a client
//!   that stops reading is dropped).
//! - File bodies (binaries, assets) take one of [`MAX_DOWNLOADS`] download slots, so slow
//!   multi-hundred-MB downloads can never take the places that script requests use; a download
//!   over that gets `503` with `Retry-After`.
//! - Bodies carry `Content-Length` always (UEFI HTTP boot needs it) and go out with the
//!   kernel's `sendfile` (std's `io::copy` from a file to a socket).
//!
//! Decisions (routes, which machine, which script) are [`crate::policy::http`]'s.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use log::{info, warn};
use socket2::{Domain, Socket, Type};

use crate::config::Config;
use crate::inventory::InventoryStore;
use crate::io::files::{open_beneath, send_file, Links, OpenError};
use crate::policy::http::{client_ip, route, script_for, Route, ScriptSettings};
use crate::service::metrics::Metrics;
use crate::service::{Context, Service};
use crate::store::Store;
use crate::wire::http::{
    head_end, http_date, parse_range, HeadError, Method, RangeRequest, RequestHead, MAX_HEAD_LEN,
};

/// Connections served at once; one thread each.
pub const MAX_CONNECTIONS: usize = 512;
/// File bodies being sent at once (part of [`MAX_CONNECTIONS`]).
pub const MAX_DOWNLOADS: usize = 384;
/// A connection that sends no complete request head for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// A client that accepts no data for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECTION_STACK: usize = 256 << 10;
const ACCEPT_BATCH: usize = 64;

/// What connection threads share.
struct Shared {
    /// Replaced whole by a configuration reload; each request reads one snapshot.
    config: Store<Config>,
    store: Arc<InventoryStore>,
    metrics: Arc<Metrics>,
    started: Instant,
    connections: AtomicUsize,
    downloads: AtomicUsize,
}

pub struct HttpService {
    /// Closed when a shutdown begins; downloads already running go on.
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl HttpService {
    pub fn start(config: &Config, ctx: &Context) -> io::Result<HttpService> {
        let addr = SocketAddrV4::new(config.http.addr, config.http.port);
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket
            .bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            config: Store::new(config.clone()),
            store: ctx.inventory.clone(),
            metrics: ctx.metrics.clone(),
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            downloads: AtomicUsize::new(0),
        });
        let open = shared.clone();
        ctx.metrics
            .observe("netbootd_http_connections", "gauge", move || {
                open.connections.load(Ordering::Relaxed).to_string()
            });
        Ok(HttpService {
            listener: Some(socket.into()),
            shared,
        })
    }

    /// Accepts what is waiting; each connection gets its thread, or 503 over the cap.
    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            let (stream, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    warn!("http: accept failed: {e}");
                    return;
                }
            };
            self.on_connection(stream, peer);
        }
    }

    fn on_connection(&self, mut stream: TcpStream, peer: SocketAddr) {
        let shared = &self.shared;
        let open = shared.connections.fetch_add(1, Ordering::AcqRel);
        // Responses are written whole (head and small body in one write), so Nagle's
        // algorithm would only add a delayed-ACK wait (40 ms) between a head and a file.
        let ready = stream.set_nonblocking(false).is_ok()
            && stream.set_nodelay(true).is_ok()
            && stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_ok()
            && stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok();
        if open >= MAX_CONNECTIONS || !ready {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = stream.write_all(BUSY);
            warn!("http {peer}: refused, {open} connections open (the cap is {MAX_CONNECTIONS})");
            shared
                .metrics
                .inc("netbootd_http_connections_refused_total", &[]);
            return;
        }
        let worker = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("http".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _guard = Counted(&worker.connections);
                Connection::new(stream, peer, &worker).serve();
            });
        if let Err(e) = spawned {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            warn!("http {peer}: no thread for the connection: {e}");
        }
    }
}

/// The listener in the loop; connections on their own threads. A shutdown closes the
/// listener and lets running downloads finish.
impl Service for HttpService {
    fn name(&self) -> &'static str {
        "HTTP"
    }

    fn describe(&self) -> String {
        let config = self.shared.config.snapshot();
        let h = &config.http;
        format!(
            "HTTP on {}:{}: scripts {}, iPXE binaries {}, assets {}; at most {MAX_CONNECTIONS} connections ({MAX_DOWNLOADS} downloads), idle timeout {}s",
            h.addr,
            h.port,
            on_off(h.ipxe_script_enabled),
            on_off(h.ipxe_binary_enabled),
            on_off(config.assets_dir.is_some()),
            IDLE_TIMEOUT.as_secs()
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.listener.iter().map(|l| l.as_fd()).collect()
    }

    fn on_readable(&mut self, _index: usize, _now: Instant) {
        self.accept();
    }

    /// The requests from now on use `config` (script settings, directories, addresses in
    /// URLs); each request reads one snapshot.
    fn reconfigure(&mut self, config: &Config) {
        self.shared.config.replace(config.clone());
    }

    fn drain(&mut self) -> bool {
        self.listener = None;
        true
    }

    fn in_flight(&self) -> Option<(usize, &'static str)> {
        Some((
            self.shared.downloads.load(Ordering::Acquire),
            "HTTP downloads",
        ))
    }

    /// Downloads run on their own threads with their own timeouts: they are left, not cut.
    fn abort(&mut self, grace: Duration) {
        let d = self.shared.downloads.load(Ordering::Acquire);
        info!("leaving {d} HTTP downloads unfinished after {grace:?}");
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// Decrements a counter when dropped (a connection or download slot, even on panic).
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body.
enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of the file from `offset`.
    File {
        file: File,
        offset: u64,
        len: u64,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
    /// The machine, for the access log.
    mac: Option<String>,
    /// Extra words for the access log (the script kind, why a 404).
    note: String,
}

impl Response {
    fn text(status: u16, content_type: &str, body: String) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body.into_bytes()),
            mac: None,
            note: String::new(),
        }
    }

    fn status(status: u16, note: impl Into<String>) -> Response {
        let mut r = Response::text(status, "text/plain", format!("{}\n", reason(status)));
        r.note = note.into();
        r
    }
}

fn reason(status: u16) -> &'static str {
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

struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'a Shared,
    buf: Vec<u8>,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Connection<'a> {
        Connection {
            stream,
            peer,
            shared,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Requests one after another until the client closes, times out, or asks to close.
    fn serve(&mut self) {
        loop {
            let head = match self.read_head() {
                Ok(Some(head)) => head,
                Ok(None) => return, // closed or idle: nothing to answer
                Err(status) => {
                    let started = Instant::now();
                    let r = Response::status(status, "bad request head");
                    let _ = self.send(&r, false, false);
                    self.log("-", "-", &r, started, 0);
                    return;
                }
            };
            let started = Instant::now();
            let (response, keep) = match self.parse_and_answer(&head) {
                Ok((r, keep)) => (r, keep),
                Err(r) => (r, false),
            };
            let method = head_method(&head);
            let is_head = method == "HEAD";
            let sent = self.send(&response, keep, is_head);
            let path = head_path(&head);
            self.log(
                &method,
                &path,
                &response,
                started,
                *sent.as_ref().unwrap_or(&0),
            );
            if sent.is_err() || !keep {
                return;
            }
        }
    }

    /// Reads one request head; `Ok(None)` when the client closed or went idle between
    /// requests, `Err(status)` for a head too large or cut off.
    fn read_head(&mut self) -> Result<Option<Vec<u8>>, u16> {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = head_end(&self.buf) {
                let head = self.buf[..end].to_vec();
                self.buf.drain(..end);
                return Ok(Some(head));
            }
            if self.buf.len() > MAX_HEAD_LEN {
                return Err(431);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(408)
                    };
                }
                Err(_) => return Ok(None),
            }
        }
    }

    fn parse_and_answer(&mut self, raw: &[u8]) -> Result<(Response, bool), Response> {
        let head = RequestHead::parse(raw).map_err(|e| {
            Response::status(
                if e == HeadError::TooManyHeaders {
                    431
                } else {
                    400
                },
                e.to_string(),
            )
        })?;
        if head.has_body() {
            return Err(Response::status(413, "request with a body"));
        }
        if let Method::Other(m) = &head.method {
            let mut r = Response::status(405, format!("method {m}"));
            r.headers.push(("Allow", "GET, HEAD".into()));
            return Err(r);
        }
        let keep = head.keep_alive();
        Ok((self.answer(&head), keep))
    }

    fn answer(&self, head: &RequestHead) -> Response {
        let route = route(head.path());
        let shared = self.shared;
        let cfg = &*shared.config.snapshot();
        let mut response = match &route {
            Route::ScriptByIp | Route::ScriptByMac(_) if !cfg.http.ipxe_script_enabled => {
                Response::status(404, "scripts are off")
            }
            Route::ScriptByIp => {
                let forwarded: Vec<&str> = head.headers_named("x-forwarded-for").collect();
                let ip = client_ip(self.peer.ip(), &forwarded, &cfg.http.trusted_proxies);
                let inventory = shared.store.snapshot();
                let machine = match ip {
                    IpAddr::V4(v4) => inventory.by_ip(v4),
                    IpAddr::V6(_) => None,
                };
                let mut r = self.script(cfg, machine, head.header("host"));
                if r.mac.is_none() {
                    r.note = format!("{} (client {ip})", r.note);
                }
                r
            }
            Route::ScriptByMac(mac) => {
                let inventory = shared.store.snapshot();
                let mut r = self.script(cfg, inventory.by_mac(*mac), head.header("host"));
                r.mac.get_or_insert_with(|| mac.to_string());
                r
            }
            Route::IpxeBinary(_) if !cfg.http.ipxe_binary_enabled => {
                Response::status(404, "iPXE binaries are off")
            }
            Route::IpxeBinary(name) => match &cfg.ipxe_dir {
                Some(dir) => self.file(dir, name, Links::TopLevelTrusted, head),
                None => Response::status(404, "no --ipxe-dir"),
            },
            Route::Asset(path) => match &cfg.assets_dir {
                Some(dir) => self.file(dir, path, Links::Inside, head),
                None => Response::status(404, "no --assets-dir"),
            },
            Route::Health => Response::text(200, "application/json", self.health()),
            Route::Metrics => Response::text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics(),
            ),
            Route::NotFound(why) => Response::status(404, *why),
        };
        shared.metrics.inc(
            "netbootd_http_requests_total",
            &[
                ("route", route.label()),
                ("status", &response.status.to_string()),
            ],
        );
        if response.status >= 400 && response.note.is_empty() {
            response.note = "refused".into();
        }
        response
    }

    fn script(
        &self,
        cfg: &Config,
        machine: Option<&crate::inventory::Machine>,
        host: Option<&str>,
    ) -> Response {
        let settings = ScriptSettings {
            http: &cfg.http,
            syslog_ip: cfg.dhcp.syslog_ip,
            base_url: format!("http://{}", authority(cfg, host)),
        };
        let mac = machine.map(|m| m.mac.to_string());
        let mut r = match script_for(machine, &settings) {
            Ok((kind, text)) => {
                let mut r = Response::text(200, "text/plain; charset=utf-8", text);
                r.note = format!("script {}", kind.label());
                r
            }
            Err(why) => Response::status(404, why.describe()),
        };
        r.mac = mac;
        r
    }

    /// A file below `root`, whole or one range, with the download slot it needs.
    fn file(&self, root: &Path, relative: &str, links: Links, head: &RequestHead) -> Response {
        let (file, size, real) = match open_beneath(root, relative, links) {
            Ok(found) => found,
            Err(OpenError::NotFound) => return Response::status(404, "no such file"),
            Err(OpenError::Outside) => {
                return Response::status(404, "refused: leads outside the served directory")
            }
            Err(OpenError::Io(e)) => return Response::status(404, format!("cannot read: {e}")),
        };
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| http_date(d.as_secs()));
        let (status, offset, len) = match parse_range(head.header("range"), size) {
            RangeRequest::Full => (200, 0, size),
            RangeRequest::Partial { start, end } => (206, start, end - start + 1),
            RangeRequest::Unsatisfiable => {
                let mut r = Response::status(416, "range not satisfiable");
                r.headers.push(("Content-Range", format!("bytes */{size}")));
                return r;
            }
        };
        let mut headers = vec![
            ("Content-Type", content_type(&real).to_string()),
            ("Accept-Ranges", "bytes".to_string()),
        ];
        if let Some(m) = modified {
            headers.push(("Last-Modified", m));
        }
        if status == 206 {
            headers.push((
                "Content-Range",
                format!("bytes {offset}-{}/{size}", offset + len - 1),
            ));
        }
        Response {
            status,
            headers,
            body: Body::File { file, offset, len },
            mac: None,
            note: real.display().to_string(),
        }
    }

    /// Writes the response; returns the body bytes sent.
    fn send(&mut self, r: &Response, keep: bool, head_only: bool) -> io::Result<u64> {
        let _slot = match (&r.body, head_only) {
            (Body::File { .. }, false) => {
                let n = self.shared.downloads.fetch_add(1, Ordering::AcqRel);
                let slot = Counted(&self.shared.downloads);
                if n >= MAX_DOWNLOADS {
                    self.stream.write_all(BUSY)?;
                    return Err(io::Error::other("download slots full"));
                }
                Some(slot)
            }
            _ => None,
        };
        let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
        for (name, value) in &r.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nServer: netbootd\r\nConnection: {}\r\n\r\n",
            r.body.len(),
            if keep { "keep-alive" } else { "close" }
        ));
        if head_only {
            self.stream.write_all(out.as_bytes())?;
            return Ok(0);
        }
        match &r.body {
            Body::Bytes(b) => {
                // One write: head and body leave in the same segment.
                let mut whole = out.into_bytes();
                whole.extend_from_slice(b);
                self.stream.write_all(&whole)?;
                Ok(b.len() as u64)
            }
            Body::File { file, offset, len } => {
                // Corked, the head and the file's first bytes share full segments.
                let cork = |on| socket2::SockRef::from(&self.stream).set_tcp_cork(on);
                let _ = cork(true);
                (&self.stream).write_all(out.as_bytes())?;
                let sent = send_file(&self.stream, file, *offset, *len);
                let _ = cork(false);
                sent.map(|()| *len)
            }
        }
    }

    /// The access log line: client, method, path, status, bytes, duration, machine, note.
    fn log(&self, method: &str, path: &str, r: &Response, started: Instant, bytes: u64) {
        let mac = r.mac.as_deref().unwrap_or("-");
        info!(
            "http {} {method} {path} -> {} {bytes} bytes in {:.3}s mac={mac} {}",
            self.peer,
            r.status,
            started.elapsed().as_secs_f64(),
            r.note
        );
    }

    fn health(&self) -> String {
        let s = self.shared;
        let inventory = s.store.snapshot();
        format!(
            "{{\"git_rev\":\"{}\",\"uptime\":{:.3},\"version\":\"{}\",\"machines\":{},\"inventory_generation\":{},\"http_connections\":{},\"http_downloads\":{}}}\n",
            option_env!("NETBOOTD_GIT_REV").unwrap_or("unknown"),
            s.started.elapsed().as_secs_f64(),
            env!("CARGO_PKG_VERSION"),
            inventory.len(),
            s.store.generation(),
            s.connections.load(Ordering::Relaxed),
            s.downloads.load(Ordering::Relaxed),
        )
    }

    fn metrics(&self) -> String {
        self.shared.metrics.render()
    }
}

fn head_method(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.split(' ')
        .next()
        .unwrap_or("-")
        .chars()
        .take(16)
        .collect()
}

/// The request path for the log, with control characters escaped.
fn head_path(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let target = text.split(' ').nth(1).unwrap_or("-");
    target
        .chars()
        .take(512)
        .flat_map(char::escape_default)
        .collect()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ipxe") | Some("txt") | Some("cfg") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("iso") => "application/x-iso9660-image",
        _ => "application/octet-stream",
    }
}

/// host[:port] for URLs in scripts: the request's `Host` when it is a plain host name or
/// address (the client reached us by it), else the listening address (the DHCP server
/// address when listening on all addresses).
fn authority(cfg: &Config, host: Option<&str>) -> String {
    let plain = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    };
    match host {
        Some(h) if plain(h) => h.to_string(),
        _ => {
            let ip = if cfg.http.addr.is_unspecified() {
                cfg.dhcp.ip_for_packet
            } else {
                cfg.http.addr
            };
            format!("{ip}:{}", cfg.http.port)
        }
    }
}
