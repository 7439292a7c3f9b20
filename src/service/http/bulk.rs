//! Large bodies (1 MiB and more) sent by a few event-driven sender threads instead of by each
//! connection's own thread. A sender polls all of its sockets and gives each writable one a
//! turn of at most [`TURN`] bytes with non-blocking `sendfile`, as nginx's workers do; a body
//! still downloading ([`Growing`]) is sent as far as it has arrived and looked at again every
//! [`STARVED_LOOK`]. The connection's thread hands its socket over with [`send`] and sleeps
//! until the body is sent or failed, so a hundred downloads cost a sender's wake-ups, not a
//! hundred threads' (measured: benches/asset-cache.sh, README).
//!
//! Senders start with the first large body: one per two cores, at most [`MAX_SENDERS`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::sys::sendfile::sendfile64;

use crate::io::growing::Growing;

/// At most this much per socket per round, so every client moves before any moves again.
const TURN: u64 = 2 << 20;
/// How often a body waiting for its upstream looks for what has arrived.
const STARVED_LOOK: Duration = Duration::from_millis(5);
/// Senders on a large host (each one sends at the speed of several NICs).
const MAX_SENDERS: usize = 4;

/// A body to send: `file` from `at` to `end` (a growing one as it arrives) into `socket`.
struct Job {
    socket: RawFd,
    file: RawFd,
    at: u64,
    end: u64,
    growing: Option<Arc<Growing>>,
    /// The socket is corked (head and body share segments); a body still downloading is
    /// uncorked after its first bytes, so what arrives goes out at once.
    corked: bool,
    /// How long without progress (client not reading, or upstream silent) ends it.
    patience: Duration,
    last_progress: Instant,
    done: Arc<Done>,
}

/// Where a sender leaves a job's outcome for the connection's thread waiting on it.
#[derive(Default)]
struct Done {
    outcome: Mutex<Option<io::Result<()>>>,
    ready: Condvar,
}

impl Done {
    fn set(&self, outcome: io::Result<()>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.ready.notify_one();
    }

    fn wait(&self) -> io::Result<()> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = outcome.take() {
                return outcome;
            }
            outcome = self.ready.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct Sender {
    new_jobs: Mutex<Vec<Job>>,
    wake: UnixStream,
}

static SENDERS: OnceLock<Vec<Sender>> = OnceLock::new();
static NEXT_SENDER: AtomicUsize = AtomicUsize::new(0);

fn senders() -> &'static [Sender] {
    SENDERS.get_or_init(|| {
        // SAFETY: sysconf only reads. (std's available_parallelism adds 11 KB of cgroup code.)
        let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        (0..(cores / 2).clamp(1, MAX_SENDERS))
            .filter_map(|index| {
                let (wake, woken) = UnixStream::pair().ok()?;
                wake.set_nonblocking(true).ok()?;
                woken.set_nonblocking(true).ok()?;
                std::thread::Builder::new()
                    .name(format!("http-bulk-{index}"))
                    .spawn(move || run(index, woken))
                    .ok()?;
                Some(Sender {
                    new_jobs: Mutex::new(Vec::new()),
                    wake,
                })
            })
            .collect()
    })
}

/// Sends `file` from `offset`, `len` bytes (as they arrive when `growing`), on `stream`,
/// whose response head is written; returns when all is sent or the sending failed. Without
/// a sender (none could start) the caller's thread sends.
pub(super) fn send(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    growing: Option<Arc<Growing>>,
    patience: Duration,
) -> io::Result<()> {
    let senders = senders();
    if senders.is_empty() {
        return send_here(stream, file, offset, len, growing.as_deref(), patience);
    }
    stream.set_nonblocking(true)?;
    let done = Arc::new(Done::default());
    let sender = &senders[NEXT_SENDER.fetch_add(1, Ordering::Relaxed) % senders.len()];
    sender
        .new_jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Job {
            socket: stream.as_raw_fd(),
            file: file.as_raw_fd(),
            at: offset,
            end: offset + len,
            corked: growing.is_some(),
            growing,
            patience,
            last_progress: Instant::now(),
            done: done.clone(),
        });
    let _ = (&sender.wake).write(&[1]);
    // The sender keeps using the descriptors until it answers: wait for that, however long.
    let sent = done.wait();
    stream.set_nonblocking(false)?;
    sent
}

/// The fallback: this thread sends, blocking.
fn send_here(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    growing: Option<&Growing>,
    patience: Duration,
) -> io::Result<()> {
    let Some(growing) = growing else {
        return crate::io::files::send_file(stream, file, offset, len);
    };
    let mut at = offset;
    while at < offset + len {
        let n = growing
            .readable(at, offset + len - at, patience)
            .map_err(io::Error::other)?;
        crate::io::files::send_file(stream, file, at, n)?;
        at += n;
    }
    Ok(())
}

/// One sender's loop: take new jobs, poll, give each writable socket its turn, answer the
/// jobs that ended.
fn run(index: usize, woken: UnixStream) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        if let Some(senders) = SENDERS.get() {
            jobs.append(
                &mut senders[index]
                    .new_jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
        fds.clear();
        fds.push(libc::pollfd {
            fd: woken.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let mut any_starved = false;
        for job in &jobs {
            let starved = job.starved();
            any_starved |= starved;
            fds.push(libc::pollfd {
                // A negative descriptor is left out of the poll: nothing to send yet.
                fd: if starved { -1 } else { job.socket },
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        // Idle: asleep until a job comes. Busy: awake at least once a second for patience.
        let timeout = if any_starved {
            STARVED_LOOK.as_millis() as libc::c_int
        } else if jobs.is_empty() {
            -1
        } else {
            1000
        };
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if fds[0].revents != 0 {
            let mut drain = [0u8; 64];
            while (&woken).read(&mut drain).is_ok_and(|n| n > 0) {}
        }
        let now = Instant::now();
        // fds[i + 1] belongs to jobs[i]; both shrink together.
        let mut i = 0;
        while i < jobs.len() {
            let look = fds[i + 1].revents != 0 || fds[i + 1].fd < 0;
            let ended = if look { jobs[i].turn(now) } else { None };
            match ended.or_else(|| jobs[i].out_of_patience(now)) {
                Some(result) => {
                    let job = jobs.swap_remove(i);
                    fds.swap_remove(i + 1);
                    job.done.set(result);
                }
                None => i += 1,
            }
        }
    }
}

impl Job {
    /// A body still downloading that has sent all that arrived.
    fn starved(&self) -> bool {
        self.growing
            .as_ref()
            .is_some_and(|g| g.have() <= self.at && g.ended().is_none())
    }

    fn out_of_patience(&self, now: Instant) -> Option<io::Result<()>> {
        (now.duration_since(self.last_progress) > self.patience).then(|| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if self.starved() {
                    "timed out waiting for the upstream"
                } else {
                    "client stopped reading"
                },
            ))
        })
    }

    /// Sends what the socket takes now, at most [`TURN`]. `Some`: the job ended.
    fn turn(&mut self, now: Instant) -> Option<io::Result<()>> {
        let mut sent = 0u64;
        loop {
            let until = match &self.growing {
                Some(growing) => {
                    let have = growing.have().min(self.end);
                    if have <= self.at {
                        return match growing.ended() {
                            Some(Err(why)) => Some(Err(io::Error::other(why))),
                            Some(Ok(())) => Some(Err(io::Error::other(format!(
                                "the upstream's file ended at {have} bytes"
                            )))),
                            None => None,
                        };
                    }
                    have
                }
                None => self.end,
            };
            let chunk = (until - self.at).min(TURN - sent);
            // SAFETY: both descriptors stay open until this job answers (`send` waits).
            let (socket, file) = unsafe {
                (
                    BorrowedFd::borrow_raw(self.socket),
                    BorrowedFd::borrow_raw(self.file),
                )
            };
            let mut position = self.at as i64;
            match sendfile64(socket, file, Some(&mut position), chunk as usize) {
                Ok(0) => {
                    return Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank",
                    )))
                }
                Ok(n) => {
                    if self.corked {
                        self.corked = false;
                        let _ = socket2::SockRef::from(&socket).set_tcp_cork(false);
                    }
                    self.at += n as u64;
                    sent += n as u64;
                    self.last_progress = now;
                    if self.at >= self.end {
                        return Some(Ok(()));
                    }
                    if sent >= TURN {
                        return None;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return None,
                Err(error) => return Some(Err(error.into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn temp(name: &str, body: &[u8]) -> std::fs::File {
        let path =
            std::env::temp_dir().join(format!("netbootd-bulk-{name}-{}", std::process::id()));
        std::fs::write(&path, body).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn several_large_bodies_at_once_arrive_whole() {
        let whole = body(5 << 20);
        let file = Arc::new(temp("whole", &whole));
        // Four sends are handed over before any client reads.
        let started: Vec<_> = (0..4)
            .map(|_| {
                let (server, client) = pair();
                let file = file.clone();
                let sending = std::thread::spawn(move || {
                    send(
                        &server,
                        &file,
                        1000,
                        (5 << 20) - 2000,
                        None,
                        Duration::from_secs(10),
                    )
                });
                (sending, client)
            })
            .collect();
        for (sending, mut client) in started {
            let mut got = Vec::new();
            // Until the sending thread drops its socket, after `send` answered.
            client.read_to_end(&mut got).unwrap();
            sending.join().unwrap().unwrap();
            assert!(got == whole[1000..(5 << 20) - 1000]);
        }
    }

    #[test]
    fn a_growing_body_is_sent_as_it_arrives_and_a_failed_one_ends_in_error() {
        let whole = body(3 << 20);
        let growing = Arc::new(Growing::new(temp("growing", b"")));
        growing.start(Some(whole.len() as u64));
        let (server, mut client) = pair();
        let sending = {
            let growing = growing.clone();
            std::thread::spawn(move || {
                send(
                    &server,
                    growing.file(),
                    0,
                    3 << 20,
                    Some(growing.clone()),
                    Duration::from_secs(10),
                )
            })
        };
        let mut got = vec![0u8; 1 << 20];
        growing.append(&whole[..1 << 20]).unwrap();
        // The first part arrives before the rest is written.
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, &whole[..1 << 20]);
        growing.append(&whole[1 << 20..]).unwrap();
        growing.end(Ok(()));
        sending.join().unwrap().unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &whole[1 << 20..]);

        let failing = Arc::new(Growing::new(temp("failing", b"")));
        failing.start(Some(2 << 20));
        failing.append(&whole[..1000]).unwrap();
        let (server, mut client) = pair();
        let sending = {
            let failing = failing.clone();
            std::thread::spawn(move || {
                send(
                    &server,
                    failing.file(),
                    0,
                    2 << 20,
                    Some(failing.clone()),
                    Duration::from_secs(10),
                )
            })
        };
        let mut first = [0u8; 1000];
        client.read_exact(&mut first).unwrap();
        failing.end(Err("upstream closed".into()));
        let error = sending.join().unwrap().unwrap_err();
        assert_eq!(error.to_string(), "upstream closed");
    }

    #[test]
    fn a_client_that_stops_reading_or_a_silent_upstream_ends_within_the_patience() {
        let whole = body(16 << 20);
        let file = temp("stalled", &whole);
        let (server, _client_never_reads) = pair();
        let started = Instant::now();
        let error = send(
            &server,
            &file,
            0,
            16 << 20,
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(error.to_string(), "client stopped reading");
        assert!(started.elapsed() < Duration::from_secs(5));

        let silent = Arc::new(Growing::new(temp("silent", b"")));
        silent.start(Some(2 << 20));
        let (server, _client) = pair();
        let error = send(
            &server,
            silent.file(),
            0,
            2 << 20,
            Some(silent.clone()),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "timed out waiting for the upstream");
    }
}
