//! SIGTERM, SIGINT and SIGHUP as a descriptor for the poll loop (signalfd). The signals are
//! blocked first, in the main thread before any other starts, so that every thread inherits
//! the mask and they are only ever delivered through the descriptor.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Stop(Signal),
    Reload,
}

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the signals in this thread and opens the descriptor. Call before spawning threads.
    pub fn install() -> nix::Result<Signals> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(s);
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// The pending requests, oldest first.
    pub fn drain(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => out.push(Request::Reload),
                Ok(signal) => out.push(Request::Stop(signal)),
                Err(_) => {}
            }
        }
        out
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
