//! The services and the main loop. One `poll(2)` loop, dnsmasq-style: `now` is read once per
//! pass, each part reports its next deadline, and the poll timeout is the earliest of them.
//! The loop owns the signal descriptor, the inventory reloader, the DHCP sockets, the TFTP
//! listener (its transfers run on their own threads), the HTTP listener (its connections run
//! on their own threads) and the syslog receiver.

pub mod dhcp;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod syslog;
pub mod tftp;

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use log::{error, info};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::config::Config;
use crate::io::signals::{Request, Signals};
use dhcp::DhcpService;
use http::HttpService;
use reload::{ConfigReloader, InventoryReloader};
use syslog::SyslogService;
use tftp::TftpService;

/// The services that read from the poll loop; `None` when turned off.
#[derive(Default)]
pub struct Services {
    pub dhcp: Option<DhcpService>,
    pub tftp: Option<TftpService>,
    pub http: Option<HttpService>,
    pub syslog: Option<SyslogService>,
}

/// Which service a polled descriptor belongs to.
#[derive(Clone, Copy)]
enum Source {
    Dhcp(usize),
    Tftp,
    Http,
    Syslog,
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
        if let Some(s) = &self.syslog {
            fds.push((Source::Syslog, s.fd()));
        }
        fds
    }

    fn on_readable(&mut self, source: Source, now: Instant) {
        match source {
            Source::Dhcp(i) => self.dhcp.as_mut().map(|d| d.on_readable(i)),
            Source::Tftp => self.tftp.as_mut().map(|t| t.on_readable()),
            Source::Http => self.http.as_mut().map(|h| h.on_readable()),
            Source::Syslog => self.syslog.as_mut().map(|s| s.on_readable(now)),
        };
    }

    /// The earliest time a service wants [`Self::on_timer`].
    fn next_deadline(&self) -> Option<Instant> {
        self.syslog.as_ref().and_then(SyslogService::next_deadline)
    }

    fn on_timer(&mut self, now: Instant) {
        if let Some(s) = &mut self.syslog {
            s.on_timer(now);
        }
    }

    /// A reloaded configuration, for the requests from now on (the syslog receiver has
    /// nothing that may change without a restart).
    fn reconfigure(&mut self, config: &Config) {
        if let Some(d) = &mut self.dhcp {
            d.reconfigure(&config.dhcp);
        }
        if let Some(t) = &mut self.tftp {
            t.reconfigure(
                &config.tftp,
                config.ipxe_dir.as_deref(),
                config.assets_dir.as_deref(),
            );
        }
        if let Some(h) = &self.http {
            h.reconfigure(config);
        }
    }
}

/// What SIGHUP reloads: the configuration and the inventory.
pub struct Reloaders {
    pub config: ConfigReloader,
    pub inventory: InventoryReloader,
}

/// Runs until SIGTERM or SIGINT; returns the process exit code.
pub fn run(mut signals: Signals, reloaders: Reloaders, mut services: Services) -> i32 {
    let Reloaders {
        config: mut config_reloader,
        inventory: mut reloader,
    } = reloaders;
    loop {
        let now = Instant::now();
        let deadline = match services.next_deadline() {
            Some(d) => d.min(reloader.next_deadline()),
            None => reloader.next_deadline(),
        };
        let wait = deadline.saturating_duration_since(now);
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
                    return shutdown(services);
                }
                Request::Reload => {
                    if let Some(config) = config_reloader.on_reload_request(&mut reloader) {
                        services.reconfigure(config);
                    }
                }
            }
        }
        let now = Instant::now();
        for (source, _) in sources.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            services.on_readable(*source, now);
        }
        reloader.on_timer(now);
        services.on_timer(now);
    }
}

/// How long a shutdown waits for running TFTP transfers and HTTP downloads to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// After the grace period: time for the workers to send their ERROR and end.
const SHUTDOWN_ABORT: Duration = Duration::from_secs(2);

/// SIGTERM/SIGINT: stop taking work (DHCP and syslog sockets and the HTTP listener close, TFTP
/// refuses new requests), let running transfers and downloads finish for up to
/// [`SHUTDOWN_GRACE`], then end what is left (TFTP clients get an ERROR) and return 0.
fn shutdown(mut services: Services) -> i32 {
    let started = Instant::now();
    services.dhcp = None;
    services.syslog = None;
    let downloads = services.http.take().map(|h| h.downloads());
    let downloading = || downloads.as_ref().map_or(0, |d| d.running());
    let transfers = |s: &Services| s.tftp.as_ref().map_or(0, |t| t.active_transfers());
    if let Some(t) = &services.tftp {
        t.drain();
    }
    let (t, d) = (transfers(&services), downloading());
    if t + d > 0 {
        info!("waiting up to {SHUTDOWN_GRACE:?} for {t} TFTP transfers and {d} HTTP downloads");
    }
    while transfers(&services) + downloading() > 0 && started.elapsed() < SHUTDOWN_GRACE {
        // Single-port TFTP: the listener still forwards the clients' packets to the workers.
        let ready = match &services.tftp {
            Some(t) => {
                let mut fds = [PollFd::new(t.fd(), PollFlags::POLLIN)];
                nix::poll::poll(&mut fds, PollTimeout::from(50u16)).is_ok_and(|n| n > 0)
            }
            None => {
                std::thread::sleep(Duration::from_millis(50));
                false
            }
        };
        if ready {
            services.on_readable(Source::Tftp, Instant::now());
        }
    }
    let (t, d) = (transfers(&services), downloading());
    if t > 0 {
        info!("ending {t} TFTP transfers still running after {SHUTDOWN_GRACE:?}");
        if let Some(tftp) = &services.tftp {
            tftp.stop();
        }
        let abort = Instant::now();
        while transfers(&services) > 0 && abort.elapsed() < SHUTDOWN_ABORT {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if d > 0 {
        info!("leaving {d} HTTP downloads unfinished after {SHUTDOWN_GRACE:?}");
    }
    info!("stopped after {:.1}s", started.elapsed().as_secs_f64());
    0
}
