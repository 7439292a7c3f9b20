//! The HTTP workers: threads that serve complete requests. The loop hands each connection whose
//! head is complete to the pool as a [`Job`]; a worker answers every request already buffered
//! (pipelining), then gives a keep-alive connection back to the loop, which waits for its next
//! head without a thread. Threads start when a job finds none idle (up to [`MAX_WORKERS`]) and
//! end after [`WORKER_IDLE`] without work, so an idle server has none.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::warn;

use super::connection::Connection;
use super::Shared;

/// Requests served at once (one worker thread each).
pub const MAX_WORKERS: usize = 512;
/// A worker with nothing to do for this long ends.
const WORKER_IDLE: Duration = Duration::from_secs(10);
const WORKER_STACK: usize = 256 << 10;

/// An open connection's place in the count of its source address, given back when the
/// connection closes, wherever it is then (waiting for a head, or with a worker).
pub struct SourceSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl SourceSlot {
    /// Takes a place for `ip`, or `None` when it has `cap` connections open already.
    pub fn take(shared: &Arc<Shared>, ip: IpAddr, cap: usize) -> Option<SourceSlot> {
        let mut open = shared.per_source();
        let n = open.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        shared.connections.fetch_add(1, Ordering::AcqRel);
        Some(SourceSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.shared.per_source();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection with a complete request head in `buf`.
pub struct Job {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// What was read so far: one or more whole heads, maybe the start of the next.
    pub buf: Vec<u8>,
    pub slot: SourceSlot,
}

/// A keep-alive connection handed back to the loop after its responses.
pub struct Returned {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub buf: Vec<u8>,
    pub slot: SourceSlot,
}

pub struct Pool {
    jobs: Mutex<Receiver<Job>>,
    idle: AtomicUsize,
    threads: AtomicUsize,
    returns: Sender<Returned>,
    /// One byte wakes the loop when a connection comes back.
    wake: UnixStream,
}

impl Pool {
    pub fn new(jobs: Receiver<Job>, returns: Sender<Returned>, wake: UnixStream) -> Pool {
        Pool {
            jobs: Mutex::new(jobs),
            idle: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            returns,
            wake,
        }
    }

    /// Worker threads now.
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Acquire)
    }

    /// A job was queued: start a worker when none is idle and the cap allows.
    pub fn ensure_worker(self: &Arc<Pool>, shared: &Arc<Shared>) {
        if self.idle.load(Ordering::SeqCst) > 0 {
            return;
        }
        let n = self.threads.fetch_add(1, Ordering::AcqRel);
        if n >= MAX_WORKERS {
            self.threads.fetch_sub(1, Ordering::AcqRel);
            return; // the job waits for a worker to come free
        }
        let (pool, shared) = (self.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("http".into())
            .stack_size(WORKER_STACK)
            .spawn(move || pool.work(&shared));
        if let Err(e) = spawned {
            self.threads.fetch_sub(1, Ordering::AcqRel);
            warn!("http: no thread for a worker: {e}");
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Receiver<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn work(&self, shared: &Arc<Shared>) {
        loop {
            self.idle.fetch_add(1, Ordering::SeqCst);
            let job = self.jobs().recv_timeout(WORKER_IDLE);
            self.idle.fetch_sub(1, Ordering::SeqCst);
            let job = match job {
                Ok(job) => job,
                // A job queued while this worker was timing out saw it idle and started no
                // other: look once more before leaving.
                Err(RecvTimeoutError::Timeout) => match self.jobs().try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let Job {
                stream,
                peer,
                buf,
                slot,
            } = job;
            let mut connection = Connection::new(stream, peer, shared, buf);
            if connection.serve_buffered() {
                let (stream, buf) = connection.into_parts();
                let back = Returned {
                    stream,
                    peer,
                    buf,
                    slot,
                };
                if self.returns.send(back).is_ok() {
                    let _ = (&self.wake).write_all(&[1]);
                }
            }
        }
        if self.threads.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last worker of a burst: what the requests took goes back to the system.
            crate::io::limits::return_free_memory();
        }
    }
}
