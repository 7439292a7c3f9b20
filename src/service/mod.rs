//! The services and the main loop. One `poll(2)` loop, dnsmasq-style: `now` is read once per
//! pass, each part reports its next deadline, and the poll timeout is the earliest of them.
//! The loop owns the signal descriptor, the inventory reloader, the DHCP sockets, the TFTP
//! listener (its transfers run on their own threads), the HTTP listener (its connections run
//! on their own threads) and the syslog receiver.

pub mod dhcp;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod tftp;

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use log::{error, info};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::io::signals::{Request, Signals};
use dhcp::DhcpService;
use http::HttpService;
use reload::InventoryReloader;
use tftp::TftpService;

/// The services that read from the poll loop; `None` when turned off.
#[derive(Default)]
pub struct Services {
    pub dhcp: Option<DhcpService>,
    pub tftp: Option<TftpService>,
    pub http: Option<HttpService>,
}

/// Which service a polled descriptor belongs to.
#[derive(Clone, Copy)]
enum Source {
    Dhcp(usize),
    Tftp,
    Http,
}

impl Services {
    fn fds(&self) -> Vec<(Source, BorrowedFd<'_>)> {
        let mut fds = Vec::new();
        if let Some(d) = &self.dhcp {
            fds.extend(
                d.fds()
                    .into_iter()
                    .enumerate()
                    .map(|(i, fd)| (Source::Dhcp(i), fd)),
            );
        }
        if let Some(t) = &self.tftp {
            fds.push((Source::Tftp, t.fd()));
        }
        if let Some(h) = &self.http {
            fds.push((Source::Http, h.fd()));
        }
        fds
    }

    fn on_readable(&mut self, source: Source) {
        match source {
            Source::Dhcp(i) => self.dhcp.as_mut().map(|d| d.on_readable(i)),
            Source::Tftp => self.tftp.as_mut().map(|t| t.on_readable()),
            Source::Http => self.http.as_mut().map(|h| h.on_readable()),
        };
    }
}

/// Runs until SIGTERM or SIGINT; returns the process exit code.
pub fn run(mut signals: Signals, mut reloader: InventoryReloader, mut services: Services) -> i32 {
    loop {
        let now = Instant::now();
        let wait = reloader.next_deadline().saturating_duration_since(now);
        // Round up, so the loop does not spin through the last sub-millisecond.
        let millis = wait.as_micros().div_ceil(1000).min(60_000) as u16;

        let service_fds = services.fds();
        let sources: Vec<Source> = service_fds.iter().map(|(s, _)| *s).collect();
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            service_fds
                .into_iter()
                .map(|(_, fd)| PollFd::new(fd, PollFlags::POLLIN)),
        );
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
                    if let Some(t) = &services.tftp {
                        t.stop();
                    }
                    return 0;
                }
                Request::Reload => reloader.on_reload_request(),
            }
        }
        for (source, _) in sources.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            services.on_readable(*source);
        }
        reloader.on_timer(Instant::now());
    }
}
