//! The services and the main loop. One `poll(2)` loop in the manner of smoltcp's
//! `Interface::poll_at` and quinn-proto's `poll_timeout`/`handle_timeout(now)`: every
//! [`Service`] names its descriptors, says when it next wants time ([`Service::poll_at`]), and
//! is handed `now` (read once per pass) for whatever it is asked to do. The loop sleeps until
//! a descriptor is readable or the earliest deadline comes; with nothing due it sleeps without
//! limit. Besides the services it owns the control plane: the signal descriptor and the
//! [`Reloader`], whose work runs off this thread.
//!
//! Adding a service is one registration: implement [`Service`] and add a line to
//! [`crate::cli`]'s list of services.

#[cfg(feature = "remote")]
pub mod assets;
pub mod dhcp;
pub mod http;
pub mod ipxe_patch;
pub mod log_gate;
pub mod metrics;
pub mod pool;
pub mod reload;
#[cfg(feature = "remote")]
pub mod remote;
pub mod syslog;
pub mod tftp;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{error, info};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::config::Config;
use crate::inventory::{Clash, Inventory, InventoryStore};
use crate::io::signals::{Request, Signals};
use crate::wire::MacAddr;
use metrics::Metrics;
use reload::Reloader;

/// What every service starts with besides its configuration.
#[derive(Clone)]
pub struct Context {
    pub inventory: Arc<InventoryStore>,
    pub metrics: Arc<Metrics>,
    /// The one budget for log lines that clients can cause.
    pub log: Arc<log_gate::LogGate>,
    /// The remote inventory source's state (`None` without one), for `/healthcheck`.
    pub source: Arc<Mutex<Option<SourceStatus>>>,
    /// MACs the DHCP service did not find, for the remote source to look up at once.
    pub lookups: Arc<Lookups>,
    /// The hardware file and a remote source served as one (`None`: one source).
    pub combined: Option<Arc<Combined>>,
    /// The address pools for unknown machines and their discovery list: the DHCP service
    /// changes them, `/unknown` reads them (empty without `[[pool]]` tables).
    pub pools: Arc<Mutex<crate::policy::pool::Pools>>,
    /// The asset pull-through cache, shared by HTTP and TFTP.
    pub assets: Assets,
    /// iPXE binaries with `--ipxe-script-patch` applied, shared by HTTP and TFTP.
    pub ipxe_binaries: Arc<ipxe_patch::PatchedBinaries>,
}

/// The asset cache as the services use it: present in builds with the HTTP client (feature
/// `remote`), and then only used when the configuration names an upstream or the ISO.
#[derive(Clone)]
pub struct Assets(#[cfg(feature = "remote")] Arc<assets::AssetCache>);

impl Assets {
    pub fn new(_metrics: &metrics::Metrics) -> Assets {
        Assets(
            #[cfg(feature = "remote")]
            assets::AssetCache::new(_metrics),
        )
    }

    /// Creates the cache directory and trims the cache to its limit.
    pub fn prepare(&self, _config: &Config) -> std::io::Result<()> {
        #[cfg(feature = "remote")]
        if _config.cache_on() {
            self.0.prepare(&_config.asset_cache)?;
            return crate::io::privileges::hand_over(
                &_config.asset_cache.dir,
                _config.user.as_deref(),
            )
            .map_err(std::io::Error::other);
        }
        Ok(())
    }

    /// An asset not in `--assets-dir`: from the cache, or its upstream (waiting at most
    /// `head_wait` for the upstream's head). `NotFound` without an upstream for it.
    pub fn open(
        &self,
        _settings: &crate::config::assets::AssetCacheSettings,
        _relative: &str,
        _head_wait: Duration,
    ) -> Result<crate::io::files::Served, crate::policy::served::Refusal> {
        #[cfg(feature = "remote")]
        if !_settings.upstreams.is_empty() {
            return self.0.open(_settings, _relative, _head_wait);
        }
        Err(crate::policy::served::Refusal::NotFound)
    }

    /// The `--iso-url` image, through the cache.
    pub fn open_iso(
        &self,
        _config: &Config,
        _head_wait: Duration,
    ) -> Result<crate::io::files::Served, crate::policy::served::Refusal> {
        #[cfg(feature = "remote")]
        if let Some(iso) = &_config.iso {
            let key = crate::policy::assets::iso_key(&iso.url);
            return self
                .0
                .open_url(&_config.asset_cache, &key, &iso.url, _head_wait);
        }
        Err(crate::policy::served::Refusal::NotFound)
    }
}

/// The hardware file and a remote source served as one: each source keeps its own store, and
/// the inventory in service is the file's machines over the remote's ([`Inventory::layered`]),
/// put together again (on the loop, without copying machines) whenever either changes.
#[derive(Debug)]
pub struct Combined {
    pub file: Arc<InventoryStore>,
    pub remote: Arc<InventoryStore>,
    served: Arc<InventoryStore>,
    /// The clashes last logged, to log each once.
    logged: Mutex<Vec<Clash>>,
}

impl Combined {
    /// Starts with the file's machines over a remote source that has no snapshot yet.
    pub fn new(file: Arc<InventoryStore>) -> Combined {
        let remote = Arc::new(InventoryStore::new(Inventory::pending()));
        let (layered, _) = Inventory::layered(file.snapshot(), remote.snapshot());
        Combined {
            file,
            remote,
            served: Arc::new(InventoryStore::new(layered)),
            logged: Mutex::new(Vec::new()),
        }
    }

    /// What the services read.
    pub fn served(&self) -> Arc<InventoryStore> {
        Arc::clone(&self.served)
    }

    /// Puts the two sources' current snapshots in service as one; a MAC (or an address) both
    /// hold is logged once at ERROR: the file's entry is served. Returns the replaced one.
    pub fn publish(&self) -> Arc<Inventory> {
        let (layered, clashes) = Inventory::layered(self.file.snapshot(), self.remote.snapshot());
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let new: Vec<&Clash> = clashes.iter().filter(|c| !logged.contains(c)).collect();
        for clash in new.iter().take(20) {
            error!("inventory: {clash}");
        }
        if new.len() > 20 {
            error!(
                "inventory: {} more machines in both sources, not shown",
                new.len() - 20
            );
        }
        *logged = clashes;
        self.served.replace(layered)
    }
}

/// MACs to look up in the remote source ("fetch on miss"): the DHCP service asks, the source's
/// service takes them in the loop. Off (every request ignored) without a remote source; at
/// most [`Lookups::MAX`] wait, each once.
#[derive(Debug, Default)]
pub struct Lookups {
    enabled: AtomicBool,
    waiting: Mutex<Vec<MacAddr>>,
}

impl Lookups {
    pub const MAX: usize = 64;

    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// A request from `mac`, which the inventory does not know.
    pub fn request(&self, mac: MacAddr) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.len() < Self::MAX && !waiting.contains(&mac) {
            waiting.push(mac);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    pub fn take(&self) -> Vec<MacAddr> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Where a remote inventory source stands, as `/healthcheck` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStatus {
    pub name: &'static str,
    /// `starting`, `ok`, `stale` or `failing` ([`crate::policy::source::State`]).
    pub state: &'static str,
    pub fetched_at: Option<Instant>,
    pub machines: usize,
    pub last_error: Option<String>,
    pub refresh_seconds: Option<f64>,
}

/// One service in the poll loop.
pub trait Service {
    /// Its name in the log ("DHCP", "TFTP").
    fn name(&self) -> &'static str;

    /// One line for the start-up log: what listens where, and its limits.
    fn describe(&self) -> String;

    /// The descriptors to poll for reading, asked anew on every pass (a service may add and
    /// drop descriptors as it goes: the HTTP service's connections waiting for a head).
    fn fds(&self) -> Vec<BorrowedFd<'_>>;

    /// Descriptor `fd` of [`Service::fds`] is readable. (A descriptor the service closed earlier
    /// in the same pass may be named, or its number may have been reused: a read that would
    /// block is the answer then.)
    fn on_readable(&mut self, fd: RawFd, now: Instant);

    /// The earliest time the service wants [`Service::on_timer`]; `None`: no timer.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// Called on every pass at or after [`Service::poll_at`].
    fn on_timer(&mut self, _now: Instant) {}

    /// A reloaded configuration, for the requests from now on. What was fixed when the sockets
    /// were bound stays: [`crate::config::reload`] keeps it as running.
    fn reconfigure(&mut self, _config: &Config) {}

    /// Shutdown begins: stop taking new work. Returns true when there is work to finish
    /// (the service stays in the loop); false drops it at once, closing its sockets.
    fn drain(&mut self) -> bool {
        false
    }

    /// Work still running after [`Service::drain`]: how many, and what they are called
    /// ("TFTP transfers").
    fn in_flight(&self) -> Option<(usize, &'static str)> {
        None
    }

    /// The grace period is over: end what is left, saying so in the log.
    fn abort(&mut self, _grace: Duration) {}
}

/// How long a shutdown waits for running TFTP transfers and HTTP downloads to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Longest single sleep: only a guard, since every deadline wakes the loop itself.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Which part of the loop a polled descriptor belongs to.
#[derive(Clone, Copy)]
enum Owner {
    Signals,
    Reloader(usize),
    Service(usize, RawFd),
}

/// The earliest of the deadlines, as a poll timeout (rounded up, so the loop does not spin
/// through the last sub-millisecond; no deadline sleeps up to [`MAX_SLEEP`]).
fn timeout_until(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    let wait = deadline.map_or(MAX_SLEEP, |d| {
        d.saturating_duration_since(now).min(MAX_SLEEP)
    });
    let millis = wait.as_micros().div_ceil(1000);
    PollTimeout::try_from(millis as i32).unwrap_or(PollTimeout::MAX)
}

/// Polls everything once; returns the owners of the readable descriptors.
fn poll_once(
    signals: &Signals,
    reloader: &Reloader,
    services: &[Box<dyn Service>],
    now: Instant,
) -> Result<Vec<Owner>, Errno> {
    let deadline = services
        .iter()
        .filter_map(|s| s.poll_at())
        .chain(reloader.poll_at())
        .min();
    let mut owners = vec![Owner::Signals];
    let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    for (i, fd) in reloader.fds().into_iter().enumerate() {
        owners.push(Owner::Reloader(i));
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    for (s, service) in services.iter().enumerate() {
        for fd in service.fds() {
            owners.push(Owner::Service(s, fd.as_raw_fd()));
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
    }
    match nix::poll::poll(&mut fds, timeout_until(deadline, now)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e),
    }
    Ok(owners
        .into_iter()
        .zip(&fds)
        .filter(|(_, fd)| fd.any().unwrap_or(false))
        .map(|(owner, _)| owner)
        .collect())
}

/// Runs until SIGTERM or SIGINT; returns the process exit code.
pub fn run(
    mut signals: Signals,
    mut reloader: Reloader,
    mut services: Vec<Box<dyn Service>>,
) -> i32 {
    loop {
        let ready = match poll_once(&signals, &reloader, &services, Instant::now()) {
            Ok(ready) => ready,
            Err(e) => {
                error!("poll failed: {e}");
                return 1;
            }
        };
        let now = Instant::now();
        let mut reconfigured = None;
        for owner in ready {
            match owner {
                Owner::Signals => {}
                Owner::Reloader(i) => reconfigured = reloader.on_readable(i, now).or(reconfigured),
                Owner::Service(s, fd) => services[s].on_readable(fd, now),
            }
        }
        for request in signals.drain() {
            match request {
                Request::Stop(signal) => {
                    info!("stopping on {signal}");
                    return shutdown(services);
                }
                Request::Reload => reloader.on_reload_request(now),
            }
        }
        reloader.on_timer(now);
        if let Some(config) = reconfigured {
            services.iter_mut().for_each(|s| s.reconfigure(&config));
        }
        for service in &mut services {
            if service.poll_at().is_some_and(|at| at <= now) {
                service.on_timer(now);
            }
        }
    }
}

/// "1 TFTP transfers and 0 HTTP downloads": the work still running, by kind.
fn describe_in_flight(services: &[Box<dyn Service>]) -> (usize, String) {
    let work: Vec<(usize, &str)> = services.iter().filter_map(|s| s.in_flight()).collect();
    let total = work.iter().map(|(n, _)| n).sum();
    let text = work
        .iter()
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(" and ");
    (total, text)
}

/// SIGTERM/SIGINT: stop taking work (services with nothing to finish are dropped, closing
/// their sockets), let running work finish for up to [`SHUTDOWN_GRACE`] (the services that
/// stay are still polled: single-port TFTP forwards its clients' packets), then end what is
/// left and return 0.
fn shutdown(mut services: Vec<Box<dyn Service>>) -> i32 {
    let started = Instant::now();
    services.retain_mut(|s| s.drain());
    let (total, text) = describe_in_flight(&services);
    if total > 0 {
        info!("waiting up to {SHUTDOWN_GRACE:?} for {text}");
    }
    while describe_in_flight(&services).0 > 0 && started.elapsed() < SHUTDOWN_GRACE {
        let mut owners = Vec::new();
        let mut fds = Vec::new();
        for (s, service) in services.iter().enumerate() {
            for fd in service.fds() {
                owners.push((s, fd.as_raw_fd()));
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
        }
        let ready: Vec<(usize, RawFd)> = match nix::poll::poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(n) if n > 0 => owners
                .into_iter()
                .zip(&fds)
                .filter(|(_, fd)| fd.any().unwrap_or(false))
                .map(|(owner, _)| owner)
                .collect(),
            _ => Vec::new(),
        };
        drop(fds);
        let now = Instant::now();
        for (s, fd) in ready {
            services[s].on_readable(fd, now);
        }
    }
    for service in &mut services {
        if service.in_flight().is_some_and(|(n, _)| n > 0) {
            service.abort(SHUTDOWN_GRACE);
        }
    }
    info!("stopped after {:.1}s", started.elapsed().as_secs_f64());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_timeout_is_the_earliest_deadline_rounded_up() {
        let now = Instant::now();
        let at = |us: u64| Some(now + Duration::from_micros(us));
        assert_eq!(timeout_until(at(0), now), PollTimeout::ZERO);
        assert_eq!(timeout_until(at(1), now), PollTimeout::from(1u16));
        assert_eq!(timeout_until(at(2500), now), PollTimeout::from(3u16));
        // A deadline already past: no wait.
        assert_eq!(
            timeout_until(Some(now), now + Duration::from_secs(1)),
            PollTimeout::ZERO
        );
        // Nothing due: the loop sleeps until a descriptor wakes it (bounded by a guard).
        assert_eq!(
            timeout_until(None, now),
            PollTimeout::try_from(MAX_SLEEP.as_millis() as i32).unwrap()
        );
    }
}
