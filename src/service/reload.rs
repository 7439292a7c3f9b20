//! Reloads. [`InventoryReloader`] keeps the inventory in service up to date with its file: a
//! changed file (checked by [`FileWatch`]) or SIGHUP loads it again; a file that fails
//! validation is refused with one error line and the last good inventory stays in service.
//! [`ConfigReloader`] loads the configuration again on SIGHUP and logs each change, applied or
//! waiting for a restart (what may change is decided by [`crate::config::reload`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn};

use crate::config::reload::{reconcile, Reconciled};
use crate::config::{Config, Settings};
use crate::inventory::{self, InventoryStore, Problem, Profiles};
use crate::io::files;
use crate::io::watch::{FileWatch, Signature};
use crate::service::metrics::Metrics;

pub struct InventoryReloader {
    path: PathBuf,
    profiles: Profiles,
    store: Arc<InventoryStore>,
    watch: FileWatch,
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

impl InventoryReloader {
    /// Loads the first copy. Its errors stop start-up: a server must not begin with nothing.
    pub fn start(
        path: &Path,
        profiles: Profiles,
        now: Instant,
        metrics: Arc<Metrics>,
    ) -> Result<(InventoryReloader, Vec<Problem>), Vec<Problem>> {
        let signature = Signature::of(path);
        let loaded = files::load_inventory(path, &profiles)?;
        count_load(&metrics, "ok");
        let store = Arc::new(InventoryStore::new(loaded.inventory));
        let watch = FileWatch::new(path, signature, now);
        Ok((
            InventoryReloader {
                path: path.to_path_buf(),
                profiles,
                store,
                watch,
                metrics,
            },
            loaded.warnings,
        ))
    }

    pub fn store(&self) -> Arc<InventoryStore> {
        Arc::clone(&self.store)
    }

    pub fn next_deadline(&self) -> Instant {
        self.watch.next_deadline()
    }

    /// Call at or after [`Self::next_deadline`].
    pub fn on_timer(&mut self, now: Instant) {
        if let Some(signature) = self.watch.poll(now) {
            self.reload(signature, "file changed");
        }
    }

    /// SIGHUP: load the file now, changed or not.
    pub fn on_reload_request(&mut self) {
        self.reload(Signature::of(&self.path), "SIGHUP");
    }

    /// A configuration reload named another hardware file or changed the boot profiles: the
    /// inventory they give goes into service, or, when it has errors, nothing changes (the
    /// caller then keeps the running configuration too). Otherwise a plain SIGHUP reload.
    pub fn reconfigure(&mut self, path: &Path, profiles: &Profiles) -> Result<(), Vec<Problem>> {
        if path == self.path && *profiles == self.profiles {
            self.on_reload_request();
            return Ok(());
        }
        let signature = Signature::of(path);
        let loaded = load(path, profiles).inspect_err(|_| {
            count_load(&self.metrics, "refused");
        })?;
        self.path = path.to_path_buf();
        self.profiles = profiles.clone();
        self.watch = FileWatch::new(path, signature, Instant::now());
        self.put_in_service(loaded, "configuration reloaded");
        Ok(())
    }

    fn reload(&mut self, signature: Signature, why: &str) {
        self.watch.loaded(signature);
        match load(&self.path, &self.profiles) {
            Ok(loaded) => self.put_in_service(loaded, why),
            Err(problems) => {
                count_load(&self.metrics, "refused");
                let kept = self.store.snapshot().len();
                let more = match problems.len() {
                    1 => String::new(),
                    n => format!(" (and {} more errors; run netbootd check)", n - 1),
                };
                error!("inventory reload ({why}) refused, keeping the last good copy of {kept} machines: {}{more}", problems[0]);
                for problem in &problems[1..] {
                    debug!("inventory: {problem}");
                }
            }
        }
    }

    fn put_in_service(&mut self, loaded: inventory::Loaded, why: &str) {
        count_load(&self.metrics, "ok");
        for warning in &loaded.warnings {
            warn!("inventory: {warning}");
        }
        let old = self.store.replace(loaded.inventory);
        let new = self.store.snapshot();
        let (added, removed, changed) = new.diff(&old);
        info!(
            "inventory reloaded ({why}) from {}: {} machines ({} netboot), {added} added, {removed} removed, {changed} changed, {} warnings",
            self.path.display(),
            new.len(),
            new.netboot_count(),
            loaded.warnings.len()
        );
    }
}

/// Loads a hardware file. A panic in a reader (a bug) becomes a refused reload, so that the
/// last good inventory stays in service instead of the daemon restarting without one.
fn load(path: &Path, profiles: &Profiles) -> Result<inventory::Loaded, Vec<Problem>> {
    let attempt = || files::load_inventory(path, profiles);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt)).unwrap_or_else(|_| {
        Err(vec![Problem {
            file: path.display().to_string(),
            line: 0,
            mac: None,
            field: None,
            message:
                "the reader failed unexpectedly (a netbootd bug; please report it with this file)"
                    .into(),
        }])
    })
}

/// Loads the configuration as at start: the same flags and environment, the file as it is now.
pub type ConfigSource = Box<dyn Fn() -> Result<(Settings, Config), String>>;

pub struct ConfigReloader {
    source: ConfigSource,
    settings: Settings,
    config: Config,
    metrics: Arc<Metrics>,
}

impl ConfigReloader {
    pub fn new(
        source: ConfigSource,
        settings: Settings,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> ConfigReloader {
        ConfigReloader {
            source,
            settings,
            config,
            metrics,
        }
    }

    /// SIGHUP: the configuration, then the inventory it names. Either the whole reloaded
    /// configuration goes into service (less what needs a restart) or, when the file has an
    /// error or the inventory fails with it, none of it does. Returns the configuration for the
    /// services when something they use changed.
    pub fn on_reload_request(&mut self, inventory: &mut InventoryReloader) -> Option<&Config> {
        let refused = |metrics: &Metrics, why: String| {
            metrics.inc("netbootd_config_reloads_total", &[("result", "refused")]);
            error!(
                "configuration reload (SIGHUP) refused, keeping the running configuration: {why}"
            );
        };
        let (settings, config) = match (self.source)() {
            Ok(loaded) => loaded,
            Err(why) => {
                refused(&self.metrics, why);
                inventory.on_reload_request();
                return None;
            }
        };
        let reconciled = reconcile(&self.settings, &self.config, &settings, config);
        let next = &reconciled.config;
        if let Err(problems) = inventory.reconfigure(next.hardware_file(), &next.profiles) {
            let more = match problems.len() {
                1 => String::new(),
                n => format!(" (and {} more; run netbootd check)", n - 1),
            };
            let why = format!("with it the inventory has errors: {}{more}", problems[0]);
            refused(&self.metrics, why);
            inventory.on_reload_request();
            return None;
        }
        self.metrics
            .inc("netbootd_config_reloads_total", &[("result", "ok")]);
        log_changes(&reconciled);
        let changed = !reconciled.applied.is_empty();
        log::set_max_level(reconciled.config.log_level);
        self.settings = settings;
        self.config = reconciled.config;
        changed.then_some(&self.config)
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
