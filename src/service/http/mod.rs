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
//! Decisions (routes, which machine, which script, status and headers) are
//! [`crate::policy::http::respond`]'s; [`connection`] reads heads, executes the plans and
//! writes the access log.

use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn, Level};
use socket2::{Domain, Socket, Type};

use crate::config::Config;
use crate::inventory::InventoryStore;
use crate::policy::budget::{Kind, Origin};
use crate::service::log_gate::LogGate;
use crate::service::metrics::Metrics;
use crate::service::{Context, Service};
use crate::store::Store;

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

mod connection;

use connection::Connection;

/// What connection threads share.
pub(crate) struct Shared {
    /// Replaced whole by a configuration reload; each request reads one snapshot.
    pub(crate) config: Store<Config>,
    pub(crate) store: Arc<InventoryStore>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started: Instant,
    pub(crate) connections: AtomicUsize,
    pub(crate) downloads: AtomicUsize,
    pub(crate) log: Arc<LogGate>,
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
            log: ctx.log.clone(),
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
            let line = format!(
                "http {peer}: refused, {open} connections open (the cap is {MAX_CONNECTIONS})"
            );
            shared
                .log
                .line(Kind::Http, Origin::Ip(peer.ip()), Level::Warn, &line);
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

/// What a connection or download over its cap gets, written straight away.
pub(crate) const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// Decrements a counter when dropped (a connection or download slot, even on panic).
pub(crate) struct Counted<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
