//! One TFTP transfer on its own thread: the [`Worker`] owns its file (or bytes), its
//! [`Transfer`] state machine and its [`Link`] to the client, and gives its slot back through
//! a drop guard however it ends.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, Level};

use super::Shared;
use crate::io::files::Content;
use crate::policy::budget::{Kind, Origin};
use crate::policy::event::Event;
use crate::policy::tftp::{Outcome, Transfer, Transmit};
use crate::wire::tftp::{
    emit_data_header, emit_error, ErrorCode, Packet, DATA_HEADER_LEN, MAX_REQUEST_LEN,
};

/// What a transfer reads from.
pub(super) enum Source {
    File(ReadAhead),
    /// Converted (netascii) or held in memory.
    Memory(Arc<[u8]>),
    /// Still arriving from its upstream.
    Growing(Arc<crate::io::growing::Growing>),
}

/// Longest wait for an upstream's next bytes before a transfer gives up (the download itself
/// fails sooner when its upstream stalls).
const UPSTREAM_WAIT: Duration = Duration::from_secs(60);

impl From<Content> for Source {
    fn from(content: Content) -> Source {
        match content {
            Content::File(file) => Source::File(ReadAhead::new(file)),
            Content::Bytes(bytes) => Source::Memory(bytes),
            Content::Growing(growing) => Source::Growing(growing),
        }
    }
}

impl Source {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Source::File(f) => f.read_exact_at(buf, offset),
            Source::Memory(m) => {
                let start = usize::try_from(offset).map_err(io::Error::other)?;
                let part = m
                    .get(start..start + buf.len())
                    .ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(part);
                Ok(())
            }
            Source::Growing(g) => g.read_exact_at(buf, offset, UPSTREAM_WAIT),
        }
    }
}

/// Reads the file in chunks of [`READ_AHEAD`] (or one block, if larger), so a transfer makes
/// one `pread` per chunk rather than per block; a go-back within the chunk costs no read.
pub(super) struct ReadAhead {
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
pub(super) enum Link {
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
pub(super) struct Worker {
    pub(super) client: SocketAddrV4,
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) source: Source,
    pub(super) transfer: Transfer,
    pub(super) oack: Vec<u8>,
    pub(super) link: Link,
    pub(super) shared: Arc<Shared>,
    /// Keeps a cached asset marked in use while it is sent.
    pub(super) _hold: Option<crate::io::files::Hold>,
}

/// A client's place among the running transfers, given back when its worker ends, however
/// it ends: a worker that panicked must not lock its client out or keep a slot until restart.
struct Slot {
    shared: Arc<Shared>,
    client: SocketAddrV4,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut active = self.shared.active();
        active.remove(&self.client);
        if active.is_empty() {
            drop(active);
            // The burst is over: what the transfers' buffers took goes back to the system.
            crate::io::limits::return_free_memory();
        }
    }
}

impl Worker {
    pub(super) fn run(mut self) {
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
        if self.name == super::tests::PANIC_IN_WORKER {
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
                    .source
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
        let event = Event::new(format!(
            "tftp {} RRQ {:?} ({}): {outcome}, {bytes} bytes in {secs:.3}s ({:.1} MB/s), blksize {}, windowsize {}, {retransmissions} retransmissions",
            self.client,
            self.name,
            self.path.display(),
            bytes as f64 / secs.max(1e-6) / 1e6,
            self.transfer.blksize(),
            self.transfer.windowsize(),
        ))
        .str("client", self.client)
        .str("file", &self.name)
        .str("path", self.path.display())
        .str("outcome", &outcome)
        .num("bytes", bytes)
        .secs("secs", secs)
        .num("blksize", u64::from(self.transfer.blksize()))
        .num("windowsize", u64::from(self.transfer.windowsize()))
        .num("retransmissions", retransmissions);
        // A finished transfer is a machine booting: always written. The rest a client can
        // cause at will (requests never acknowledged, errors sent back), within the budget.
        if matches!(end, End::Protocol(Outcome::Complete)) {
            self.shared.log.always(level, &event);
        } else {
            let origin = Origin::Ip((*self.client.ip()).into());
            self.shared.log.line(Kind::Tftp, origin, level, &event);
        }
    }
}
