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

use crate::config::{Config, RemoteSource, SourceKind};
use crate::inventory::json as json_inventory;
use crate::inventory::pixiecore as pixiecore_inventory;
use crate::inventory::smd::{self as smd_inventory, SmdRules};
use crate::inventory::{Inventory, InventoryStore, Loaded, Machine, Problem, Profiles};
use crate::io::background::Background;
use crate::io::fetch::{self, Fetched, Limits, Request};
use crate::io::files;
use crate::io::tls;
use crate::policy::source::{is_json, Decision, Outcome, Settings, SourceCache, State};
use crate::service::metrics::Metrics;
use crate::service::{Combined, Context, Lookups, Service, SourceStatus};
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
}

fn settings_of(source: &RemoteSource) -> Settings {
    Settings {
        refresh: source.refresh,
        allow_empty: source.allow_empty,
        max_stale: source.max_stale,
        retry_first: Duration::from_secs(1),
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
        let mut service = RemoteService {
            cache: SourceCache::new(settings_of(&source), now, from_disk),
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
        };
        if service.source.kind != SourceKind::Http {
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
                    SourceKind::Http | SourceKind::Pixiecore => {
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
                if old.len() != count || self.withdrawn || old.is_pending() {
                    info!(
                        "{who}: snapshot in service: {count} machines ({netboot} netboot), {} entries left out; fetched in {:.3}s",
                        loaded.refused,
                        took.as_secs_f64()
                    );
                }
                self.withdrawn = false;
                self.to_keep = Some(ToKeep {
                    interfaces,
                    components,
                    replaced: old,
                });
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
    let fetch = fetch_snapshot(source, tls_of(source)?.as_ref(), &rules_of(config), None);
    let what = match source.kind {
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
    Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
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
    if !source.url.starts_with("https://") {
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

impl Service for RemoteService {
    fn name(&self) -> &'static str {
        match self.source.kind {
            SourceKind::Smd => "SMD",
            SourceKind::Http => "JSON inventory",
            SourceKind::Pixiecore => "pixiecore API",
        }
    }

    fn describe(&self) -> String {
        let rules = match self.source.kind {
            SourceKind::Smd => format!("{} subnets; ", self.rules.smd.subnets.len()),
            SourceKind::Http | SourceKind::Pixiecore => String::new(),
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
        if let Some(source) = config.remote() {
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
