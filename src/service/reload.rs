//! Reloads, with the work off the loop's thread. The [`Reloader`] keeps the inventory in
//! service up to date with its file and takes SIGHUP:
//!
//! - a changed hardware file ([`FileWatch`]) or SIGHUP starts a [`Background`] job that reads,
//!   parses and validates the file and counts what changed; a SIGHUP job first loads the
//!   configuration again and works out what may change ([`crate::config::reload`]);
//! - the loop only puts the result in service (one pointer swap) and writes the log lines, so
//!   a large file never delays a DHCP answer while it loads;
//! - one job runs at a time; requests that come meanwhile are remembered (a SIGHUP outranks a
//!   file change) and run when it is back;
//! - a file that fails validation is refused with one error line and the last good inventory
//!   stays in service; a configuration whose inventory fails is refused whole.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn};

use crate::config::reload::{reconcile, Reconciled};
use crate::config::{Config, Settings};
use crate::inventory::{self, Inventory, InventoryStore, Problem, Profiles};
use crate::io::background::Background;
use crate::io::files;
use crate::io::watch::{FileWatch, Signature};
use crate::service::metrics::Metrics;
use crate::service::Combined;

/// Loads the configuration as at start: the same flags and environment, the file as it is now.
pub type ConfigSource = Arc<dyn Fn() -> Result<(Settings, Config), String> + Send + Sync>;

/// What a reload was asked for; a SIGHUP outranks a file change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Request {
    FileChanged,
    Sighup,
}

/// A good inventory, and (added, removed, changed) against the one in service.
type Compared = (inventory::Loaded, (usize, usize, usize));

/// Where the inventory comes from and how it is read: the hardware file (none with the noop
/// backend: no machines at all), the config file's boot profiles, and `--strict`. With a
/// remote source the inventory is that source's service's to keep: the reloader leaves it.
#[derive(Clone, Debug, PartialEq)]
pub struct InventorySource {
    pub path: Option<PathBuf>,
    pub profiles: Profiles,
    pub strict: bool,
    pub remote: bool,
}

impl InventorySource {
    pub fn of(config: &Config) -> InventorySource {
        InventorySource {
            path: config.hardware_file().map(Path::to_path_buf),
            profiles: config.profiles.clone(),
            strict: config.strict,
            remote: config.remote().is_some(),
        }
    }

    /// For messages: the file, or what stands in for it.
    pub fn name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None if self.remote => "(the remote source)".into(),
            None => "(none: --backend-noop-enabled)".into(),
        }
    }

    fn signature(&self) -> Signature {
        match &self.path {
            Some(path) => Signature::of(path),
            None => Signature::default(),
        }
    }
}

/// An inventory read in the background, ready to go into service (or refused).
struct InventoryLoad {
    why: &'static str,
    source: InventorySource,
    /// Taken just before the file was read.
    signature: Signature,
    /// How long reading, parsing, validating and comparing took (on the job's thread).
    took: Duration,
    /// Why the good copy could not be kept in the state directory, if it could not.
    not_kept: Option<String>,
    result: Result<Compared, Vec<Problem>>,
}

/// A finished background job.
enum Done {
    Inventory(InventoryLoad),
    /// SIGHUP with a configuration that loaded and whose inventory (if it names another one)
    /// is good: it goes into service.
    Config {
        settings: Box<Settings>,
        reconciled: Box<Reconciled>,
        inventory: InventoryLoad,
    },
    /// SIGHUP with a configuration that cannot run: refused whole; the running inventory's
    /// file was read again meanwhile.
    ConfigRefused {
        why: String,
        inventory: InventoryLoad,
    },
}

pub struct Reloader {
    source: ConfigSource,
    settings: Settings,
    config: Config,
    source_of_truth: InventorySource,
    /// The hardware file's machines (with a remote source alone: its pending placeholder).
    store: Arc<InventoryStore>,
    /// With the hardware file and a remote source both: the two as one, served.
    combined: Option<Arc<Combined>>,
    /// `None` with no hardware file.
    watch: Option<FileWatch>,
    jobs: Background<Done>,
    /// Asked for while a job ran.
    queued: Option<Request>,
    /// Records the inventory in service left out for errors.
    refused: usize,
    metrics: Arc<Metrics>,
}

/// Records a load's outcome for /metrics: reloads by result, and the wall-clock time of the
/// last good load (the first load included).
fn count_load(metrics: &Metrics, result: &str) {
    if result == "ok" {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        metrics.set("netbootd_inventory_last_load_timestamp_seconds", &[], unix);
    }
    metrics.inc("netbootd_inventory_loads_total", &[("result", result)]);
}

/// Loads a hardware file and compares it with `current`. A panic in a reader (a bug) becomes
/// a refused reload, so that the last good inventory stays in service.
fn load(
    why: &'static str,
    source: &InventorySource,
    current: &Inventory,
    state_dir: &Path,
) -> InventoryLoad {
    let started = Instant::now();
    let signature = source.signature();
    let attempt = || load_and_keep(source, state_dir);
    let (result, not_kept) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt))
        .unwrap_or_else(|_| (Err(vec![reader_bug(source)]), None));
    let result = result.map(|loaded| {
        let diff = loaded.inventory.diff(current);
        (loaded, diff)
    });
    InventoryLoad {
        why,
        source: source.clone(),
        signature,
        took: started.elapsed(),
        not_kept,
        result,
    }
}

/// Loads a hardware file and, when it is good, keeps its text as the last good copy in the
/// state directory (to start from after a crash that left the file half-written). Returns why
/// the copy could not be kept, if it could not.
fn load_and_keep(
    source: &InventorySource,
    state_dir: &Path,
) -> (Result<inventory::Loaded, Vec<Problem>>, Option<String>) {
    let Some(path) = &source.path else {
        // Noop: no machines, every one unknown. Remote: nothing until its service loads a
        // snapshot, and a MAC not found is not known to be unknown.
        let inventory = if source.remote {
            Inventory::pending()
        } else {
            Inventory::default()
        };
        let loaded = inventory::Loaded {
            inventory,
            ..inventory::Loaded::default()
        };
        return (Ok(loaded), None);
    };
    let text = match files::read_inventory(path) {
        Ok(text) => text,
        Err(problems) => return (Err(problems), None),
    };
    let format = inventory::Format::for_path(path);
    let loaded = inventory::load_str(&text, format, &path.display().to_string(), &source.profiles)
        .and_then(|loaded| loaded.strict(source.strict));
    let not_kept = match &loaded {
        Ok(_) if state_dir.is_dir() => {
            let snapshot = files::snapshot_path(state_dir, path);
            files::write_atomically(&snapshot, &text)
                .err()
                .map(|e| format!("{}: {e}", snapshot.display()))
        }
        _ => None,
    };
    (loaded, not_kept)
}

/// Start-up with a hardware file that cannot be used: the last good copy from the state
/// directory, when there is one and it loads, with a loud warning. `None`: there is none.
fn start_from_last_good(
    source: &InventorySource,
    state_dir: &Path,
    problems: &[Problem],
) -> Option<inventory::Loaded> {
    let path = source.path.as_deref()?;
    let snapshot = files::snapshot_path(state_dir, path);
    if !snapshot.exists() {
        return None;
    }
    let loaded = files::load_inventory(&snapshot, &source.profiles)
        .and_then(|loaded| loaded.strict(source.strict))
        .ok()?;
    for p in problems {
        error!("inventory: {p}");
    }
    warn!(
        "the inventory {} cannot be used ({} errors): starting from the last good copy {} ({} machines); it is loaded again as soon as it is good",
        path.display(),
        problems.len(),
        snapshot.display(),
        loaded.inventory.len()
    );
    Some(loaded)
}

fn reader_bug(source: &InventorySource) -> Problem {
    Problem {
        file: source.name(),
        line: 0,
        mac: None,
        field: None,
        message: "the reader failed unexpectedly (a netbootd bug; please report it with this file)"
            .into(),
    }
}

/// "first error (and 2 more errors; run netbootd check)".
fn first_of(problems: &[Problem], more_word: &str) -> String {
    match problems.len() {
        0 => "no details".into(),
        1 => problems[0].to_string(),
        n => format!(
            "{} (and {} more{more_word}; run netbootd check)",
            problems[0],
            n - 1
        ),
    }
}

/// The SIGHUP job: the configuration again, then the inventory it names.
fn reload_config(
    source: &ConfigSource,
    running: (&Settings, &Config),
    truth: &InventorySource,
    (current, refused_now): (&Inventory, usize),
) -> Done {
    let state_dir = &running.1.state_dir;
    let (settings, config) = match source() {
        Ok(loaded) => loaded,
        Err(why) => {
            let inventory = load("SIGHUP", truth, current, state_dir);
            return Done::ConfigRefused { why, inventory };
        }
    };
    let reconciled = reconcile(running.0, running.1, &settings, config);
    let next = InventorySource::of(&reconciled.config);
    if next == *truth {
        let inventory = load("SIGHUP", truth, current, state_dir);
        return Done::Config {
            settings: Box::new(settings),
            reconciled: Box::new(reconciled),
            inventory,
        };
    }
    let inventory = load("configuration reloaded", &next, current, state_dir);
    // A configuration that would leave more records out (a profile still in use removed) is
    // refused whole, like one whose hardware file cannot be used.
    let problems = match &inventory.result {
        Err(problems) => Some(problems.as_slice()),
        Ok((loaded, _)) if loaded.refused > refused_now => Some(loaded.errors.as_slice()),
        Ok(_) => None,
    };
    if let Some(problems) = problems {
        let why = format!(
            "with it the inventory has errors: {}",
            first_of(problems, "")
        );
        let inventory = load("SIGHUP", truth, current, state_dir);
        return Done::ConfigRefused { why, inventory };
    }
    Done::Config {
        settings: Box::new(settings),
        reconciled: Box::new(reconciled),
        inventory,
    }
}

/// A started reloader, with what its first load found: warnings, and the errors of the
/// records it left out.
pub struct Started {
    pub reloader: Reloader,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
    pub refused: usize,
}

impl Reloader {
    /// Loads the first inventory (on this thread: nothing is served yet). Its errors stop
    /// start-up: a server must not begin with nothing.
    pub fn start(
        settings: Settings,
        config: Config,
        source: ConfigSource,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<Started, Vec<Problem>> {
        let truth = InventorySource::of(&config);
        let signature = truth.signature();
        let state_dir = config.state_dir.clone();
        if !state_dir.is_dir() {
            warn!(
                "state directory {} does not exist: the last good inventory is not kept (create it, or set --state-dir)",
                state_dir.display()
            );
        }
        let loaded = match load_and_keep(&truth, &state_dir) {
            (Ok(loaded), not_kept) => {
                if let Some(why) = not_kept {
                    warn!("inventory: the last good copy could not be kept: {why}");
                }
                loaded
            }
            (Err(problems), _) => {
                start_from_last_good(&truth, &state_dir, &problems).ok_or(problems)?
            }
        };
        count_load(&metrics, "ok");
        count_records(&metrics, &loaded);
        let (warnings, errors, refused) = (loaded.warnings, loaded.errors, loaded.refused);
        let store = Arc::new(InventoryStore::new(loaded.inventory));
        let combined = config
            .combines_sources()
            .then(|| Arc::new(Combined::new(store.clone())));
        let served = combined
            .as_ref()
            .map_or_else(|| store.clone(), |c| c.served());
        let jobs = Background::new("reload").map_err(|e| {
            vec![Problem {
                file: truth.name(),
                line: 0,
                mac: None,
                field: None,
                message: format!("cannot set up reloading: {e}"),
            }]
        })?;
        let gauges = served.clone();
        metrics.observe("netbootd_inventory_machines", "gauge", move || {
            gauges.snapshot().len().to_string()
        });
        let gauges = served;
        metrics.observe("netbootd_inventory_generation", "counter", move || {
            gauges.generation().to_string()
        });
        let reloader = Reloader {
            source,
            settings,
            config,
            watch: truth
                .path
                .as_deref()
                .map(|path| FileWatch::new(path, signature, now)),
            source_of_truth: truth,
            store,
            combined,
            jobs,
            queued: None,
            refused,
            metrics,
        };
        Ok(Started {
            reloader,
            warnings,
            errors,
            refused,
        })
    }

    /// The inventory the services read.
    pub fn store(&self) -> Arc<InventoryStore> {
        self.combined
            .as_ref()
            .map_or_else(|| Arc::clone(&self.store), |c| c.served())
    }

    /// The hardware file and a remote source as one, when both are configured.
    pub fn combined(&self) -> Option<Arc<Combined>> {
        self.combined.clone()
    }

    /// True when the hardware file is watched with inotify (false: looked at on a timer).
    pub fn watches_with_inotify(&self) -> bool {
        self.watch.as_ref().is_none_or(FileWatch::uses_inotify)
    }

    /// The descriptors to poll: the background job's wake-up, then the file watch's.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.jobs.fd()];
        fds.extend(self.watch.as_ref().and_then(FileWatch::fd));
        fds
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.watch.as_ref().and_then(FileWatch::next_deadline)
    }

    /// Descriptor `index` of [`Self::fds`] is readable. Returns the configuration for the
    /// services when a reload changed something they use.
    pub fn on_readable(&mut self, index: usize, now: Instant) -> Option<Config> {
        if index > 0 {
            if let Some(watch) = &mut self.watch {
                watch.on_readable(now);
            }
            return None;
        }
        let done = self.jobs.take()?;
        let reconfigured = self.finish(done);
        if let Some(next) = self.queued.take() {
            self.begin(next);
        }
        reconfigured
    }

    /// Call on every pass: the file watch's looks.
    pub fn on_timer(&mut self, now: Instant) {
        let Some(watch) = &mut self.watch else {
            return;
        };
        if let Some(signature) = watch.poll(now) {
            // Recorded as loaded now: a bad file is not retried until it changes again.
            watch.loaded(signature);
            self.request(Request::FileChanged);
        }
    }

    /// SIGHUP: the configuration and the inventory, changed or not.
    pub fn on_reload_request(&mut self, _now: Instant) {
        self.request(Request::Sighup);
    }

    fn request(&mut self, request: Request) {
        if self.jobs.is_running() {
            self.queued = self.queued.max(Some(request));
        } else {
            self.begin(request);
        }
    }

    fn begin(&mut self, request: Request) {
        let (truth, current) = (self.source_of_truth.clone(), self.store.snapshot());
        let refused_now = self.refused;
        let state_dir = self.config.state_dir.clone();
        let fallback = truth.clone();
        let started = match request {
            Request::FileChanged => self.jobs.start(
                move || Done::Inventory(load("file changed", &truth, &current, &state_dir)),
                move || Done::Inventory(bug_load("file changed", &fallback)),
            ),
            Request::Sighup => {
                let source = self.source.clone();
                let (settings, config) = (self.settings.clone(), self.config.clone());
                if let Some(watch) = &mut self.watch {
                    watch.loaded(truth.signature());
                }
                self.jobs.start(
                    move || {
                        let current = (current.as_ref(), refused_now);
                        reload_config(&source, (&settings, &config), &truth, current)
                    },
                    move || Done::ConfigRefused {
                        why: "the reload failed unexpectedly (a netbootd bug)".into(),
                        inventory: bug_load("SIGHUP", &fallback),
                    },
                )
            }
        };
        if let Err(e) = started {
            error!("reload ({request:?}) not started: no thread: {e}");
        }
    }

    /// Puts a finished job's result in service.
    fn finish(&mut self, done: Done) -> Option<Config> {
        match done {
            Done::Inventory(load) => {
                self.put_in_service(load);
                None
            }
            Done::ConfigRefused { why, inventory } => {
                self.metrics
                    .inc("netbootd_config_reloads_total", &[("result", "refused")]);
                error!("configuration reload (SIGHUP) refused, keeping the running configuration: {why}");
                self.put_in_service(inventory);
                None
            }
            Done::Config {
                settings,
                reconciled,
                inventory,
            } => self.apply_config(*settings, *reconciled, inventory),
        }
    }

    fn apply_config(
        &mut self,
        settings: Settings,
        reconciled: Reconciled,
        inventory: InventoryLoad,
    ) -> Option<Config> {
        self.metrics
            .inc("netbootd_config_reloads_total", &[("result", "ok")]);
        if inventory.source != self.source_of_truth {
            let (path, signature) = (inventory.source.path.as_deref(), inventory.signature);
            self.watch = path.map(|path| FileWatch::new(path, signature, Instant::now()));
            self.source_of_truth = inventory.source.clone();
        }
        self.put_in_service(inventory);
        log_changes(&reconciled);
        let changed = !reconciled.applied.is_empty();
        log::set_max_level(reconciled.config.log_level);
        self.settings = settings;
        self.config = reconciled.config;
        changed.then(|| self.config.clone())
    }

    fn put_in_service(&mut self, load: InventoryLoad) {
        if load.source.remote && load.source.path.is_none() {
            // The remote source's service keeps that inventory current.
            return;
        }
        let why = load.why;
        let (loaded, (added, removed, changed)) = match load.result {
            Ok(ok) => ok,
            Err(problems) => {
                count_load(&self.metrics, "refused");
                let kept = self.store.snapshot().len();
                error!(
                    "inventory reload ({why}) refused, keeping the last good copy of {kept} machines: {}",
                    first_of(&problems, " errors")
                );
                for problem in problems.iter().skip(1) {
                    debug!("inventory: {problem}");
                }
                return;
            }
        };
        count_load(&self.metrics, "ok");
        count_records(&self.metrics, &loaded);
        self.refused = loaded.refused;
        for warning in &loaded.warnings {
            warn!("inventory: {warning}");
        }
        log_refused(&loaded.errors, loaded.refused, loaded.inventory.len());
        if let Some(why) = &load.not_kept {
            warn!("inventory: the last good copy could not be kept: {why}");
        }
        let (machines, netboot) = (loaded.inventory.len(), loaded.inventory.netboot_count());
        let old = self.store.replace(loaded.inventory);
        let old_served = self.combined.as_ref().map(|c| c.publish());
        drop(old_served);
        // The old copy is freed on the job thread's next run or here; either is cheap next
        // to parsing, which never happens on this thread.
        drop(old);
        info!(
            "inventory reloaded ({why}) from {}: {machines} machines ({netboot} netboot), {added} added, {removed} removed, {changed} changed, {} warnings{}; loaded in {:.3}s",
            load.source.name(),
            loaded.warnings.len(),
            left_out(loaded.refused),
            load.took.as_secs_f64()
        );
    }
}

/// The result of a job whose thread panicked: a refused load.
fn bug_load(why: &'static str, source: &InventorySource) -> InventoryLoad {
    InventoryLoad {
        why,
        source: source.clone(),
        signature: source.signature(),
        took: Duration::ZERO,
        not_kept: None,
        result: Err(vec![reader_bug(source)]),
    }
}

/// `netbootd_inventory_records{state}`: records in service and records left out for an error.
fn count_records(metrics: &Metrics, loaded: &inventory::Loaded) {
    let served = loaded.inventory.len() as u64;
    metrics.set("netbootd_inventory_records", &[("state", "served")], served);
    let refused = loaded.refused as u64;
    metrics.set(
        "netbootd_inventory_records",
        &[("state", "refused")],
        refused,
    );
}

/// ", N records left out" when any were (the inventory's summary lines).
pub fn left_out(refused: usize) -> String {
    match refused {
        0 => String::new(),
        1 => ", 1 record left out for errors".into(),
        n => format!(", {n} records left out for errors"),
    }
}

/// Each error that left a record out, at ERROR: the machine it names gets no answer.
pub fn log_refused(errors: &[Problem], refused: usize, serving: usize) {
    for problem in errors {
        error!("inventory: {problem} (record left out)");
    }
    if refused > 0 {
        error!(
            "inventory: {refused} records left out for errors; the other {serving} machines serve (--strict refuses the whole file instead)"
        );
    }
}

/// One line per change and a summary, so the log says exactly what a reload did.
fn log_changes(r: &Reconciled) {
    for w in &r.config.warnings {
        warn!("config: {w}");
    }
    for change in &r.applied {
        info!("config reload: {} applied", change.describe());
    }
    for change in &r.needs_restart {
        warn!(
            "config reload: {} needs a restart; still running with {:?}",
            change.describe(),
            change.old
        );
    }
    if r.unchanged() {
        info!("configuration reloaded (SIGHUP): no changes");
    } else {
        let count = |n: usize, one: &str, many: &str| match n {
            1 => format!("1 {one}"),
            n => format!("{n} {many}"),
        };
        info!(
            "configuration reloaded (SIGHUP): {} applied, {} a restart",
            count(r.applied.len(), "change", "changes"),
            count(r.needs_restart.len(), "needs", "need")
        );
    }
}
