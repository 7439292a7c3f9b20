//! The services and the main loop. One `poll(2)` loop, dnsmasq-style: `now` is read once per
//! pass, each part reports its next deadline, and the poll timeout is the earliest of them.
//! The loop owns the signal descriptor, the inventory reloader and the DHCP service's sockets;
//! the TFTP listener and the syslog receiver join it.

pub mod dhcp;
pub mod reload;

use std::os::fd::AsFd;
use std::time::Instant;

use log::{error, info};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::io::signals::{Request, Signals};
use dhcp::DhcpService;
use reload::InventoryReloader;

/// Runs until SIGTERM or SIGINT; returns the process exit code.
pub fn run(
    mut signals: Signals,
    mut reloader: InventoryReloader,
    mut dhcp: Option<DhcpService>,
) -> i32 {
    loop {
        let now = Instant::now();
        let wait = reloader.next_deadline().saturating_duration_since(now);
        // Round up, so the loop does not spin through the last sub-millisecond.
        let millis = wait.as_micros().div_ceil(1000).min(60_000) as u16;

        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Some(d) = &dhcp {
            fds.extend(d.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        }
        match nix::poll::poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                error!("poll failed: {e}");
                return 1;
            }
        }
        let ready: Vec<bool> = fds.iter().map(|fd| fd.any().unwrap_or(false)).collect();
        drop(fds);

        for request in signals.drain() {
            match request {
                Request::Stop(signal) => {
                    info!("stopping on {signal}");
                    return 0;
                }
                Request::Reload => reloader.on_reload_request(),
            }
        }
        if let Some(d) = &mut dhcp {
            for (index, _) in ready[1..].iter().enumerate().filter(|(_, r)| **r) {
                d.on_readable(index);
            }
        }
        reloader.on_timer(Instant::now());
    }
}
