//! The address pool's side effects, for the DHCP service: the journal (loaded at start, records
//! appended and synced before the ACKs they stand for leave, compacted when it has grown), the
//! probes (ARP or ICMP, 200 ms) run before a new address is offered, and the pool's gauges.
//! The decisions are [`crate::policy::pool`]'s.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn};

use crate::config::pools::PoolSettings;
use crate::config::Config;
use crate::io::background::Background;
use crate::io::pool_journal::{write_new, Journal};
use crate::io::probe::{ArpProbe, IcmpProbe};
use crate::policy::pool::{Millis, Pools};
use crate::service::metrics::Metrics;

/// How long a probe waits for an answer.
pub const PROBE_WAIT: Duration = Duration::from_millis(200);
/// Probes running at once; beyond, the address is offered unprobed (and counted).
pub const MAX_PROBES: usize = 4096;
/// How often the discovery list's counters are written (by a compaction) when they changed.
const DISCOVERY_SAVE: Duration = Duration::from_secs(60);
/// How often the gauges are brought up to date.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch, the pool's clock.
pub fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// The server's own addresses, never handed out.
pub fn own_addresses(config: &Config) -> Vec<Ipv4Addr> {
    let mut own = vec![
        config.dhcp.ip_for_packet,
        *config.dhcp.addr.ip(),
        config.dhcp.tftp_ip,
        config.http.addr,
        config.tftp.addr,
    ];
    own.retain(|ip| !ip.is_unspecified());
    crate::value::sort_by(&mut own, Ord::cmp);
    own.dedup();
    own
}

/// Which way a pool's addresses are probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeBy {
    Arp,
    Icmp,
    /// No socket could be opened (warned at start): offered unprobed.
    Nothing,
}

pub struct PoolRuntime {
    pub state: Arc<Mutex<Pools>>,
    journal: Journal,
    arp: Option<ArpProbe>,
    icmp: Option<IcmpProbe>,
    server_ip: Ipv4Addr,
    metrics: Arc<Metrics>,
    /// The journal's rewrite, off the loop: (temporary file, how writing it went).
    rewrite: Background<(std::path::PathBuf, std::io::Result<()>)>,
    rewrite_started: Option<Instant>,
    /// After a failed rewrite, none before this (one error line a minute at most).
    rewrite_not_before: Option<Instant>,
    next_discovery_save: Instant,
    next_gauges: Instant,
    /// The inventory generation whose MACs were last taken off the discovery list.
    pub seen_generation: u64,
    /// Pool-full silences not logged yet, and when the last such line was written.
    pub full_unlogged: u64,
    pub full_logged_at: Option<Instant>,
}

impl PoolRuntime {
    /// Loads the journal into `state` (configured with `config`'s pools), rewrites it (a torn
    /// last record goes), and opens the probe sockets. Errors name the state directory.
    pub fn start(
        config: &Config,
        state: Arc<Mutex<Pools>>,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<PoolRuntime, String> {
        let (mut journal, read) = Journal::open(&config.state_dir)?;
        let wall = wall_ms();
        let snapshot = {
            let mut pools = lock(&state);
            *pools = Pools::new(config.pools.clone(), own_addresses(config));
            let n = read.records.len();
            for record in read.records {
                pools.replay(record);
            }
            let leases = pools.leases().iter().filter(|l| l.bound(wall)).count();
            info!(
                "pool: {} loaded: {n} records, {leases} leases in force, {} unknown MACs{}{}",
                journal.path().display(),
                pools.discovered().count(),
                if read.torn {
                    "; a torn last record (a write cut short) was ignored"
                } else {
                    ""
                },
                if read.damaged > 0 {
                    format!("; {} damaged records skipped", read.damaged)
                } else {
                    String::new()
                }
            );
            pools.snapshot(wall)
        };
        journal
            .compact(&snapshot)
            .map_err(|e| format!("{}: {e}", journal.path().display()))?;
        let arp = match &config.dhcp.iface {
            Some(iface) => match ArpProbe::open(iface, config.dhcp.ip_for_packet) {
                Ok(a) => Some(a),
                Err(e) => {
                    warn!("pool: no ARP probes on {iface}: {e}");
                    None
                }
            },
            None => None,
        };
        let icmp = match IcmpProbe::open() {
            Ok(i) => Some(i),
            Err(e) => {
                warn!("pool: no ICMP probes (a raw socket needs CAP_NET_RAW): {e}");
                None
            }
        };
        Ok(PoolRuntime {
            state,
            journal,
            arp,
            icmp,
            server_ip: config.dhcp.ip_for_packet,
            metrics,
            rewrite: Background::new("pool journal").map_err(|e| e.to_string())?,
            rewrite_started: None,
            rewrite_not_before: None,
            next_discovery_save: now + DISCOVERY_SAVE,
            next_gauges: now,
            seen_generation: 0,
            full_unlogged: 0,
            full_logged_at: None,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Pools> {
        lock(&self.state)
    }

    /// How `pool`'s addresses are probed: ARP when the pool is on the DHCP interface's
    /// segment, else ICMP echo.
    pub fn probe_by(&self, pool: &PoolSettings) -> ProbeBy {
        if self.arp.is_some() && pool.serves(self.server_ip) {
            ProbeBy::Arp
        } else if self.icmp.is_some() {
            ProbeBy::Icmp
        } else {
            ProbeBy::Nothing
        }
    }

    /// Sends one probe of `ip`.
    pub fn send_probe(&mut self, by: ProbeBy, ip: Ipv4Addr) -> std::io::Result<()> {
        match by {
            ProbeBy::Arp => self.arp.as_ref().map_or(Ok(()), |a| a.send(ip)),
            ProbeBy::Icmp => self.icmp.as_mut().map_or(Ok(()), |i| i.send(ip)),
            ProbeBy::Nothing => Ok(()),
        }
    }

    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.rewrite.fd()];
        if let Some(a) = &self.arp {
            fds.push(a.as_fd());
        }
        if let Some(i) = &self.icmp {
            fds.push(i.as_fd());
        }
        fds
    }

    pub fn owns(&self, fd: RawFd) -> bool {
        self.fds().iter().any(|f| f.as_raw_fd() == fd)
    }

    /// Is `fd` the rewrite's wake-up (else a probe socket)?
    pub fn is_rewrite(&self, fd: RawFd) -> bool {
        self.rewrite.fd().as_raw_fd() == fd
    }

    /// Addresses that answered, read from the probe socket `fd` until it would block.
    pub fn answers(&self, fd: RawFd) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for _ in 0..1024 {
            let got = if self
                .arp
                .as_ref()
                .is_some_and(|a| a.as_fd().as_raw_fd() == fd)
            {
                self.arp.as_ref().map(ArpProbe::recv)
            } else {
                self.icmp.as_ref().map(IcmpProbe::recv)
            };
            match got {
                Some(Ok(Some(ip))) => out.push(ip),
                Some(Ok(None)) => {}
                Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Some(Err(e)) => {
                    debug!("pool: probe socket: {e}");
                    break;
                }
                None => break,
            }
        }
        out
    }

    /// Writes the pool's unwritten records and syncs them. Ok: the ACKs waiting may go.
    pub fn commit(&mut self) -> Result<(), String> {
        let records = lock(&self.state).take_records();
        self.journal
            .append(&records)
            .map_err(|e| format!("{}: {e}", self.journal.path().display()))
    }

    /// When [`PoolRuntime::on_timer`] next has work.
    pub fn poll_at(&self) -> Instant {
        self.next_gauges.min(self.next_discovery_save)
    }

    /// A rewrite of the journal when due (in the background), and the gauges.
    pub fn on_timer(&mut self, now: Instant) {
        let due = self.journal.wants_compaction()
            || (now >= self.next_discovery_save && lock(&self.state).discovery_dirty());
        if now >= self.next_discovery_save {
            self.next_discovery_save = now + DISCOVERY_SAVE;
        }
        let allowed = self.rewrite_not_before.is_none_or(|at| now >= at);
        if due && allowed && !self.rewrite.is_running() {
            self.begin_rewrite(now);
        }
        if now >= self.next_gauges {
            self.next_gauges = now + GAUGES_EVERY;
            self.gauges();
        }
    }

    /// Takes the state (on the loop: encoding only) and has a thread write it.
    fn begin_rewrite(&mut self, now: Instant) {
        let state = lock(&self.state).snapshot(wall_ms());
        let (tmp, text) = self.journal.begin_rewrite(&state);
        let job_tmp = tmp.clone();
        let started = self.rewrite.start(
            move || {
                let r = write_new(&job_tmp, &text);
                (job_tmp, r)
            },
            move || {
                (
                    tmp,
                    Err(std::io::Error::other("the rewrite thread panicked")),
                )
            },
        );
        match started {
            Ok(()) => self.rewrite_started = Some(now),
            Err(e) => {
                let _ = self.journal.finish_rewrite(Path::new(""), Err(e));
            }
        }
    }

    /// The background write is done: the records appended meanwhile are added and the new
    /// file replaces the old one.
    pub fn on_rewrite_done(&mut self) {
        let Some((tmp, written)) = self.rewrite.take() else {
            return;
        };
        let began = self.rewrite_started.take();
        let finished = Instant::now();
        match self.journal.finish_rewrite(&tmp, written) {
            Ok(()) => info!(
                "pool: journal rewritten ({} records) in {:.1} ms, {:.1} ms of it on the loop",
                self.journal.compacted_with,
                began.map_or(0.0, |b| finished.duration_since(b).as_secs_f64() * 1000.0),
                finished.elapsed().as_secs_f64() * 1000.0
            ),
            Err(e) => {
                self.rewrite_not_before = Some(finished + DISCOVERY_SAVE);
                error!(
                    "pool: rewriting {} failed: {e} (appends go on to the old file; next try in a minute)",
                    self.journal.path().display()
                )
            }
        }
    }

    /// Rewrites the journal from the pool's state, on this thread (start-up is done by
    /// [`PoolRuntime::start`]; this is for shutdown). A rewrite running in the background is
    /// abandoned: this one holds everything.
    pub fn compact(&mut self) {
        let started = Instant::now();
        // Records not yet appended stay queued: appended after, they repeat what the
        // snapshot holds, which replays the same.
        let state = lock(&self.state).snapshot(wall_ms());
        match self.journal.compact(&state) {
            Ok(()) => debug!(
                "pool: journal rewritten with {} records in {:.1} ms",
                state.len(),
                started.elapsed().as_secs_f64() * 1000.0
            ),
            Err(e) => error!(
                "pool: rewriting {} failed: {e} (appends go on to the old file)",
                self.journal.path().display()
            ),
        }
    }

    fn gauges(&self) {
        let pools = lock(&self.state);
        let now = wall_ms();
        for s in pools.stats(now) {
            let free =
                u64::from(s.size).saturating_sub((s.bound + s.offered + s.quarantined) as u64);
            for (state, n) in [
                ("bound", s.bound as u64),
                ("offered", s.offered as u64),
                ("quarantined", s.quarantined as u64),
                ("free", free),
            ] {
                self.metrics.set(
                    "netbootd_pool_addresses",
                    &[("pool", &s.name), ("state", state)],
                    n,
                );
            }
        }
        self.metrics.set(
            "netbootd_unknown_machines",
            &[],
            pools.discovered().count() as u64,
        );
    }
}

fn lock(state: &Mutex<Pools>) -> MutexGuard<'_, Pools> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}
