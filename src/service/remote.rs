//! A remote inventory source as a service of the loop (feature `remote`): OpenCHAMI SMD, or
//! a netbootd inventory in JSON at a URL. It owns no socket that clients reach: a timer and a
//! background fetch. [`SourceCache`] decides when to fetch and whether a result goes into
//! service; the fetch (SMD's two collections, or the one JSON document, parsed and validated
//! into an inventory by [`crate::inventory::smd`] or [`crate::inventory::json`]) runs on a
//! thread of its own, so a slow or dead source never delays a DHCP answer; the loop only
//! swaps the finished inventory in (with the hardware file: SMD's part, put together with the
//! file's by [`Combined`]).
//!
//! The last good snapshot is written to `--state-dir` (`smd.last-good.json` or
//! `http.last-good.json`, atomically, off the loop) and loaded at start, so a restart while the
//! source is down serves the machines it last knew. Until a first snapshot exists the
//! inventory is "pending": a MAC not found is not treated as unknown. Past `--backend-*-max-stale`
//! the snapshot stops being answered. SMD answers for single MACs too ("fetch on miss").

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use serde_json::Value;

use crate::config::kubeconfig::{self, KubeAccess, Pem, Token};
use crate::config::{Config, RemoteSource, SourceKind};
use crate::inventory::json as json_inventory;
use crate::inventory::kube::{self as kube_inventory, Change, HardwareSet};
use crate::inventory::pixiecore as pixiecore_inventory;
use crate::inventory::smd::{self as smd_inventory, SmdRules};
use crate::inventory::{Inventory, InventoryStore, Loaded, Machine, Problem, Profiles};
use crate::io::background::Background;
use crate::io::fetch::{self, FetchError, Fetched, Limits, Request, Streaming};
use crate::io::files;
use crate::io::tls;
use crate::policy::source::{is_json, Decision, Outcome, Settings, SourceCache, State};
use crate::service::metrics::Metrics;
use crate::service::{Combined, Context, Lookups, Service, SourceStatus};
use crate::wire::http::percent_encode;
use crate::wire::MacAddr;

const INTERFACES_PATH: &str = "/hsm/v2/Inventory/EthernetInterfaces";
const COMPONENTS_PATH: &str = "/hsm/v2/State/Components";
/// A whole snapshot of 10,000 machines is about 3 MB; twenty times that is refused.
const MAX_BODY: usize = 64 << 20;
/// The last good snapshot in the state directory.
fn snapshot_file(kind: SourceKind) -> String {
    format!("{}.last-good.json", kind.name())
}

/// A fetch's result, handed back to the loop.
struct Fetch {
    outcome: Outcome,
    /// The validated inventory and the two bodies, for a 200 JSON answer that parsed.
    loaded: Option<(Loaded, Vec<u8>, Vec<u8>)>,
    took: Duration,
}

/// A look-up of MACs the inventory did not know ("fetch on miss").
struct Lookup {
    macs: Vec<MacAddr>,
    /// The store's generation the merge was built on: stale if a refresh came meanwhile.
    base: u64,
    /// pixiecore answers were asked for again: the merge may drop machines, so it goes into
    /// service even when nothing new was found.
    renewed: bool,
    /// The inventory with the machines found added, and what was found.
    result: Result<(Inventory, Vec<Machine>), String>,
}

/// What the keep job writes, assembled on its thread; the inventory replaced is dropped there
/// too (freeing ten thousand machines is not the loop's work). A JSON inventory's body is in
/// `interfaces`.
struct ToKeep {
    interfaces: Vec<u8>,
    components: Vec<u8>,
    replaced: Arc<Inventory>,
}

/// Background work: a fetch, a look-up, or writing the last good snapshot.
enum Done {
    Fetched(Box<Fetch>),
    Looked(Box<Lookup>),
    Kept(Result<(), String>),
    /// A Kubernetes watch round, and the watch state it hands back (`None`: lost, list again).
    Watched(Box<Fetch>, Option<Box<KubeState>>),
}

/// A MAC SMD did not know is not asked for again for this long.
const NOT_FOUND_TTL: Duration = Duration::from_secs(60);
/// Look-ups at most this often (each asks for every MAC waiting).
const LOOKUP_GAP: Duration = Duration::from_millis(200);
/// MACs remembered as not found, at most.
const NOT_FOUND_MAX: usize = 4096;
/// pixiecore's answer for a MAC is served this long, then asked for again (pixiecore itself
/// asks at every packet; this keeps a change on the API side visible within a minute).
const ANSWER_TTL: Duration = Duration::from_secs(60);
/// pixiecore calls per look-up job (one per MAC).
const PIXIECORE_BATCH: usize = 8;

pub struct RemoteService {
    source: RemoteSource,
    /// The TLS client of an `https://` source.
    tls: Option<tls::Client>,
    rules: Rules,
    state_dir: PathBuf,
    cache: SourceCache,
    jobs: Background<Done>,
    /// Bodies waiting to be written once the running job is back.
    to_keep: Option<ToKeep>,
    /// SMD's machines: the inventory in service, or SMD's part of it with the hardware file.
    store: Arc<InventoryStore>,
    combined: Option<Arc<Combined>>,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<Option<SourceStatus>>>,
    /// The errors of the entries left out last time, so that a refresh that finds the same
    /// bad entries does not log them again.
    last_left_out: Vec<String>,
    /// The snapshot was withdrawn for being older than `--backend-smd-max-stale`.
    withdrawn: bool,
    lookups: Arc<Lookups>,
    /// MACs SMD did not know, until when they are not asked for again.
    not_found: HashMap<MacAddr, Instant>,
    /// The next look-up may start then.
    lookup_ready_at: Instant,
    /// Inventories taken out of service, freed by the next background job (not on the loop).
    retired: Vec<Arc<Inventory>>,
    /// pixiecore's answers, until when they are served as they are (then the API is asked
    /// again while the old answer keeps being served).
    answered: HashMap<MacAddr, Instant>,
    /// pixiecore's answers due to be asked again.
    again: Vec<MacAddr>,
    /// The Kubernetes backend: how to reach the API, and what the last round saw (`None`
    /// while a round runs with it).
    kube: Option<Arc<KubeLink>>,
    kube_state: Option<Box<KubeState>>,
    /// The watched set is written to the state directory no more often than this.
    keep_after: Instant,
}

fn settings_of(source: &RemoteSource) -> Settings {
    Settings {
        refresh: source.refresh,
        allow_empty: source.allow_empty,
        max_stale: source.max_stale,
        retry_first: Duration::from_secs(1),
        retry_max: match source.kind {
            SourceKind::Kube => KUBE_RETRY_MAX,
            _ => source.refresh,
        },
    }
}

/// What turns a source's bodies into machines: SMD's rules, or the boot profiles a JSON
/// inventory's machines may name.
#[derive(Clone, Debug)]
struct Rules {
    smd: SmdRules,
    profiles: Profiles,
}

fn rules_of(config: &Config) -> Rules {
    Rules {
        smd: SmdRules {
            subnets: config.subnets.values().cloned().collect(),
            hostnames: config.hostnames.clone(),
        },
        profiles: config.profiles.clone(),
    }
}

impl RemoteService {
    /// With the hardware file: SMD's part changed, the two go into service again as one.
    fn put_together(&mut self) {
        if let Some(combined) = &self.combined {
            self.retired.push(combined.publish());
        }
    }

    pub fn start(config: &Config, ctx: &Context) -> std::io::Result<RemoteService> {
        // SMD's own machines: in service as they are, or under the hardware file's.
        let store = ctx
            .combined
            .as_ref()
            .map_or_else(|| ctx.inventory.clone(), |c| c.remote.clone());
        let source = config
            .remote()
            .cloned()
            .ok_or_else(|| std::io::Error::other("no remote source configured"))?;
        let who = source.kind.name();
        let tls = tls_of(&source).map_err(std::io::Error::other)?;
        let kube = match source.kind {
            SourceKind::Kube => Some(Arc::new(
                KubeLink::resolve(&source).map_err(std::io::Error::other)?,
            )),
            _ => None,
        };
        let mut source = source;
        if let Some(link) = &kube {
            source.url = link.access.server.clone();
        }
        let rules = rules_of(config);
        let now = Instant::now();
        let snapshot = config.state_dir.join(snapshot_file(source.kind));
        let from_disk = match load_kept(&snapshot, &source, &rules) {
            Ok(Some(loaded)) => {
                let machines = loaded.inventory.len();
                warn!(
                    "{who}: serving the last good snapshot {} ({machines} machines) until the source answers",
                    snapshot.display()
                );
                store.replace(loaded.inventory);
                if let Some(combined) = &ctx.combined {
                    combined.publish();
                }
                Some(machines)
            }
            Ok(None) => None,
            Err(why) => {
                warn!(
                    "{who}: the kept snapshot {} is not usable: {why}",
                    snapshot.display()
                );
                None
            }
        };
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let mut service = RemoteService {
            cache: SourceCache::new(settings_of(&source), now, from_disk).jittered(seed),
            source,
            tls,
            rules,
            state_dir: config.state_dir.clone(),
            jobs: Background::new(who)?,
            to_keep: None,
            store,
            combined: ctx.combined.clone(),
            metrics: ctx.metrics.clone(),
            status: ctx.source.clone(),
            last_left_out: Vec::new(),
            withdrawn: false,
            lookups: ctx.lookups.clone(),
            not_found: HashMap::new(),
            lookup_ready_at: now,
            retired: Vec::new(),
            answered: HashMap::new(),
            again: Vec::new(),
            kube,
            kube_state: None,
            keep_after: now,
        };
        if matches!(service.source.kind, SourceKind::Smd | SourceKind::Pixiecore) {
            // SMD and pixiecore answer for one MAC; a JSON inventory is one document.
            ctx.lookups.enable();
        }
        if service.source.kind == SourceKind::Pixiecore {
            // Nothing to wait for: every machine is asked for when it first shows up.
            service.store.replace(Inventory::default());
            service.put_together();
        }
        service.publish(now, from_disk.unwrap_or(0), None);
        let status = service.status.clone();
        ctx.metrics.observe(
            match service.source.kind {
                SourceKind::Smd => "netbootd_source_snapshot_age_seconds{source=\"smd\"}",
                SourceKind::Http => "netbootd_source_snapshot_age_seconds{source=\"http\"}",
                SourceKind::Pixiecore => {
                    "netbootd_source_snapshot_age_seconds{source=\"pixiecore\"}"
                }
                SourceKind::Kube => "netbootd_source_snapshot_age_seconds{source=\"kube\"}",
            },
            "gauge",
            move || {
                let status = status.lock().unwrap_or_else(|e| e.into_inner());
                match status.as_ref().and_then(|s| s.fetched_at) {
                    Some(at) => format!("{:.3}", at.elapsed().as_secs_f64()),
                    None => "NaN".into(),
                }
            },
        );
        Ok(service)
    }

    /// Updates what /healthcheck and /metrics show.
    fn publish(&self, now: Instant, machines: usize, took: Option<Duration>) {
        let who = self.source.kind.name();
        let state = self.cache.state(now);
        let fetched_at = self.cache.fetched_at();
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let refresh_seconds = took
            .map(|t| t.as_secs_f64())
            .or_else(|| status.as_ref().and_then(|s| s.refresh_seconds));
        *status = Some(SourceStatus {
            name: who,
            state: state.name(),
            fetched_at,
            machines,
            last_error: self.cache.last_error().map(str::to_string),
            refresh_seconds,
        });
        for s in [State::Starting, State::Ok, State::Stale, State::Failing] {
            let labels = [("source", who), ("state", s.name())];
            self.metrics
                .set("netbootd_source_state", &labels, u64::from(s == state));
        }
        self.metrics.set(
            "netbootd_source_machines",
            &[("source", who)],
            machines as u64,
        );
        if let Some(t) = took {
            self.metrics.set(
                "netbootd_source_refresh_milliseconds",
                &[("source", who)],
                t.as_millis() as u64,
            );
        }
    }

    fn begin_fetch(&mut self, etag: Option<String>) {
        let who = self.source.kind.name();
        if self.source.kind == SourceKind::Pixiecore {
            // Asked per MAC: there is no snapshot; the source counts as answering.
            let now = Instant::now();
            let answering = Outcome::Response {
                status: 200,
                content_type: Some("application/json".into()),
                machines: 0,
                etag: None,
                detail: None,
            };
            self.cache.on_result(answering, now);
            let machines = self.store.snapshot().len();
            self.publish(now, machines, None);
            return;
        }
        if let Some(link) = self.kube.clone() {
            let mut state = self.kube_state.take().unwrap_or_default();
            let now = Instant::now();
            if now >= self.keep_after && self.state_dir.is_dir() {
                state.keep = Some(self.state_dir.join(snapshot_file(SourceKind::Kube)));
                self.keep_after = now + KEEP_GAP;
            }
            state.serving = Some(self.store.snapshot());
            let profiles = self.rules.profiles.clone();
            let retired = std::mem::take(&mut self.retired);
            let started = self.jobs.start(
                move || {
                    drop(retired);
                    let (fetch, state) = watch_round(&link, state, &profiles);
                    Done::Watched(Box::new(fetch), Some(state))
                },
                || {
                    let failed =
                        Outcome::Failed("the watch failed unexpectedly (a netbootd bug)".into());
                    Done::Watched(
                        Box::new(Fetch {
                            outcome: failed,
                            loaded: None,
                            took: Duration::ZERO,
                        }),
                        None,
                    )
                },
            );
            if let Err(e) = started {
                error!("{who}: no thread for a watch: {e}");
                self.cache
                    .on_result(Outcome::Failed(format!("no thread: {e}")), Instant::now());
            }
            return;
        }
        let (source, rules) = (self.source.clone(), self.rules.clone());
        let tls = self.tls.clone();
        let retired = std::mem::take(&mut self.retired);
        let started = self.jobs.start(
            move || {
                drop(retired);
                let etag = etag.as_deref();
                Done::Fetched(Box::new(fetch_snapshot(
                    &source,
                    tls.as_ref(),
                    &rules,
                    etag,
                )))
            },
            || {
                Done::Fetched(Box::new(Fetch {
                    outcome: Outcome::Failed(
                        "the fetch failed unexpectedly (a netbootd bug)".into(),
                    ),
                    loaded: None,
                    took: Duration::ZERO,
                }))
            },
        );
        if let Err(e) = started {
            error!("{who}: no thread for a fetch: {e}");
            // Counted as a failed fetch: the cache backs off and tries again.
            let now = Instant::now();
            self.cache
                .on_result(Outcome::Failed(format!("no thread: {e}")), now);
        }
    }

    /// Starts a look-up of the MACs waiting (those not known not to be in SMD).
    fn begin_lookup(&mut self, now: Instant) {
        let who = self.source.kind.name();
        self.not_found.retain(|_, until| *until > now);
        let current = self.store.snapshot();
        let macs: Vec<MacAddr> = self
            .lookups
            .take()
            .into_iter()
            .filter(|m| !self.not_found.contains_key(m) && current.by_mac(*m).is_none())
            .collect();
        if macs.is_empty() && self.again.is_empty() {
            return;
        }
        let mut macs = macs;
        if self.source.kind == SourceKind::Pixiecore && macs.len() > PIXIECORE_BATCH {
            // One call per MAC: the rest wait for the next job (the DHCP client retries).
            macs.truncate(PIXIECORE_BATCH);
        }
        // pixiecore's answers due again: asked with the rest, replaced (or dropped) whole.
        let room = PIXIECORE_BATCH.saturating_sub(macs.len());
        let again: Vec<MacAddr> = self.again.drain(..room.min(self.again.len())).collect();
        macs.extend(&again);
        let renewed = !again.is_empty();
        let current = if again.is_empty() {
            current
        } else {
            Arc::new(current.without(&again))
        };
        let (source, rules) = (self.source.clone(), self.rules.clone());
        let tls = self.tls.clone();
        let base = self.store.generation();
        let job_macs = macs.clone();
        let retired = std::mem::take(&mut self.retired);
        let started = self.jobs.start(
            move || {
                drop(retired);
                let result = match source.kind {
                    SourceKind::Pixiecore => {
                        ask_pixiecore(&source, tls.as_ref(), &job_macs, &current)
                    }
                    _ => look_up(&source, tls.as_ref(), &rules.smd, &job_macs, &current),
                };
                Done::Looked(Box::new(Lookup {
                    macs: job_macs,
                    base,
                    renewed,
                    result,
                }))
            },
            move || {
                Done::Looked(Box::new(Lookup {
                    macs,
                    base,
                    renewed,
                    result: Err("the look-up failed unexpectedly (a netbootd bug)".into()),
                }))
            },
        );
        if let Err(e) = started {
            warn!("{who}: no thread for a look-up: {e}");
        }
    }

    fn finish_lookup(&mut self, lookup: Lookup, now: Instant) {
        let who = self.source.kind.name();
        self.lookup_ready_at = now + LOOKUP_GAP;
        let (merged, found) = match lookup.result {
            Ok(ok) => ok,
            Err(why) => {
                self.metrics.inc(
                    "netbootd_source_lookups_total",
                    &[("source", who), ("result", "failed")],
                );
                warn!("{who}: look-up of {} MACs failed: {why}", lookup.macs.len());
                // pixiecore's old answers stay in service and are asked for again later.
                let current = self.store.snapshot();
                for mac in lookup.macs.iter().filter(|m| current.by_mac(**m).is_some()) {
                    if self.source.kind == SourceKind::Pixiecore {
                        self.answered.insert(*mac, now + ANSWER_TTL);
                    }
                }
                return;
            }
        };
        for mac in lookup
            .macs
            .iter()
            .filter(|m| !found.iter().any(|f| f.mac == **m))
        {
            if self.not_found.len() < NOT_FOUND_MAX {
                self.not_found.insert(*mac, now + NOT_FOUND_TTL);
            }
            self.metrics.inc(
                "netbootd_source_lookups_total",
                &[("source", who), ("result", "not_found")],
            );
        }
        // Nothing found, and no pixiecore answer asked again (whose merge may drop machines):
        // nothing to put in service (SMD's empty look-up result is no inventory).
        if found.is_empty() && !lookup.renewed {
            return;
        }
        let before = self.store.snapshot();
        if self.store.generation() != lookup.base {
            // A refresh came meanwhile: it holds what SMD has now (the machine included).
            return;
        }
        self.retired.push(self.store.replace(merged));
        self.put_together();
        if self.source.kind == SourceKind::Pixiecore {
            for m in &found {
                self.answered.insert(m.mac, now + ANSWER_TTL);
            }
        }
        // Logged when a machine comes in, not when a pixiecore answer is renewed.
        for m in found.iter().filter(|m| before.by_mac(m.mac).is_none()) {
            self.metrics.inc(
                "netbootd_source_lookups_total",
                &[("source", who), ("result", "found")],
            );
            info!(
                "{who}: {} found by look-up ({}, {}): answered from now on",
                m.mac,
                m.xname.as_deref().unwrap_or("-"),
                m.ip_address
                    .map_or("no address".into(), |ip| ip.to_string())
            );
        }
    }

    fn begin_keep(&mut self, keep: ToKeep) {
        let who = self.source.kind.name();
        let path = self.state_dir.join(snapshot_file(self.source.kind));
        let kind = self.source.kind;
        let dir_ok = self.state_dir.is_dir();
        let started = self.jobs.start(
            move || {
                let ToKeep {
                    interfaces,
                    components,
                    replaced,
                } = keep;
                drop(replaced);
                if !dir_ok {
                    return Done::Kept(Err("the state directory does not exist".into()));
                }
                // Both bodies parsed as JSON (they were validated), so this is JSON too.
                let text = match kind {
                    SourceKind::Smd => format!(
                        "{{\"EthernetInterfaces\":{},\"Components\":{}}}",
                        String::from_utf8_lossy(&interfaces),
                        String::from_utf8_lossy(&components)
                    ),
                    SourceKind::Http | SourceKind::Pixiecore | SourceKind::Kube => {
                        String::from_utf8_lossy(&interfaces).into_owned()
                    }
                };
                Done::Kept(files::write_atomically(&path, &text).map_err(|e| e.to_string()))
            },
            || Done::Kept(Err("the write failed unexpectedly".into())),
        );
        if let Err(e) = started {
            warn!("{who}: the last good snapshot is not kept: no thread: {e}");
        }
    }

    fn finish(&mut self, fetch: Fetch, now: Instant) {
        let who = self.source.kind.name();
        let Fetch {
            outcome,
            loaded,
            took,
        } = fetch;
        let (decision, line) = self.cache.on_result(outcome, now);
        let result = match &decision {
            Decision::Install => "installed",
            Decision::Current => "current",
            Decision::Keep(_) => "kept",
        };
        self.metrics.inc(
            "netbootd_source_refreshes_total",
            &[("source", who), ("result", result)],
        );
        if let Some(line) = line {
            match decision {
                Decision::Keep(_) => error!("{who}: {line}"),
                _ => info!("{who}: {line}"),
            }
        }
        let machines = self.store.snapshot().len();
        match (decision, loaded) {
            (Decision::Install, Some((loaded, interfaces, components))) => {
                self.log_left_out(&loaded);
                let (count, netboot) = (loaded.inventory.len(), loaded.inventory.netboot_count());
                let old = self.store.replace(loaded.inventory);
                self.put_together();
                if self.kube.is_some() && !old.is_pending() && !self.withdrawn {
                    // A watched change: the round logged what it did, by machine.
                } else if old.len() != count || self.withdrawn || old.is_pending() {
                    info!(
                        "{who}: snapshot in service: {count} machines ({netboot} netboot), {} entries left out; fetched in {:.3}s",
                        loaded.refused,
                        took.as_secs_f64()
                    );
                }
                self.withdrawn = false;
                if self.kube.is_some() {
                    // The watch rounds keep the set themselves; the old machines are freed
                    // by the next job.
                    self.retired.push(old);
                } else {
                    self.to_keep = Some(ToKeep {
                        interfaces,
                        components,
                        replaced: old,
                    });
                }
                self.publish(now, count, Some(took));
            }
            _ => self.publish(now, machines, Some(took)),
        }
    }

    /// Each entry left out, at ERROR, when the set changed since the last snapshot.
    fn log_left_out(&mut self, loaded: &Loaded) {
        let who = self.source.kind.name();
        let errors: Vec<String> = loaded.errors.iter().map(Problem::to_string).collect();
        if errors != self.last_left_out {
            for e in &errors {
                error!("{who}: {e} (entry left out)");
            }
            self.last_left_out = errors;
        }
    }

    /// pixiecore's answers older than [`ANSWER_TTL`] are asked for again (the old answer is
    /// served until the new one is in; a MAC the API no longer answers for leaves).
    fn expire_answers(&mut self, now: Instant) {
        let expired: Vec<MacAddr> = self
            .answered
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(mac, _)| *mac)
            .collect();
        self.answered.retain(|_, until| *until > now);
        self.again.extend(expired);
    }

    /// Past `--backend-smd-max-stale`: the snapshot is withdrawn (and comes back with the
    /// next good fetch).
    fn check_staleness(&mut self, now: Instant) {
        let who = self.source.kind.name();
        if !self.withdrawn && self.cache.state(now) == State::Failing {
            let machines = self.store.snapshot().len();
            self.retired.push(self.store.replace(Inventory::pending()));
            self.put_together();
            self.withdrawn = true;
            error!(
                "{who}: the snapshot of {machines} machines is older than --backend-smd-max-stale: its machines are not answered until SMD answers ({})",
                self.cache.last_error().unwrap_or("no error recorded")
            );
            self.publish(now, 0, None);
        }
    }
}

/// `netbootd check`: fetches SMD once, as the service would, and says what it holds: the
/// summary, and each entry left out.
pub fn check(config: &Config) -> Result<(String, Loaded), String> {
    let source = config.remote().ok_or("no remote source configured")?;
    if source.kind == SourceKind::Pixiecore {
        tls_of(source)?;
        let summary = format!(
            "pixiecore API at {}: asked per MAC as machines show up (nothing to fetch now)",
            source.url
        );
        return Ok((summary, Loaded::default()));
    }
    let mut source = source.clone();
    if source.kind == SourceKind::Kube {
        let link = KubeLink::resolve(&source)?;
        source.url = format!(
            "{}{} ({})",
            link.access.server, link.path, link.access.origin
        );
    }
    let source = &source;
    let fetch = fetch_snapshot(source, tls_of(source)?.as_ref(), &rules_of(config), None);
    let what = match source.kind {
        SourceKind::Kube => "the Kubernetes API's Hardware",
        SourceKind::Smd => "SMD",
        SourceKind::Http | SourceKind::Pixiecore => "the JSON inventory",
    };
    match (fetch.outcome, fetch.loaded) {
        (_, Some((loaded, _, _))) => {
            let summary = format!(
                "{what} at {}: {} machines ({} netboot), {} entries left out; fetched in {:.3}s",
                source.url,
                loaded.inventory.len(),
                loaded.inventory.netboot_count(),
                loaded.refused,
                fetch.took.as_secs_f64()
            );
            Ok((summary, loaded))
        }
        (Outcome::Failed(why), None) => Err(why),
        (
            Outcome::Response {
                status,
                content_type,
                detail,
                ..
            },
            None,
        ) => Err(format!(
            "HTTP {status} ({}){}",
            content_type.unwrap_or_default(),
            detail.map(|d| format!(": {d}")).unwrap_or_default()
        )),
        (Outcome::NotModified, None) => Err("304 to a plain GET".into()),
    }
}

/// The snapshot kept in the state directory, loaded (`None`: there is none).
fn load_kept(path: &Path, source: &RemoteSource, rules: &Rules) -> Result<Option<Loaded>, String> {
    if !path.exists() || source.kind == SourceKind::Pixiecore {
        return Ok(None);
    }
    let text = files::read_text(path, MAX_BODY as u64)?;
    let first = |problems: Vec<Problem>| {
        problems
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    if source.kind == SourceKind::Kube {
        let name = path.display().to_string();
        return kube_inventory::load(&text, &name, &rules.profiles)
            .map(Some)
            .map_err(first);
    }
    if source.kind == SourceKind::Http {
        return json_inventory::load(text.as_bytes(), &source.url, &rules.profiles)
            .map(Some)
            .map_err(first);
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let part = |name: &str| {
        v.get(name)
            .map(|p| p.to_string().into_bytes())
            .ok_or_else(|| format!("no {name}"))
    };
    let loaded = smd_inventory::load(
        &part("EthernetInterfaces")?,
        &part("Components")?,
        &rules.smd,
    )
    .map_err(first)?;
    Ok(Some(loaded))
}

/// The token for `Authorization: Bearer`, read anew for each fetch (a rotated token is used
/// at the next refresh).
fn read_token(path: Option<&Path>) -> Result<Option<String>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = files::read_text(path, 64 * 1024)
        .map_err(|e| format!("token file {}: {e}", path.display()))?;
    let token = text.trim();
    // It goes into a header line as it is.
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "token file {}: not one token (spaces or several lines in it)",
            path.display()
        ));
    }
    Ok(Some(token.to_string()).filter(|t| !t.is_empty()))
}

/// What a non-200 body says (RFC 7807 `detail`, else `title`), shortened.
fn problem_detail(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = v.get("detail").or_else(|| v.get("title"))?.as_str()?;
    Some(text.chars().take(200).filter(|c| !c.is_control()).collect())
}

/// The bounds of each fetch from SMD: `--backend-smd-timeout` for connecting, for each read and
/// for the whole exchange.
fn limits_of(source: &RemoteSource) -> Limits {
    Limits {
        connect: source.timeout,
        read: source.timeout,
        total: source.timeout,
        max_body: MAX_BODY,
        max_redirects: 3,
    }
}

/// The TLS client of an `https://` source (its files read now), `None` for plain HTTP.
fn tls_of(source: &RemoteSource) -> Result<Option<tls::Client>, String> {
    // The Kubernetes backend's TLS comes from its kubeconfig (see KubeLink).
    if !source.url.starts_with("https://") || source.kind == SourceKind::Kube {
        return Ok(None);
    }
    tls::client(&source.tls)
        .map(Some)
        .map_err(|why| format!("{} TLS: {why}", source.kind.name()))
}

/// GET `path_and_query` of the source, with its token and limits; an error names the path.
fn get(
    source: &RemoteSource,
    tls: Option<&tls::Client>,
    path_and_query: &str,
) -> Result<fetch::Response, String> {
    match get_unless(source, tls, path_and_query, None)? {
        Fetched::Fresh(response) => Ok(response),
        // Never asked for (no ETag is sent): a server that says so anyway is wrong.
        Fetched::NotModified => Err(format!("{path_and_query}: 304 to a plain GET")),
    }
}

/// GET `path_and_query`, conditional on `etag` (the copy held) when there is one.
fn get_unless(
    source: &RemoteSource,
    tls: Option<&tls::Client>,
    path_and_query: &str,
    etag: Option<&str>,
) -> Result<Fetched, String> {
    let token = read_token(source.token_file.as_deref())?;
    let url = format!("{}{path_and_query}", source.url);
    let request = Request {
        url: &url,
        etag,
        bearer: token.as_deref(),
        accept: Some("application/json"),
        tls,
        ..Request::default()
    };
    fetch::get(&request, &limits_of(source)).map_err(|e| format!("{path_and_query}: {e}"))
}

/// GET `path_and_query` as JSON: the body of a 200 JSON answer, else why not.
fn get_json(
    source: &RemoteSource,
    tls: Option<&tls::Client>,
    path_and_query: &str,
) -> Result<Vec<u8>, String> {
    let r = get(source, tls, path_and_query)?;
    if r.status != 200 {
        let detail = problem_detail(&r.body).map(|d| format!(": {d}"));
        return Err(format!("HTTP {}{}", r.status, detail.unwrap_or_default()));
    }
    if !is_json(r.content_type.as_deref()) {
        return Err(format!(
            "content type {:?} is not JSON",
            r.content_type.unwrap_or_default()
        ));
    }
    Ok(r.body)
}

/// Looks `macs` up in SMD (one request for their interfaces, one for their components) and
/// returns `current` with the machines found added (on the job's thread).
fn look_up(
    source: &RemoteSource,
    tls: Option<&tls::Client>,
    rules: &SmdRules,
    macs: &[MacAddr],
    current: &Inventory,
) -> Result<(Inventory, Vec<Machine>), String> {
    let query: Vec<String> = macs.iter().map(|m| format!("MACAddress={m}")).collect();
    let interfaces = get_json(
        source,
        tls,
        &format!("{INTERFACES_PATH}?{}", query.join("&")),
    )?;
    let ids = smd_inventory::component_ids(&interfaces).map_err(|p| p.to_string())?;
    if ids.is_empty() {
        return Ok((Inventory::default(), Vec::new()));
    }
    let query: Vec<String> = ids.iter().map(|id| format!("id={id}")).collect();
    let components = get_json(
        source,
        tls,
        &format!("{COMPONENTS_PATH}?{}", query.join("&")),
    )?;
    let loaded = smd_inventory::load(&interfaces, &components, rules)
        .map_err(|p| p.first().map(ToString::to_string).unwrap_or_default())?;
    let found: Vec<Machine> = loaded
        .inventory
        .machines()
        .filter(|m| macs.contains(&m.mac))
        .cloned()
        .collect();
    Ok(add_found(current, found))
}

/// `current` with the machines a look-up found added, and those of them that went in (one
/// whose MAC or address is already served is not).
fn add_found(current: &Inventory, found: Vec<Machine>) -> (Inventory, Vec<Machine>) {
    let (merged, clashing) = current.with_added(found.clone());
    let found = found
        .into_iter()
        .filter(|m| !clashing.iter().any(|c| c.mac == m.mac))
        .collect();
    (merged, found)
}

/// Asks pixiecore's API for each of `macs` (on the job's thread) and returns `current` with
/// the machines it described added. A non-200 answer means "not this machine", as in
/// pixiecore; an answer that does not describe a boot is logged and treated the same.
fn ask_pixiecore(
    source: &RemoteSource,
    tls: Option<&tls::Client>,
    macs: &[MacAddr],
    current: &Inventory,
) -> Result<(Inventory, Vec<Machine>), String> {
    let mut found = Vec::new();
    for mac in macs {
        let path = format!("/v1/boot/{mac}");
        let response = get(source, tls, &path)?;
        if response.status != 200 {
            continue;
        }
        match pixiecore_inventory::machine(*mac, &response.body) {
            Ok(machine) => found.push(machine),
            Err(why) => warn!("pixiecore: {path}: {why}: not answered"),
        }
    }
    Ok(add_found(current, found))
}

/// Fetches the source's snapshot and validates it (on the job's thread).
/// `etag`: the copy in service's, for a conditional GET (the JSON inventory; SMD sends none).
fn fetch_snapshot(
    source: &RemoteSource,
    tls: Option<&tls::Client>,
    rules: &Rules,
    etag: Option<&str>,
) -> Fetch {
    match source.kind {
        SourceKind::Smd => fetch_smd(source, tls, &rules.smd),
        SourceKind::Http => fetch_json(source, tls, &rules.profiles, etag),
        SourceKind::Kube => match KubeLink::resolve(source) {
            Ok(link) => watch_round(&link, Box::default(), &rules.profiles).0,
            Err(why) => Fetch {
                outcome: Outcome::Failed(why),
                loaded: None,
                took: Duration::ZERO,
            },
        },
        // Nothing to fetch whole (begin_fetch does not come here for it).
        SourceKind::Pixiecore => Fetch {
            outcome: Outcome::Failed("pixiecore's API has no snapshot".into()),
            loaded: None,
            took: Duration::ZERO,
        },
    }
}

/// Fetches a JSON inventory (unless it still has `etag`) and validates it (on the job's
/// thread).
fn fetch_json(
    source: &RemoteSource,
    tls: Option<&tls::Client>,
    profiles: &Profiles,
    etag: Option<&str>,
) -> Fetch {
    let started = Instant::now();
    let response = match get_unless(source, tls, "", etag) {
        Ok(Fetched::Fresh(response)) => response,
        Ok(Fetched::NotModified) => {
            return Fetch {
                outcome: Outcome::NotModified,
                loaded: None,
                took: started.elapsed(),
            }
        }
        Err(why) => {
            return Fetch {
                outcome: Outcome::Failed(why),
                loaded: None,
                took: started.elapsed(),
            }
        }
    };
    let json = is_json(response.content_type.as_deref());
    if response.status != 200 || !json {
        // Not a snapshot: the policy names it from its status and type.
        let detail = (response.status != 200)
            .then(|| problem_detail(&response.body))
            .flatten();
        return Fetch {
            outcome: Outcome::Response {
                status: response.status,
                content_type: response.content_type,
                machines: 0,
                etag: None,
                detail,
            },
            loaded: None,
            took: started.elapsed(),
        };
    }
    match json_inventory::load(&response.body, &source.url, profiles) {
        Ok(loaded) => Fetch {
            outcome: Outcome::Response {
                status: 200,
                content_type: response.content_type,
                machines: loaded.inventory.len(),
                etag: response.etag,
                detail: None,
            },
            loaded: Some((loaded, response.body, Vec::new())),
            took: started.elapsed(),
        },
        Err(problems) => Fetch {
            outcome: Outcome::Failed(
                problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "the inventory did not validate".into()),
            ),
            loaded: None,
            took: started.elapsed(),
        },
    }
}

/// Fetches SMD's two collections and validates them (on the job's thread).
fn fetch_smd(source: &RemoteSource, tls: Option<&tls::Client>, rules: &SmdRules) -> Fetch {
    let started = Instant::now();
    let failed = |why: String| Fetch {
        outcome: Outcome::Failed(why),
        loaded: None,
        took: started.elapsed(),
    };
    // An answer that is not a snapshot: the policy names it from its status and type.
    let refused = |status, content_type, detail| Fetch {
        outcome: Outcome::Response {
            status,
            content_type,
            machines: 0,
            etag: None,
            detail,
        },
        loaded: None,
        took: started.elapsed(),
    };
    let mut bodies = Vec::new();
    let mut content_type = None;
    for path in [INTERFACES_PATH, COMPONENTS_PATH] {
        let response = match get(source, tls, path) {
            Ok(response) => response,
            Err(why) => return failed(why),
        };
        if response.status != 200 {
            let detail = problem_detail(&response.body).map(|d| format!("{path}: {d}"));
            return refused(response.status, response.content_type, detail);
        }
        if !is_json(response.content_type.as_deref()) {
            // A login page or a proxy's error page: nothing to parse.
            return refused(200, response.content_type, None);
        }
        content_type = response.content_type;
        bodies.push(response.body);
    }
    let components = bodies.pop().unwrap_or_default();
    let interfaces = bodies.pop().unwrap_or_default();
    match smd_inventory::load(&interfaces, &components, rules) {
        Ok(loaded) => Fetch {
            outcome: Outcome::Response {
                status: 200,
                content_type,
                machines: loaded.inventory.len(),
                etag: None,
                detail: None,
            },
            loaded: Some((loaded, interfaces, components)),
            took: started.elapsed(),
        },
        Err(problems) => failed(
            problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_else(|| "the snapshot did not validate".into()),
        ),
    }
}

/// Failed watch rounds back off up to this (from 1 s, doubling, jittered).
const KUBE_RETRY_MAX: Duration = Duration::from_secs(30);
/// The watched set is written to the state directory at most this often.
const KEEP_GAP: Duration = Duration::from_secs(10);
/// A LIST page.
const KUBE_PAGE: usize = 500;
/// The server ends each watch after this long (the next round opens another from where it
/// ended); a watch silent for [`KUBE_SILENCE`] is taken for dead.
const KUBE_WATCH_SECONDS: u64 = 30;
const KUBE_SILENCE: Duration = Duration::from_secs(KUBE_WATCH_SECONDS + 15);
/// Changes arriving within this of the first one go into service together: 200 ms, longer
/// for a large set (0.1 ms per object, 1 s at 10,000), whose every batch rebuilds the
/// inventory off the loop but with the allocator the loop shares.
const KUBE_BATCH: Duration = Duration::from_millis(200);
const KUBE_BATCH_PER_OBJECT: Duration = Duration::from_micros(100);
/// One watch event (one Hardware object) at most.
const KUBE_MAX_EVENT: usize = 1 << 20;
const HARDWARE_PATH: &str = "/apis/tinkerbell.org/v1alpha1";

/// How the Kubernetes backend reaches its API server: resolved once (and again on a reload
/// that changes its settings) from the kubeconfig, the service account or the bare URL.
pub struct KubeLink {
    access: KubeAccess,
    tls: Option<tls::Client>,
    /// The Hardware collection: all namespaces, or one.
    path: String,
}

/// What the watch has seen, moved into each round's job and back.
#[derive(Default)]
pub struct KubeState {
    set: HardwareSet,
    /// The watch left open by the last round.
    watch: Option<Streaming>,
    /// Where the round writes the set first (the service says when one is due).
    keep: Option<PathBuf>,
    /// The set changed since it was last written.
    dirty: bool,
    /// The machines in service when the round started: what a change is told against.
    serving: Option<Arc<Inventory>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A PEM the kubeconfig names or carries.
fn pem_text(pem: &Pem, what: &str, origin: &str) -> Result<tls::PemText, String> {
    match pem {
        Pem::File(path) => tls::PemText::read(path),
        Pem::Data(bytes) => Ok(tls::PemText {
            name: format!("{what}-data of {origin}"),
            text: bytes.clone(),
        }),
    }
}

impl KubeLink {
    /// Where the API is, as kubectl finds it: `--backend-kube-config`, else `KUBECONFIG` (its
    /// first file that exists), else the in-cluster service account, else `~/.kube/config`,
    /// else `--backend-kube-api` with no credentials; `--backend-kube-api` names the server
    /// in every case.
    fn resolve(source: &RemoteSource) -> Result<KubeLink, String> {
        let settings = source.kube.clone().unwrap_or_default();
        let from_file = |path: PathBuf| -> Result<KubeAccess, String> {
            let text = files::read_text(&path, 1 << 20)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kubeconfig::from_kubeconfig(&text, &path)
        };
        let listed = env("KUBECONFIG")
            .and_then(|list| list.split(':').map(PathBuf::from).find(|p| p.is_file()));
        let home = env("HOME")
            .map(|h| Path::new(&h).join(".kube/config"))
            .filter(|p| p.is_file());
        let in_cluster = env("KUBERNETES_SERVICE_HOST").zip(env("KUBERNETES_SERVICE_PORT"));
        let mut access = if let Some(path) = settings.config.or(listed) {
            from_file(path)?
        } else if let Some((host, port)) = in_cluster {
            kubeconfig::in_cluster(&host, &port)
        } else if let Some(path) = home {
            from_file(path)?
        } else if let Some(api) = &settings.api {
            kubeconfig::bare(api)
        } else {
            return Err("the Kubernetes backend has no API to talk to: no --backend-kube-config, no KUBECONFIG, not in a cluster (KUBERNETES_SERVICE_HOST), no ~/.kube/config and no --backend-kube-api".into());
        };
        if let Some(api) = settings.api {
            access.server = api;
        }
        let tls = if access.server.starts_with("https://") {
            let origin = access.origin.clone();
            let ca = access
                .ca
                .as_ref()
                .map(|p| pem_text(p, "certificate-authority", &origin))
                .transpose()?;
            let pair = match &access.client {
                Some((cert, key)) => Some((
                    pem_text(cert, "client-certificate", &origin)?,
                    pem_text(key, "client-key", &origin)?,
                )),
                None => None,
            };
            let client = tls::client_from(
                ca.as_ref(),
                pair.as_ref().map(|(c, k)| (c, k)),
                access.insecure,
            )
            .map_err(|why| format!("Kubernetes TLS ({origin}): {why}"))?;
            Some(client)
        } else {
            None
        };
        let path = match &settings.namespace {
            Some(ns) => format!("{HARDWARE_PATH}/namespaces/{ns}/hardware"),
            None => format!("{HARDWARE_PATH}/hardware"),
        };
        Ok(KubeLink { access, tls, path })
    }

    /// The bearer token, the file read anew each time (a rotated token is used at once).
    fn token(&self) -> Result<Option<String>, String> {
        match &self.access.token {
            Token::None => Ok(None),
            Token::Text(t) if t.chars().any(|c| c.is_control() || c == ' ') => Err(format!(
                "{}: the user's token is not one token (spaces or several lines in it)",
                self.access.origin
            )),
            Token::Text(t) => Ok(Some(t.clone())),
            Token::File(path) => read_token(Some(path)),
        }
    }

    fn request<'a>(&'a self, url: &'a str, token: Option<&'a str>) -> Request<'a> {
        Request {
            url,
            etag: None,
            bearer: token,
            accept: Some("application/json"),
            tls: self.tls.as_ref(),
            ..Request::default()
        }
    }
}

/// An answer that is not what was asked for, as the policy judges it (status, type, and the
/// `Status` object's message).
fn kube_refused(status: u16, content_type: Option<String>, body: &[u8], took: Duration) -> Fetch {
    Fetch {
        outcome: Outcome::Response {
            status,
            content_type,
            machines: 0,
            etag: None,
            // A Status object's message, else the start of a plain-text body.
            detail: kube_inventory::status_message(body).or_else(|| {
                let text = String::from_utf8_lossy(body);
                let line: String = text.lines().next()?.chars().take(200).collect();
                (!line.trim().is_empty()).then_some(line)
            }),
        },
        loaded: None,
        took,
    }
}

fn kube_failed(why: String, took: Duration) -> Fetch {
    Fetch {
        outcome: Outcome::Failed(why),
        loaded: None,
        took,
    }
}

/// The set's machines, ready to go into service (the set is kept by the next round that
/// finds it due: see [`keep_set`]).
fn kube_loaded(state: &mut KubeState, took: Duration) -> Fetch {
    state.dirty = true;
    let loaded = state.set.loaded();
    // What changed, by machine, told here rather than on the loop (10,000 machines compared).
    if let Some(old) = state.serving.take().filter(|old| !old.is_pending()) {
        let (added, removed, changed) = loaded.inventory.diff(&old);
        if added + removed + changed > 0 {
            info!(
                "kube: Hardware changed: {} machines going into service ({added} added, {removed} removed, {changed} changed), {} entries left out",
                loaded.inventory.len(),
                loaded.refused
            );
        }
    }
    Fetch {
        outcome: Outcome::Response {
            status: 200,
            content_type: Some("application/json".into()),
            machines: loaded.inventory.len(),
            etag: None,
            detail: None,
        },
        loaded: Some((loaded, Vec::new(), Vec::new())),
        took,
    }
}

/// Writes the set to the state directory (on the round's thread) when the service asked for
/// it and it changed since it was last written.
fn keep_set(state: &mut KubeState) {
    let Some(path) = state.keep.take() else {
        return;
    };
    if !state.dirty {
        return;
    }
    match files::write_atomically(&path, &state.set.to_text()) {
        Ok(()) => state.dirty = false,
        Err(e) => warn!(
            "kube: the watched set is not kept in {}: {e}",
            path.display()
        ),
    }
}

/// LISTs every Hardware object, page by page, into a new set (on the job's thread). A
/// `continue` token that expired meanwhile (410) starts the list over, once.
fn kube_list(
    link: &KubeLink,
    state: &mut KubeState,
    profiles: &Profiles,
    started: Instant,
) -> Fetch {
    let limits = Limits {
        connect: Duration::from_secs(10),
        read: Duration::from_secs(30),
        total: Duration::from_secs(120),
        max_body: MAX_BODY,
        max_redirects: 0,
    };
    let mut set = HardwareSet::new(&link.access.server, profiles);
    let mut next: Option<String> = None;
    let mut restarts = 0;
    loop {
        let token = match link.token() {
            Ok(t) => t,
            Err(why) => return kube_failed(why, started.elapsed()),
        };
        let url = format!(
            "{}{}?limit={KUBE_PAGE}{}",
            link.access.server,
            link.path,
            next.as_deref()
                .map(|c| format!("&continue={}", percent_encode(c)))
                .unwrap_or_default()
        );
        let response = match fetch::get(&link.request(&url, token.as_deref()), &limits) {
            Ok(Fetched::Fresh(r)) => r,
            Ok(Fetched::NotModified) => {
                return kube_failed("304 to a LIST".into(), started.elapsed())
            }
            Err(e) => return kube_failed(format!("LIST {}: {e}", link.path), started.elapsed()),
        };
        if response.status == 410 && next.is_some() && restarts == 0 {
            restarts += 1;
            set = HardwareSet::new(&link.access.server, profiles);
            next = None;
            continue;
        }
        if response.status != 200 || !is_json(response.content_type.as_deref()) {
            return kube_refused(
                response.status,
                response.content_type,
                &response.body,
                started.elapsed(),
            );
        }
        match set.add_page(&response.body) {
            Ok(Some(token)) => next = Some(token),
            Ok(None) => break,
            Err(why) => return kube_failed(why, started.elapsed()),
        }
    }
    state.set = set;
    state.watch = None;
    kube_loaded(state, started.elapsed())
}

/// Opens a WATCH from the set's resource version: the stream, or the round's result when the
/// server did not give one (with its status: 410 means list again).
fn kube_watch(link: &KubeLink, set: &HardwareSet) -> Result<Streaming, (u16, Box<Fetch>)> {
    let started = Instant::now();
    let token = link
        .token()
        .map_err(|why| (0, Box::new(kube_failed(why, Duration::ZERO))))?;
    let url = format!(
        "{}{}?watch=1&allowWatchBookmarks=true&timeoutSeconds={KUBE_WATCH_SECONDS}&resourceVersion={}",
        link.access.server,
        link.path,
        percent_encode(set.resource_version())
    );
    let limits = Limits {
        connect: Duration::from_secs(10),
        read: Duration::from_secs(30),
        total: Duration::from_secs(30),
        max_body: MAX_BODY,
        max_redirects: 0,
    };
    let stream = fetch::open(&link.request(&url, token.as_deref()), &limits).map_err(|e| {
        let why = format!("WATCH {}: {e}", link.path);
        (0, Box::new(kube_failed(why, started.elapsed())))
    })?;
    if stream.status == 200 {
        return Ok(stream);
    }
    let (status, content_type) = (stream.status, stream.content_type.clone());
    let body = stream
        .rest(Duration::from_secs(5), 64 * 1024)
        .unwrap_or_default();
    Err((
        status,
        Box::new(kube_refused(status, content_type, &body, started.elapsed())),
    ))
}

/// One round of the Kubernetes backend (see [`watch_step`]); the machines that were in
/// service when it started are let go here, off the loop.
fn watch_round(
    link: &KubeLink,
    state: Box<KubeState>,
    profiles: &Profiles,
) -> (Fetch, Box<KubeState>) {
    let (fetch, mut state) = watch_step(link, state, profiles);
    state.serving = None;
    (fetch, state)
}

/// What one round of the Kubernetes backend does (on the job's thread): a LIST when there is no
/// resource version to watch from, else the watch (opened anew or left open by the last
/// round) read until a batch of changes is complete, a bookmark, or its end. The result is
/// judged like any source's fetch: a changed set goes into service, a bookmark or a quiet end
/// confirms the one in service, a failure backs off and keeps it.
fn watch_step(
    link: &KubeLink,
    mut state: Box<KubeState>,
    profiles: &Profiles,
) -> (Fetch, Box<KubeState>) {
    let started = Instant::now();
    keep_set(&mut state);
    state.set.set_profiles(profiles);
    if state.set.resource_version().is_empty() {
        let fetch = kube_list(link, &mut state, profiles, started);
        return (fetch, state);
    }
    let mut watch = match state.watch.take() {
        Some(w) => w,
        None => match kube_watch(link, &state.set) {
            Ok(w) => w,
            Err((410, _)) => {
                info!(
                    "kube: resource version {} is gone (410): listing again",
                    state.set.resource_version()
                );
                let fetch = kube_list(link, &mut state, profiles, started);
                return (fetch, state);
            }
            Err((_, fetch)) => return (*fetch, state),
        },
    };
    let mut batch_until: Option<Instant> = None;
    loop {
        let wait = match batch_until {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => KUBE_SILENCE,
        };
        match watch.next_line(wait, KUBE_MAX_EVENT) {
            Ok(Some(line)) => match state.set.apply(&line) {
                Ok(Change::Applied) => {
                    let window = KUBE_BATCH.max(KUBE_BATCH_PER_OBJECT * state.set.len() as u32);
                    batch_until
                        .get_or_insert_with(|| Instant::now() + window.min(Duration::from_secs(1)));
                }
                Ok(Change::Bookmark) => {
                    if batch_until.is_none() {
                        state.watch = Some(watch);
                        let fetch = Fetch {
                            outcome: Outcome::NotModified,
                            loaded: None,
                            took: started.elapsed(),
                        };
                        return (fetch, state);
                    }
                }
                Ok(Change::Expired) => {
                    info!(
                        "kube: resource version {} is too old to watch from (410 Expired): listing again",
                        state.set.resource_version()
                    );
                    let fetch = kube_list(link, &mut state, profiles, started);
                    return (fetch, state);
                }
                Ok(Change::Failed(why)) => {
                    return (
                        kube_failed(format!("WATCH: {why}"), started.elapsed()),
                        state,
                    )
                }
                Err(why) => {
                    return (
                        kube_failed(format!("WATCH: {why}"), started.elapsed()),
                        state,
                    )
                }
            },
            // The batch is complete; the watch stays open for the next round.
            Err(FetchError::Timeout(_)) if batch_until.is_some() => {
                state.watch = Some(watch);
                break;
            }
            // The server ended the watch (its timeout): the next round opens another.
            Ok(None) if batch_until.is_some() => break,
            Ok(None) => {
                let fetch = Fetch {
                    outcome: Outcome::NotModified,
                    loaded: None,
                    took: started.elapsed(),
                };
                return (fetch, state);
            }
            // Lost: what was applied goes into service; the next round watches again.
            Err(_) if batch_until.is_some() => break,
            Err(e) => {
                return (
                    kube_failed(format!("WATCH {}: {e}", link.path), started.elapsed()),
                    state,
                )
            }
        }
    }
    let fetch = kube_loaded(&mut state, started.elapsed());
    (fetch, state)
}

impl Service for RemoteService {
    fn name(&self) -> &'static str {
        match self.source.kind {
            SourceKind::Smd => "SMD",
            SourceKind::Http => "JSON inventory",
            SourceKind::Pixiecore => "pixiecore API",
            SourceKind::Kube => "Kubernetes API",
        }
    }

    fn describe(&self) -> String {
        if let Some(link) = &self.kube {
            return format!(
                "Kubernetes API {}{}: Hardware listed, then watched ({})",
                link.access.server, link.path, link.access.origin
            );
        }
        let rules = match self.source.kind {
            SourceKind::Smd => format!("{} subnets; ", self.rules.smd.subnets.len()),
            SourceKind::Http | SourceKind::Pixiecore | SourceKind::Kube => String::new(),
        };
        format!(
            "{} source {} every {:?} ({rules}{} timeout{}{})",
            self.name(),
            self.source.url,
            self.source.refresh,
            humantime(self.source.timeout),
            if self.source.allow_empty {
                "; an empty answer may replace the snapshot"
            } else {
                ""
            },
            self.source
                .max_stale
                .map(|d| format!("; not answered when older than {}", humantime(d)))
                .unwrap_or_default()
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.jobs.fd()]
    }

    fn on_readable(&mut self, fd: RawFd, now: Instant) {
        let who = self.source.kind.name();
        if fd != self.jobs.fd().as_raw_fd() {
            return;
        }
        let Some(done) = self.jobs.take() else {
            return;
        };
        match done {
            Done::Fetched(fetch) => self.finish(*fetch, now),
            Done::Looked(lookup) => self.finish_lookup(*lookup, now),
            Done::Kept(Err(why)) => warn!("{who}: the last good snapshot is not kept: {why}"),
            Done::Kept(Ok(())) => {}
            Done::Watched(fetch, state) => {
                self.kube_state = state;
                self.finish(*fetch, now);
            }
        }
        if let Some(snapshot) = self.to_keep.take() {
            self.begin_keep(snapshot);
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        if self.jobs.is_running() {
            return None;
        }
        // Just past the moment the snapshot becomes too old to answer from.
        let stale_at = (!self.withdrawn)
            .then(|| self.cache.stale_at())
            .flatten()
            .map(|at| at + Duration::from_millis(1));
        let lookup_at =
            (!self.lookups.is_empty() || !self.again.is_empty()).then_some(self.lookup_ready_at);
        let expiry = self.answered.values().min().copied();
        [self.cache.poll_at(), stale_at, lookup_at, expiry]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_timer(&mut self, now: Instant) {
        self.check_staleness(now);
        if self.jobs.is_running() {
            return;
        }
        self.expire_answers(now);
        if let Some(order) = self.cache.on_timer(now) {
            self.begin_fetch(order.etag);
        } else if now >= self.lookup_ready_at
            && (!self.lookups.is_empty() || !self.again.is_empty())
        {
            self.begin_lookup(now);
        }
    }

    fn reconfigure(&mut self, config: &Config) {
        let who = self.source.kind.name();
        if let Some(source) = config.remote().filter(|s| s.kind == SourceKind::Kube) {
            if source.kube != self.source.kube {
                match KubeLink::resolve(source) {
                    Ok(link) => {
                        info!("{who}: now {} ({})", link.access.server, link.access.origin);
                        self.kube = Some(Arc::new(link));
                        self.source = source.clone();
                        // The next round lists anew from the new place.
                        self.kube_state = None;
                    }
                    Err(why) => warn!(
                        "{who}: the new settings are not usable, keeping the running ones: {why}"
                    ),
                }
            }
        } else if let Some(source) = config.remote() {
            if source.tls != self.source.tls || source.url != self.source.url {
                match tls_of(source) {
                    Ok(tls) => self.tls = tls,
                    Err(why) => {
                        warn!("{who}: the new TLS settings are not usable, keeping the running ones: {why}");
                        return;
                    }
                }
            }
            self.source = source.clone();
            self.cache.set_settings(settings_of(source), Instant::now());
        }
        self.rules = rules_of(config);
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
