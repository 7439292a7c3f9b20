//! The TFTP service: the listener on `--tftp-addr:--tftp-port` (in the main poll loop) and one
//! thread per transfer.
//!
//! The listener answers what it can at once (write requests, unknown modes, names that leave
//! the served directories, missing files such as the `autoexec.ipxe` iPXE asks for first,
//! requests over `--tftp-max-transfers`) with an ERROR, and hands each accepted read to a
//! [`Worker`] thread that owns its file, its [`Transfer`] state machine and its socket: a new
//! UDP socket on the address the request came to, ephemeral port (RFC 1350's transfer ID),
//! unless `--tftp-single-port` sends everything from the listening port, in which case the
//! listener forwards the client's packets to its worker.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info, log, warn, Level};

use crate::config::{Config, Tftp};
use crate::io::files::{open_beneath, Links, OpenError};
use crate::io::netif::interface_mtu;
use crate::io::udp::{Received, UdpEndpoint, UdpOptions};
use crate::policy::tftp::{
    blksize_cap, interpret_name, negotiate, Limits, NameRefusal, Outcome, Root, Transfer, Transmit,
};
use crate::service::metrics::{Counter, Metrics};
use crate::service::{Context, Service};
use crate::wire::tftp::{
    emit_data_header, emit_error, emit_oack, to_netascii, ErrorCode, Mode, Packet, Request,
    DATA_HEADER_LEN, MAX_REQUEST_LEN,
};

/// Requests read per loop pass, so a flood cannot starve the other services.
const BATCH: usize = 64;
/// Consecutive timeouts before a transfer is abandoned: with the backoff (200 ms doubling up to
/// the negotiated timeout, 5 s by default) that is about 26 s without an answer. Fewer gave up
/// on healthy clients behind 10 % loss each way (six losses in a row happen in a few thousand
/// round trips).
const MAX_RETRIES: u32 = 8;
/// netascii is converted in memory: larger files must be fetched in octet mode.
const MAX_NETASCII_FILE: u64 = 4 << 20;
/// Packets queued for one worker in single-port mode.
const INBOX_LEN: usize = 256;
/// A worker's stack: it holds no buffers (those are on the heap).
const WORKER_STACK: usize = 128 << 10;
/// Assumed when the interface's MTU cannot be read.
const FALLBACK_MTU: u32 = 1500;

/// After the grace period: time for the workers to send their ERROR and end.
const SHUTDOWN_ABORT: Duration = Duration::from_secs(2);

/// The service's counters in the metrics registry, shared with the workers.
#[derive(Debug)]
pub struct TftpCounters {
    pub requests: Arc<Counter>,
    pub refused: Arc<Counter>,
    pub completed: Arc<Counter>,
    pub failed: Arc<Counter>,
    pub bytes_sent: Arc<Counter>,
    pub retransmissions: Arc<Counter>,
}

impl TftpCounters {
    fn register(metrics: &Metrics) -> TftpCounters {
        TftpCounters {
            requests: metrics.counter("netbootd_tftp_requests_total"),
            refused: metrics.counter("netbootd_tftp_refused_total"),
            completed: metrics.counter("netbootd_tftp_transfers_completed_total"),
            failed: metrics.counter("netbootd_tftp_transfers_failed_total"),
            bytes_sent: metrics.counter("netbootd_tftp_bytes_total"),
            retransmissions: metrics.counter("netbootd_tftp_retransmissions_total"),
        }
    }
}

/// The directories served, by the root a request name selects.
fn roots(ipxe_dir: Option<&Path>, assets_dir: Option<&Path>) -> Vec<(Root, PathBuf)> {
    let mut roots = Vec::new();
    if let Some(d) = ipxe_dir {
        roots.push((Root::Ipxe, d.to_path_buf()));
    }
    if let Some(d) = assets_dir {
        roots.push((Root::Assets, d.to_path_buf()));
    }
    roots
}

/// What the listener and its workers share.
struct Shared {
    /// Clients with a transfer running; in single-port mode, with the worker's inbox.
    active: Mutex<HashMap<SocketAddrV4, Option<SyncSender<Vec<u8>>>>>,
    counters: TftpCounters,
    /// No new transfers (shutdown has begun); running ones go on.
    draining: AtomicBool,
    /// Running transfers end now, with an ERROR to their client.
    stopping: AtomicBool,
}

impl Shared {
    fn active(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SocketAddrV4, Option<SyncSender<Vec<u8>>>>> {
        // A worker that panicked cannot leave the map inconsistent: take it anyway.
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct TftpService {
    /// Read per request: a configuration reload replaces it (the bound fields stay).
    cfg: Tftp,
    roots: Vec<(Root, PathBuf)>,
    listener: UdpEndpoint,
    /// The listening socket again, for workers in single-port mode.
    single_port: Option<Arc<UdpSocket>>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
}

impl TftpService {
    pub fn start(config: &Config, ctx: &Context) -> io::Result<TftpService> {
        let cfg = &config.tftp;
        let (ipxe_dir, assets_dir) = (config.ipxe_dir.as_deref(), config.assets_dir.as_deref());
        let addr = SocketAddrV4::new(cfg.addr, cfg.port);
        let listener = UdpEndpoint::bind(
            addr,
            UdpOptions {
                packet_info: true,
                recv_buffer: Some(1 << 20),
                ..Default::default()
            },
        )?;
        let single_port = if cfg.single_port {
            Some(Arc::new(listener.try_clone_socket()?))
        } else {
            None
        };
        Ok(TftpService {
            cfg: cfg.clone(),
            roots: roots(ipxe_dir, assets_dir),
            listener,
            single_port,
            shared: Arc::new(Shared {
                active: Mutex::new(HashMap::new()),
                counters: TftpCounters::register(&ctx.metrics),
                draining: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
            }),
            buf: vec![0; MAX_REQUEST_LEN],
        })
    }

    /// Transfers running now.
    fn active_transfers(&self) -> usize {
        self.shared.active().len()
    }

    fn on_readable(&mut self) {
        for _ in 0..BATCH {
            let received = match self.listener.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("tftp: receive failed: {e}");
                    return;
                }
            };
            self.on_datagram(&received);
        }
    }

    fn on_datagram(&mut self, rx: &Received) {
        let bytes = &self.buf[..rx.len];
        if self.single_port.is_some() {
            if let Some(Some(inbox)) = self.shared.active().get(&rx.from) {
                // A full inbox means the worker is behind: dropping is what the wire would do.
                let _ = inbox.try_send(bytes.to_vec());
                return;
            }
        }
        match Packet::parse(bytes) {
            Ok(Packet::Rrq(request)) => self.on_read_request(request, rx),
            Ok(Packet::Wrq(request)) => {
                self.refuse(
                    rx,
                    "WRQ",
                    &request.filename,
                    ErrorCode::AccessViolation,
                    "read-only server",
                );
            }
            Ok(other) => debug!(
                "tftp {}: {} outside any transfer, dropped",
                rx.from,
                other.name()
            ),
            Err(e) => {
                debug!("tftp {}: {e} ({} bytes), answered ERROR 4", rx.from, rx.len);
                self.send_error(rx, ErrorCode::IllegalOperation, &e.to_string());
            }
        }
    }

    fn send_error(&self, rx: &Received, code: ErrorCode, message: &str) {
        if let Err(e) = self
            .listener
            .send_to(&emit_error(code, message), rx.from, rx.ifindex)
        {
            debug!("tftp {}: cannot send ERROR: {e}", rx.from);
        }
    }

    /// One log line and an ERROR for a request that gets no transfer.
    fn refuse(&self, rx: &Received, op: &str, name: &str, code: ErrorCode, why: &str) {
        self.shared.counters.refused.add(1);
        info!(
            "tftp {} {op} {name:?}: refused, error {} ({why})",
            rx.from,
            code.value()
        );
        self.send_error(rx, code, why);
    }

    fn on_read_request(&mut self, request: Request, rx: &Received) {
        let counters = &self.shared.counters;
        counters.requests.add(1);
        let name = request.filename.as_str();
        let running = {
            let active = self.shared.active();
            (active.contains_key(&rx.from), active.len())
        };
        match running {
            (true, _) => {
                // The client repeated its request: the running transfer resends what is due.
                debug!("tftp {} RRQ {name:?}: repeated, transfer running", rx.from);
                return;
            }
            (false, _) if self.shared.draining.load(Ordering::Relaxed) => {
                let why = "server shutting down";
                return self.refuse(rx, "RRQ", name, ErrorCode::NotDefined, why);
            }
            (false, n) if n >= self.cfg.max_transfers => {
                let why = format!("server busy ({n} transfers), try again");
                return self.refuse(rx, "RRQ", name, ErrorCode::NotDefined, &why);
            }
            _ => {}
        }
        if let Mode::Unknown(mode) = &request.mode {
            let why = format!("mode {mode:?} not supported");
            return self.refuse(rx, "RRQ", name, ErrorCode::IllegalOperation, &why);
        }
        let (content, size, path) = match self.open(name, &request.mode) {
            Ok(found) => found,
            Err((code, why)) => return self.refuse(rx, "RRQ", name, code, &why),
        };
        let mtu = rx.ifindex.and_then(interface_mtu).unwrap_or(FALLBACK_MTU);
        let limits = Limits {
            max_blksize: blksize_cap(self.cfg.block_size, mtu),
            max_windowsize: self.cfg.max_window_size,
            timeout: self.cfg.timeout,
            max_retries: MAX_RETRIES,
        };
        let negotiated = negotiate(&request.options, size, &limits);
        let local = rx
            .local
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(self.cfg.addr);
        let (link, inbox) = match self.link(local) {
            Ok(l) => l,
            Err(e) => {
                warn!(
                    "tftp {} RRQ {name:?}: no socket for the transfer: {e}",
                    rx.from
                );
                return self.send_error(rx, ErrorCode::NotDefined, "server error");
            }
        };
        let worker = Worker {
            client: rx.from,
            name: request.filename.clone(),
            path,
            content,
            transfer: Transfer::new(size, &negotiated, &limits),
            oack: emit_oack(&negotiated.oack),
            link,
            shared: self.shared.clone(),
        };
        self.shared.active().insert(rx.from, inbox);
        let spawned = std::thread::Builder::new()
            .name("tftp".into())
            .stack_size(WORKER_STACK)
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            self.shared.active().remove(&rx.from);
            warn!("tftp {} RRQ {name:?}: cannot start a thread: {e}", rx.from);
            self.send_error(rx, ErrorCode::NotDefined, "server busy, try again");
        }
    }

    /// The socket a transfer talks through.
    fn link(&self, local: Ipv4Addr) -> io::Result<(Link, Option<SyncSender<Vec<u8>>>)> {
        if let Some(socket) = &self.single_port {
            let (tx, rx) = sync_channel(INBOX_LEN);
            return Ok((Link::Shared(socket.clone(), rx), Some(tx)));
        }
        let socket = UdpSocket::bind(SocketAddrV4::new(local, 0))?;
        Ok((
            Link::Own(socket, std::cell::Cell::new(Duration::ZERO)),
            None,
        ))
    }

    /// Finds the file a name means, trying each candidate root in turn.
    fn open(
        &self,
        name: &str,
        mode: &Mode,
    ) -> Result<(Content, u64, PathBuf), (ErrorCode, String)> {
        let candidates = interpret_name(name).map_err(|r| match r {
            NameRefusal::Traversal => (
                ErrorCode::AccessViolation,
                "outside the served directories".to_string(),
            ),
            NameRefusal::BadName => (ErrorCode::FileNotFound, "file not found".to_string()),
        })?;
        let mut outside = false;
        for (root, relative) in candidates {
            let Some((_, dir)) = self.roots.iter().find(|(r, _)| *r == root) else {
                continue;
            };
            let links = match root {
                Root::Ipxe => Links::TopLevelTrusted,
                Root::Assets => Links::Inside,
            };
            match open_beneath(dir, &relative, links) {
                Ok((file, size, path)) => {
                    return match mode {
                        Mode::Netascii => netascii(file, size).map(|c| {
                            let n = c.len() as u64;
                            (Content::Memory(c), n, path)
                        }),
                        _ => Ok((Content::File(ReadAhead::new(file)), size, path)),
                    }
                }
                Err(OpenError::NotFound) => {}
                Err(OpenError::Outside) => outside = true,
                Err(OpenError::Io(e)) => {
                    return Err((ErrorCode::AccessViolation, format!("cannot read: {e}")))
                }
            }
        }
        if outside {
            Err((
                ErrorCode::AccessViolation,
                "outside the served directories".into(),
            ))
        } else {
            Err((ErrorCode::FileNotFound, "file not found".into()))
        }
    }
}

/// The listener in the loop; transfers on their own threads, which a shutdown lets finish.
impl Service for TftpService {
    fn name(&self) -> &'static str {
        "TFTP"
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "TFTP on {}:{}: blksize up to {}, windowsize up to {}, timeout up to {:?}, {} transfers at most{}",
            c.addr,
            c.port,
            c.block_size,
            c.max_window_size,
            c.timeout,
            c.max_transfers,
            if c.single_port { ", single port" } else { "" }
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.listener.as_fd()]
    }

    fn on_readable(&mut self, _index: usize, _now: Instant) {
        TftpService::on_readable(self);
    }

    /// Limits and directories for the requests from now on; running transfers keep what they
    /// negotiated.
    fn reconfigure(&mut self, config: &Config) {
        self.cfg = config.tftp.clone();
        self.roots = roots(config.ipxe_dir.as_deref(), config.assets_dir.as_deref());
    }

    /// New requests get "server shutting down"; running transfers go on (in single-port mode
    /// the listener keeps forwarding their packets).
    fn drain(&mut self) -> bool {
        self.shared.draining.store(true, Ordering::Relaxed);
        true
    }

    fn in_flight(&self) -> Option<(usize, &'static str)> {
        Some((self.active_transfers(), "TFTP transfers"))
    }

    /// Every worker ends its transfer with an ERROR to its client.
    fn abort(&mut self, grace: Duration) {
        info!(
            "ending {} TFTP transfers still running after {grace:?}",
            self.active_transfers()
        );
        self.shared.stopping.store(true, Ordering::Relaxed);
        let abort = Instant::now();
        while self.active_transfers() > 0 && abort.elapsed() < SHUTDOWN_ABORT {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn netascii(file: File, size: u64) -> Result<Vec<u8>, (ErrorCode, String)> {
    if size > MAX_NETASCII_FILE {
        return Err((
            ErrorCode::NotDefined,
            format!("netascii only up to {MAX_NETASCII_FILE} bytes; use octet mode"),
        ));
    }
    let mut data = Vec::new();
    file.take(MAX_NETASCII_FILE)
        .read_to_end(&mut data)
        .map_err(|e| (ErrorCode::AccessViolation, format!("cannot read: {e}")))?;
    Ok(to_netascii(&data))
}

/// What a transfer reads from.
enum Content {
    File(ReadAhead),
    /// netascii, converted.
    Memory(Vec<u8>),
}

impl Content {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Content::File(f) => f.read_exact_at(buf, offset),
            Content::Memory(m) => {
                let start = usize::try_from(offset).map_err(io::Error::other)?;
                let part = m
                    .get(start..start + buf.len())
                    .ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(part);
                Ok(())
            }
        }
    }
}

/// Reads the file in chunks of [`READ_AHEAD`] (or one block, if larger), so a transfer makes
/// one `pread` per chunk rather than per block; a go-back within the chunk costs no read.
struct ReadAhead {
    file: File,
    chunk: Vec<u8>,
    /// File offset of `chunk[0]`.
    start: u64,
}

const READ_AHEAD: usize = 64 << 10;

impl ReadAhead {
    fn new(file: File) -> ReadAhead {
        ReadAhead {
            file,
            chunk: Vec::new(),
            start: 0,
        }
    }

    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let cached = offset >= self.start && end <= self.start + self.chunk.len() as u64;
        if !cached {
            self.chunk.resize(READ_AHEAD.max(buf.len()), 0);
            let mut filled = 0;
            while filled < self.chunk.len() {
                match self
                    .file
                    .read_at(&mut self.chunk[filled..], offset + filled as u64)
                {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.chunk.clear();
                        return Err(e);
                    }
                }
            }
            self.chunk.truncate(filled);
            self.start = offset;
            if filled < buf.len() {
                return Err(ErrorKind::UnexpectedEof.into()); // the file shrank
            }
        }
        let from = (offset - self.start) as usize;
        buf.copy_from_slice(&self.chunk[from..from + buf.len()]);
        Ok(())
    }
}

/// How a worker talks to its client.
enum Link {
    /// Its own socket (ephemeral port); not connected, so a stranger's packet can be answered
    /// with ERROR 5 instead of vanishing in the kernel.
    Own(UdpSocket, std::cell::Cell<Duration>),
    /// The listening socket, with the packets the listener forwards.
    Shared(Arc<UdpSocket>, Receiver<Vec<u8>>),
}

impl Link {
    fn send(&self, data: &[u8], to: SocketAddrV4) -> io::Result<()> {
        let socket = match self {
            Link::Own(s, _) => s,
            Link::Shared(s, _) => s,
        };
        socket.send_to(data, to).map(|_| ())
    }

    /// Waits up to `wait` for a datagram; `None` on timeout.
    fn recv(
        &self,
        buf: &mut Vec<u8>,
        wait: Duration,
        client: SocketAddrV4,
    ) -> io::Result<Option<SocketAddrV4>> {
        match self {
            Link::Own(socket, timeout_set) => {
                // A blocking receive with SO_RCVTIMEO: one system call per ACK. The timeout is
                // only changed when the wait differs by a quarter or more, so the lock-step
                // path does not pay a setsockopt per block; a wake-up a little early only
                // loops once more, and one a little late delays a retransmission by that much.
                let wait = wait.max(Duration::from_millis(1));
                let current = timeout_set.get();
                if wait < current * 3 / 4 || wait > current * 5 / 4 {
                    socket.set_read_timeout(Some(wait))?;
                    timeout_set.set(wait);
                }
                buf.resize(MAX_REQUEST_LEN, 0);
                match socket.recv_from(buf) {
                    Ok((len, std::net::SocketAddr::V4(from))) => {
                        buf.truncate(len);
                        Ok(Some(from))
                    }
                    Ok(_) => Ok(None),
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) =>
                    {
                        Ok(None)
                    }
                    // An ICMP error from an earlier send: the client will say more, or not.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Link::Shared(_, inbox) => match inbox.recv_timeout(wait) {
                Ok(packet) => {
                    *buf = packet;
                    Ok(Some(client))
                }
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Disconnected) => Err(io::Error::other("listener gone")),
            },
        }
    }
}

/// How a worker's transfer ended, beyond the protocol's own outcomes.
enum End {
    Protocol(Outcome),
    ReadFailed(io::Error),
    SocketFailed(io::Error),
    Stopped,
}

/// One transfer on its own thread: owns the file, the state machine and the socket.
struct Worker {
    client: SocketAddrV4,
    name: String,
    path: PathBuf,
    content: Content,
    transfer: Transfer,
    oack: Vec<u8>,
    link: Link,
    shared: Arc<Shared>,
}

/// A client's place among the running transfers, given back when its worker ends, however
/// it ends: a worker that panicked must not lock its client out or keep a slot until restart.
struct Slot {
    shared: Arc<Shared>,
    client: SocketAddrV4,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.active().remove(&self.client);
    }
}

impl Worker {
    fn run(mut self) {
        let slot = Slot {
            shared: self.shared.clone(),
            client: self.client,
        };
        let started = Instant::now();
        let end = self.serve();
        drop(slot);
        self.finish(end, started.elapsed());
    }

    fn serve(&mut self) -> End {
        #[cfg(test)]
        if self.name == tests::PANIC_IN_WORKER {
            panic!("a worker bug, on purpose (test)");
        }
        let mut out = Vec::with_capacity(DATA_HEADER_LEN + usize::from(self.transfer.blksize()));
        let mut inbound = Vec::with_capacity(MAX_REQUEST_LEN);
        loop {
            let now = Instant::now();
            while let Some(tx) = self.transfer.poll_transmit(now) {
                if let Err(end) = self.transmit(tx, &mut out) {
                    return end;
                }
            }
            if let Some(outcome) = self.transfer.outcome() {
                if *outcome == Outcome::TimedOut {
                    // Tell the client, so it stops waiting instead of hanging on.
                    let _ = self.link.send(
                        &emit_error(ErrorCode::NotDefined, "timed out waiting for an ACK"),
                        self.client,
                    );
                }
                return End::Protocol(outcome.clone());
            }
            if self.shared.stopping.load(Ordering::Relaxed) {
                let _ = self.link.send(
                    &emit_error(ErrorCode::NotDefined, "server shutting down"),
                    self.client,
                );
                return End::Stopped;
            }
            let wait = self
                .transfer
                .next_deadline()
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
                .min(Duration::from_secs(1)); // to notice `stopping`
            match self.link.recv(&mut inbound, wait, self.client) {
                Ok(Some(from)) if from == self.client => match Packet::parse(&inbound) {
                    Ok(packet) => self.transfer.on_packet(&packet, Instant::now()),
                    Err(e) => debug!("tftp {}: {e}, ignored", self.client),
                },
                Ok(Some(stranger)) => {
                    debug!(
                        "tftp {}: packet from {stranger} on this transfer's port, answered ERROR 5",
                        self.client
                    );
                    let _ = self.link.send(
                        &emit_error(ErrorCode::UnknownTransferId, "unknown transfer ID"),
                        stranger,
                    );
                }
                Ok(None) => {}
                Err(e) => return End::SocketFailed(e),
            }
            self.transfer.on_timeout(Instant::now());
        }
    }

    fn transmit(&mut self, tx: Transmit, out: &mut Vec<u8>) -> Result<(), End> {
        let packet: &[u8] = match tx {
            Transmit::Oack => &self.oack,
            Transmit::Data { block, offset, len } => {
                emit_data_header(out, block);
                out.resize(DATA_HEADER_LEN + len, 0);
                if let Err(e) = self
                    .content
                    .read_exact_at(&mut out[DATA_HEADER_LEN..], offset)
                {
                    let _ = self.link.send(
                        &emit_error(ErrorCode::NotDefined, "read error"),
                        self.client,
                    );
                    return Err(End::ReadFailed(e));
                }
                out
            }
        };
        // A send that fails (full queue, a firewall's EPERM, a route that comes and goes) is a
        // packet lost like any other: the timer resends it and the retry limit ends the
        // transfer if it keeps failing.
        if let Err(e) = self.link.send(packet, self.client) {
            debug!("tftp {}: send failed: {e}", self.client);
        }
        Ok(())
    }

    /// The transfer's one log line, and the counters.
    fn finish(&self, end: End, elapsed: Duration) {
        let c = &self.shared.counters;
        let bytes = self.transfer.bytes_acknowledged();
        let retransmissions = self.transfer.retransmissions();
        c.bytes_sent.add(bytes);
        c.retransmissions.add(retransmissions);
        let (level, outcome) = match &end {
            End::Protocol(Outcome::Complete) => {
                c.completed.add(1);
                (Level::Info, "complete".to_string())
            }
            End::Protocol(o @ Outcome::ClientError { .. }) => {
                c.failed.add(1);
                (Level::Info, o.describe())
            }
            End::Protocol(o @ Outcome::TimedOut) => {
                c.failed.add(1);
                (Level::Warn, o.describe())
            }
            End::ReadFailed(e) => {
                c.failed.add(1);
                (Level::Warn, format!("read failed: {e}"))
            }
            End::SocketFailed(e) => {
                c.failed.add(1);
                (Level::Warn, format!("socket failed: {e}"))
            }
            End::Stopped => {
                c.failed.add(1);
                (Level::Info, "stopped: server shutting down".to_string())
            }
        };
        let secs = elapsed.as_secs_f64();
        log!(
            level,
            "tftp {} RRQ {:?} ({}): {outcome}, {bytes} bytes in {secs:.3}s ({:.1} MB/s), blksize {}, windowsize {}, {retransmissions} retransmissions",
            self.client,
            self.name,
            self.path.display(),
            bytes as f64 / secs.max(1e-6) / 1e6,
            self.transfer.blksize(),
            self.transfer.windowsize(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// In test builds, a worker asked for this name panics.
    pub const PANIC_IN_WORKER: &str = "panic-in-worker";

    fn service(dir: &Path) -> TftpService {
        let mut config = crate::config::tests::loopback_config();
        config.tftp.port = 0;
        config.tftp.max_window_size = 1;
        config.ipxe_dir = None;
        config.assets_dir = Some(dir.to_path_buf());
        let ctx = Context {
            inventory: Arc::new(crate::inventory::InventoryStore::new(Default::default())),
            metrics: Arc::default(),
        };
        TftpService::start(&config, &ctx).unwrap()
    }

    fn rrq(name: &str) -> Vec<u8> {
        let mut p = vec![0, 1];
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(b"\0octet\0");
        p
    }

    /// Waits until the listener has a datagram, then lets the service read it.
    fn deliver(t: &mut TftpService) {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(t.listener.as_fd(), PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, PollTimeout::from(2000u16)), Ok(1));
        t.on_readable();
    }

    #[test]
    fn a_worker_that_panics_frees_its_slot_and_the_next_request_is_served() {
        let dir = std::env::temp_dir().join(format!("netbootd-tftp-slot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(PANIC_IN_WORKER), b"x").unwrap();
        std::fs::write(dir.join("f"), b"file").unwrap();
        let mut t = service(&dir);
        let server = t.listener.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        client.send_to(&rrq(PANIC_IN_WORKER), server).unwrap();
        deliver(&mut t);
        let freed = Instant::now();
        while t.active_transfers() > 0 {
            assert!(
                freed.elapsed() < Duration::from_secs(3),
                "the slot was never freed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The same client (address and port) asks again and gets its file.
        client.send_to(&rrq("f"), server).unwrap();
        deliver(&mut t);
        let mut buf = [0u8; 600];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\0\x03\0\x01file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
