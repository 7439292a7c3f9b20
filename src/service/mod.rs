//! The services and the main loop. One `poll(2)` loop, dnsmasq-style: `now` is read once per
//! pass, each part reports its next deadline, and the poll timeout is the earliest of them.
//! Today the loop owns the signal descriptor and the inventory reloader; the DHCP, TFTP,
//! HTTP and syslog services join it.

pub mod reload;

use std::os::fd::AsFd;
use std::time::Instant;

use log::{error, info};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::io::signals::{Request, Signals};
use reload::InventoryReloader;

/// Runs until SIGTERM or SIGINT; returns the process exit code.
pub fn run(mut signals: Signals, mut reloader: InventoryReloader) -> i32 {
    loop {
        let now = Instant::now();
        let wait = reloader.next_deadline().saturating_duration_since(now);
        // Round up, so the loop does not spin through the last sub-millisecond.
        let millis = wait.as_micros().div_ceil(1000).min(60_000) as u16;
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                error!("poll failed: {e}");
                return 1;
            }
        }
        for request in signals.drain() {
            match request {
                Request::Stop(signal) => {
                    info!("stopping on {signal}");
                    return 0;
                }
                Request::Reload => reloader.on_reload_request(),
            }
        }
        reloader.on_timer(Instant::now());
    }
}
