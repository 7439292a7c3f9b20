//! The HTTP service: iPXE scripts, iPXE binaries, boot assets, `/healthcheck` and `/metrics`.
//!
//! A small HTTP/1.1 server of its own (GET and HEAD, keep-alive, one `Range`), because
//! tiny_http cannot be bounded: its connection pool grows without limit, it has no read or
//! idle timeouts, and one failed `accept` ends its accept thread (deps.md).
//!
//! - The listening socket and every connection waiting for a request head are in the main
//!   poll loop, read without blocking: a client that trickles a head costs a descriptor and a
//!   small buffer, never a thread. A head must be complete within [`HEAD_DEADLINE`] of the
//!   accept (or of the end of the previous response, on keep-alive), or the connection is
//!   closed (408 when part of a head came).
//! - One address may hold `--http-max-connections-per-client` connections (32); all addresses
//!   together [`MAX_CONNECTIONS`]. Over either, the connection is refused at once.
//! - Complete requests go to a pool of worker threads ([`pool`], at most
//!   [`pool::MAX_WORKERS`]), which give keep-alive connections back to the loop.
//! - File bodies (binaries, assets) take one of [`MAX_DOWNLOADS`] download slots, so slow
//!   multi-hundred-MB downloads can never take the workers that script requests need; a
//!   download over that gets `503` with `Retry-After`. A client that accepts no data for
//!   [`WRITE_TIMEOUT`] is dropped.
//! - Bodies carry `Content-Length` always (UEFI HTTP boot needs it) and go out with the
//!   kernel's `sendfile`.
//!
//! Decisions (routes, which machine, which script, status and headers) are
//! [`crate::policy::http::respond`]'s; [`connection`] executes the plans and writes the access
//! log.

mod bulk;
mod connection;
mod pool;

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{info, warn, Level};
use socket2::{Domain, Socket, Type};

use crate::config::Config;
use crate::inventory::InventoryStore;
use crate::policy::budget::{Kind, Origin};
use crate::policy::event::Event;
use crate::service::log_gate::LogGate;
use crate::service::metrics::Metrics;
use crate::service::{Context, Service};
use crate::store::Store;
use crate::wire::http::{head_end, MAX_HEAD_LEN};
use connection::Connection;
use pool::{Job, Pool, Returned, SourceSlot};

/// Connections open at once, waiting for a head or being served.
pub const MAX_CONNECTIONS: usize = 4096;
/// File bodies being sent at once (each takes a worker).
pub const MAX_DOWNLOADS: usize = 384;
/// A request head must be complete this long after the accept or the previous response.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(15);
/// A client that accepts no data for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const ACCEPT_BATCH: usize = 64;

/// What the loop, the workers and `/metrics` share.
pub(crate) struct Shared {
    /// Replaced whole by a configuration reload; each request reads one snapshot.
    pub(crate) config: Store<Config>,
    pub(crate) store: Arc<InventoryStore>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started: Instant,
    /// Open connections (waiting for a head or being served).
    pub(crate) connections: AtomicUsize,
    pub(crate) downloads: AtomicUsize,
    pub(crate) log: Arc<LogGate>,
    /// The remote inventory source's state, for `/healthcheck`.
    pub(crate) source: Arc<Mutex<Option<crate::service::SourceStatus>>>,
    /// Open connections by source address.
    per_source: Mutex<HashMap<IpAddr, usize>>,
    /// The address pools, for `/unknown`.
    pub(crate) pools: Arc<Mutex<crate::policy::pool::Pools>>,
    pub(crate) assets: crate::service::Assets,
    pub(crate) ipxe_binaries: Arc<crate::service::ipxe_patch::PatchedBinaries>,
}

impl Shared {
    fn per_source(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_source.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection waiting, in the loop, for its request head to be complete.
struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    deadline: Instant,
    slot: SourceSlot,
}

pub struct HttpService {
    /// Closed when a shutdown begins; downloads already running go on.
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    pending: HashMap<RawFd, Pending>,
    pool: Arc<Pool>,
    jobs: Sender<Job>,
    returned: Receiver<Returned>,
    wake: UnixStream,
    max_per_client: usize,
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
            source: ctx.source.clone(),
            per_source: Mutex::new(HashMap::new()),
            pools: ctx.pools.clone(),
            assets: ctx.assets.clone(),
            ipxe_binaries: ctx.ipxe_binaries.clone(),
        });
        let open = shared.clone();
        ctx.metrics
            .observe("netbootd_http_connections", "gauge", move || {
                open.connections.load(Ordering::Relaxed).to_string()
            });
        let (wake, wake_workers) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let (jobs, job_queue) = channel();
        let (returns, returned) = channel();
        let pool = Arc::new(Pool::new(job_queue, returns, wake_workers));
        let workers = pool.clone();
        ctx.metrics
            .observe("netbootd_http_workers", "gauge", move || {
                workers.threads().to_string()
            });
        Ok(HttpService {
            listener: Some(socket.into()),
            shared,
            pending: HashMap::new(),
            pool,
            jobs,
            returned,
            wake,
            max_per_client: config.http.max_per_client,
        })
    }

    /// Accepts what is waiting: each connection waits for its head in the loop, or is
    /// refused over a cap.
    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    warn!("http: accept failed: {e}");
                    return;
                }
            };
            self.on_connection(stream, peer, now);
        }
    }

    fn on_connection(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let open = self.shared.connections.load(Ordering::Acquire);
        let slot = if open >= MAX_CONNECTIONS {
            None
        } else {
            SourceSlot::take(&self.shared, peer.ip(), self.max_per_client)
        };
        // Responses are written whole (head and small body in one write), so Nagle's
        // algorithm would only add a delayed-ACK wait (40 ms) between a head and a file.
        let ready = stream.set_nonblocking(true).is_ok() && stream.set_nodelay(true).is_ok();
        let Some(slot) = slot.filter(|_| ready) else {
            return self.refuse(stream, peer, open);
        };
        let pending = Pending {
            stream,
            peer,
            buf: Vec::new(),
            deadline: now + HEAD_DEADLINE,
            slot,
        };
        self.pending.insert(pending.stream.as_raw_fd(), pending);
    }

    /// Over a cap: 503 (if the socket takes it at once) and closed.
    fn refuse(&self, mut stream: TcpStream, peer: SocketAddr, open: usize) {
        let _ = stream.write(BUSY);
        let per_source = self
            .shared
            .per_source()
            .get(&peer.ip())
            .copied()
            .unwrap_or(0);
        let event = Event::new(format!(
            "http {peer}: refused, {open} connections open, {per_source} from this address (caps {MAX_CONNECTIONS} and {})",
            self.max_per_client
        ))
        .str("client", peer)
        .str("verdict", "refused")
        .num("open", open as u64)
        .num("from_this_address", per_source as u64);
        let origin = Origin::Ip(peer.ip());
        self.shared
            .log
            .line(Kind::Http, origin, Level::Warn, &event);
        self.shared
            .metrics
            .inc("netbootd_http_connections_refused_total", &[]);
    }

    /// Reads what a waiting connection sent; a complete head goes to a worker.
    fn on_pending(&mut self, fd: RawFd) {
        let Some(p) = self.pending.get_mut(&fd) else {
            return; // closed earlier in this pass
        };
        let mut chunk = [0u8; 2048];
        let mut closed = false;
        loop {
            match p.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true; // a half-close after a whole request still gets its answer
                    break;
                }
                Ok(n) => p.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.pending.remove(&fd);
                    return;
                }
            }
            if p.buf.len() > MAX_HEAD_LEN {
                break;
            }
        }
        if closed && head_end(&p.buf).is_none() {
            self.pending.remove(&fd);
        } else if head_end(&p.buf).is_some() {
            if let Some(p) = self.pending.remove(&fd) {
                self.dispatch(p);
            }
        } else if p.buf.len() > MAX_HEAD_LEN {
            if let Some(p) = self.pending.remove(&fd) {
                self.close_unfinished(p, 431, "request head over 8 KiB");
            }
        }
    }

    /// A complete head: the connection goes to a worker (blocking, with a write timeout).
    fn dispatch(&mut self, p: Pending) {
        let ready = p.stream.set_nonblocking(false).is_ok()
            && p.stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok()
            && p.stream
                .set_read_timeout(Some(connection::NEXT_REQUEST_WAIT))
                .is_ok();
        if !ready {
            return;
        }
        let job = Job {
            stream: p.stream,
            peer: p.peer,
            buf: p.buf,
            slot: p.slot,
        };
        if self.jobs.send(job).is_ok() {
            self.pool.ensure_worker(&self.shared);
        }
    }

    /// Keep-alive connections the workers gave back: their next head is awaited here.
    fn on_returned(&mut self, now: Instant) {
        let mut drain = [0u8; 64];
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        while let Ok(r) = self.returned.try_recv() {
            if self.listener.is_none() || r.stream.set_nonblocking(true).is_err() {
                continue; // shutting down: closed
            }
            let p = Pending {
                stream: r.stream,
                peer: r.peer,
                buf: r.buf,
                deadline: now + HEAD_DEADLINE,
                slot: r.slot,
            };
            // The client may have sent its next head already.
            let fd = p.stream.as_raw_fd();
            self.pending.insert(fd, p);
            self.on_pending(fd);
        }
    }

    /// A head that did not complete: the status (408, 431) when part of one came, then closed.
    fn close_unfinished(&self, p: Pending, status: u16, why: &str) {
        if p.buf.is_empty() {
            return;
        }
        // Best effort, without waiting: the socket's buffer takes a short answer at once.
        let _ = p.stream.set_nonblocking(true);
        let mut connection = Connection::new(p.stream, p.peer, &self.shared, Vec::new());
        connection.refuse_head(status, why);
    }
}

/// The listener and the waiting connections in the loop; requests on the workers. A shutdown
/// closes the listener and the waiting connections, and lets running downloads finish.
impl Service for HttpService {
    fn name(&self) -> &'static str {
        "HTTP"
    }

    fn describe(&self) -> String {
        let config = self.shared.config.snapshot();
        let h = &config.http;
        format!(
            "HTTP on {}:{}: scripts {}, iPXE binaries {}, assets {}; at most {MAX_CONNECTIONS} connections ({} per client address), {} requests served at once ({MAX_DOWNLOADS} downloads), request heads within {}s",
            h.addr,
            h.port,
            on_off(h.ipxe_script_enabled),
            on_off(h.ipxe_binary_enabled),
            on_off(config.assets_dir.is_some()),
            self.max_per_client,
            pool::MAX_WORKERS,
            HEAD_DEADLINE.as_secs()
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds: Vec<BorrowedFd<'_>> = self.listener.iter().map(|l| l.as_fd()).collect();
        fds.push(self.wake.as_fd());
        fds.extend(self.pending.values().map(|p| p.stream.as_fd()));
        fds
    }

    fn on_readable(&mut self, fd: RawFd, now: Instant) {
        if self.listener.as_ref().is_some_and(|l| l.as_raw_fd() == fd) {
            self.accept(now);
        } else if fd == self.wake.as_raw_fd() {
            self.on_returned(now);
        } else {
            self.on_pending(fd);
        }
    }

    /// The earliest head deadline.
    fn poll_at(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Connections whose head did not come in time are closed.
    fn on_timer(&mut self, now: Instant) {
        let late: Vec<RawFd> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in late {
            if let Some(p) = self.pending.remove(&fd) {
                self.close_unfinished(p, 408, "request head not complete in time");
            }
        }
    }

    /// The requests from now on use `config` (script settings, directories, addresses in
    /// URLs); each request reads one snapshot.
    fn reconfigure(&mut self, config: &Config) {
        self.shared.config.replace(config.clone());
        self.max_per_client = config.http.max_per_client;
    }

    fn drain(&mut self) -> bool {
        self.listener = None;
        self.pending.clear();
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

/// Decrements a counter when dropped (a download slot, even on panic).
pub(crate) struct Counted<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
