//! Work that must not run on the poll loop's thread (parsing a reloaded file; later, fetches
//! from remote sources), with a way back into the loop: [`Background::start`] runs a job on a
//! thread of its own, and its result waits in a channel while one byte on a socket pair wakes
//! the loop, which polls [`Background::fd`] like any socket and then calls
//! [`Background::take`]. One job runs at a time (a caller that wants another while one runs
//! remembers that and starts it when the result is back), and no thread exists between jobs,
//! so an idle server keeps its single thread.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};

/// A background job runs at a lower priority than the loop (nice +10 for its thread): on a
/// small machine, parsing a large snapshot must not take CPU time from a DHCP answer.
fn yield_to_serving() {
    // On Linux, PRIO_PROCESS with 0 sets the calling thread's nice value only.
    // SAFETY: a plain system call with integer arguments; its failure changes nothing.
    let _ = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 10) };
}

/// A job's stack: parsing needs some depth (nested YAML), nothing more.
const JOB_STACK: usize = 1 << 20;

pub struct Background<T> {
    name: &'static str,
    results: Receiver<T>,
    sender: Sender<T>,
    wake_read: UnixStream,
    wake_write: UnixStream,
    running: bool,
}

impl<T: Send + 'static> Background<T> {
    pub fn new(name: &'static str) -> io::Result<Background<T>> {
        let (wake_read, wake_write) = UnixStream::pair()?;
        wake_read.set_nonblocking(true)?;
        let (sender, results) = channel();
        Ok(Background {
            name,
            results,
            sender,
            wake_read,
            wake_write,
            running: false,
        })
    }

    /// True while a job runs (its result not yet taken).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Runs `job` on its own thread. The caller checks [`Self::is_running`] first: one job at
    /// a time. A job that panics comes back as `on_panic()`.
    pub fn start(
        &mut self,
        job: impl FnOnce() -> T + Send + 'static,
        on_panic: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<()> {
        debug_assert!(!self.running, "one background job at a time");
        let sender = self.sender.clone();
        let mut wake = self.wake_write.try_clone()?;
        std::thread::Builder::new()
            .name(self.name.into())
            .stack_size(JOB_STACK)
            .spawn(move || {
                yield_to_serving();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    .unwrap_or_else(|_| on_panic());
                // The loop may be gone (shutdown): nobody is left to tell.
                if sender.send(result).is_ok() {
                    let _ = wake.write_all(&[1]);
                }
            })?;
        self.running = true;
        Ok(())
    }

    /// The descriptor the loop polls: readable when a result is waiting.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// The finished job's result, if it is back.
    pub fn take(&mut self) -> Option<T> {
        let mut drain = [0u8; 16];
        while matches!((&self.wake_read).read(&mut drain), Ok(n) if n > 0) {}
        match self.results.try_recv() {
            Ok(result) => {
                self.running = false;
                Some(result)
            }
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout};

    /// Waits for the job's result. Generous: a panicking job prints its backtrace first, which
    /// takes seconds under qemu-user (how the MIPS tests run).
    fn wait_readable(b: &Background<u32>) -> bool {
        let mut fds = [PollFd::new(b.fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, PollTimeout::from(60_000u16)) == Ok(1)
    }

    #[test]
    fn a_result_wakes_the_poller_and_is_taken_once() {
        let mut b = Background::new("test").unwrap();
        assert_eq!(b.take(), None);
        b.start(|| 7, || 0).unwrap();
        assert!(b.is_running());
        assert!(wait_readable(&b));
        assert_eq!(b.take(), Some(7));
        assert!(!b.is_running());
        assert_eq!(b.take(), None);
        // The wake-up was drained: nothing is readable until the next job ends.
        let mut fds = [PollFd::new(b.fd(), PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, PollTimeout::from(50u16)), Ok(0));
        b.start(|| 8, || 0).unwrap();
        assert!(wait_readable(&b));
        assert_eq!(b.take(), Some(8));
    }

    #[test]
    fn a_job_that_panics_comes_back_as_its_fallback() {
        let mut b = Background::new("test").unwrap();
        b.start(|| panic!("a bug, on purpose (test)"), || 99)
            .unwrap();
        assert!(wait_readable(&b));
        assert_eq!(b.take(), Some(99));
    }
}
