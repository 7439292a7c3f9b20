//! Keeps the inventory in service up to date with its file: a changed file (checked by
//! [`FileWatch`]) or SIGHUP loads it again; a file that fails validation is refused with one
//! error line and the last good inventory stays in service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn};

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

    /// Loads the file. A panic in a reader (a bug) becomes a refused reload, so that the
    /// last good inventory stays in service instead of the daemon restarting without one.
    fn load(&self) -> Result<inventory::Loaded, Vec<Problem>> {
        let attempt = || files::load_inventory(&self.path, &self.profiles);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt)).unwrap_or_else(|_| {
            Err(vec![Problem {
                file: self.path.display().to_string(),
                line: 0,
                mac: None,
                field: None,
                message: "the reader failed unexpectedly (a netbootd bug; please report it with this file)".into(),
            }])
        })
    }

    fn reload(&mut self, signature: Signature, why: &str) {
        self.watch.loaded(signature);
        let path = self.path.display();
        match self.load() {
            Ok(loaded) => {
                count_load(&self.metrics, "ok");
                for warning in &loaded.warnings {
                    warn!("inventory: {warning}");
                }
                let old = self.store.replace(loaded.inventory);
                let new = self.store.snapshot();
                let (added, removed, changed) = new.diff(&old);
                info!(
                    "inventory reloaded ({why}) from {path}: {} machines ({} netboot), {added} added, {removed} removed, {changed} changed, {} warnings",
                    new.len(),
                    new.netboot_count(),
                    loaded.warnings.len()
                );
            }
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
}
