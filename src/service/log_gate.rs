//! The log gate: every line a client can cause goes through [`LogGate::line`], which asks the
//! one [`LogBudget`] of the process whether it may be written. Services and their threads
//! share the gate through [`crate::service::Context`]. The summary of what was held back is
//! written by whichever line comes after its window, or by [`LogGateService`], a service with
//! no sockets whose only deadline is the end of a window that held lines back.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use log::{log_enabled, warn, Level};

use crate::config::Config;
use crate::io::logger;
use crate::policy::budget::{Kind, Limits, LogBudget, Origin, Suppressed};
use crate::policy::event::Event;
use crate::service::metrics::Metrics;
use crate::service::Service;

pub struct LogGate {
    budget: Mutex<LogBudget>,
    metrics: Arc<Metrics>,
}

/// The budget of a configuration.
pub fn limits_of(config: &Config) -> Limits {
    Limits {
        lines: config.log_budget_lines,
        bytes: config.log_budget_bytes,
    }
}

impl LogGate {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> LogGate {
        LogGate {
            budget: Mutex::new(LogBudget::new(limits)),
            metrics,
        }
    }

    fn budget(&self) -> MutexGuard<'_, LogBudget> {
        // A line's admission cannot leave the budget half-updated: take it after a panic.
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `event` at `level` if the budget allows; returns whether it was written (a
    /// line the log level leaves out costs nothing). The event is built by the caller only
    /// when the level is enabled: see [`LogGate::enabled`].
    pub fn line(&self, kind: Kind, origin: Origin, level: Level, event: &Event) -> bool {
        if !log_enabled!(level) {
            return false;
        }
        let admission = self
            .budget()
            .admit(kind, origin, event.text.len(), Instant::now());
        if let Some(report) = admission.report {
            self.report(&report);
        }
        if admission.log {
            logger::event(level, event);
        } else {
            self.metrics
                .inc("netbootd_log_suppressed_total", &[("kind", kind.name())]);
        }
        admission.log
    }

    /// Writes `event` at `level` whatever the budget: a line no client can cause at will (a
    /// machine getting its lease, a finished transfer, a boot file served).
    pub fn always(&self, level: Level, event: &Event) {
        if log_enabled!(level) {
            logger::event(level, event);
        }
    }

    /// Whether a line at `level` would be looked at (so the caller can skip building it).
    pub fn enabled(&self, level: Level) -> bool {
        log_enabled!(level)
    }

    fn report(&self, suppressed: &Suppressed) {
        warn!("log budget: {}", suppressed.describe());
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.budget().next_deadline()
    }

    fn on_timer(&self, now: Instant) {
        let report = self.budget().on_timer(now);
        if let Some(report) = report {
            self.report(&report);
        }
    }

    fn set_limits(&self, limits: Limits) {
        self.budget().set_limits(limits);
    }

    pub fn limits(&self) -> Limits {
        self.budget().limits()
    }
}

/// Writes the summary of a window that held lines back when no later line does, and takes
/// new limits on a configuration reload.
pub struct LogGateService(pub Arc<LogGate>);

impl Service for LogGateService {
    fn name(&self) -> &'static str {
        "log budget"
    }

    fn describe(&self) -> String {
        let limits = self.0.limits();
        format!(
            "log budget: at most {} lines and {} bytes a second of client-caused lines (DHCP, TFTP, HTTP, syslog); the rest summarised once a second",
            limits.lines, limits.bytes
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }

    fn on_readable(&mut self, _fd: RawFd, _now: Instant) {}

    fn poll_at(&self) -> Option<Instant> {
        self.0.next_deadline()
    }

    fn on_timer(&mut self, now: Instant) {
        self.0.on_timer(now);
    }

    fn reconfigure(&mut self, config: &Config) {
        self.0.set_limits(limits_of(config));
    }
}
