//! The one metrics registry behind `/metrics` (Prometheus text format). Every service counts
//! into the shared [`Metrics`] and `/metrics` renders it whole; no service knows another's
//! series. Three kinds of entry:
//! - labelled series counted by name ([`Metrics::inc`], [`Metrics::add`], [`Metrics::set`]):
//!   `netbootd_dhcp_packets_total{type="DISCOVER",verdict="OFFER"}`; a mutex, not atomics per
//!   series, as counting is rare next to the work each event stands for;
//! - hot counters a service holds directly ([`Metrics::counter`], lock-free where the target
//!   has 64-bit atomics), such as the TFTP workers' bytes;
//! - values read when `/metrics` is asked ([`Metrics::observe`]): inventory size, open
//!   connections, uptime.
//!
//! Everything is rendered sorted by name, so the output is stable.

use std::collections::BTreeMap;
use std::fmt::Write;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One counter updated from many threads (the TFTP workers'). Lock-free where the target has
/// 64-bit atomics; on 32-bit targets without them (mipsel routers) a mutex keeps it 64 bits
/// wide, so a byte count does not wrap at 4 GiB.
#[derive(Debug, Default)]
pub struct Counter {
    #[cfg(target_has_atomic = "64")]
    value: AtomicU64,
    #[cfg(not(target_has_atomic = "64"))]
    value: Mutex<u64>,
}

impl Counter {
    #[cfg(target_has_atomic = "64")]
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    #[cfg(target_has_atomic = "64")]
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    #[cfg(not(target_has_atomic = "64"))]
    pub fn add(&self, n: u64) {
        let mut value = self.value.lock().unwrap_or_else(|p| p.into_inner());
        *value = value.wrapping_add(n);
    }

    #[cfg(not(target_has_atomic = "64"))]
    pub fn get(&self) -> u64 {
        *self.value.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A value read at render time.
type Observed = Box<dyn Fn() -> String + Send + Sync>;

#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<String, (Kind, u64)>>,
    counters: Mutex<Vec<(&'static str, Arc<Counter>)>>,
    observed: Mutex<Vec<(&'static str, &'static str, Observed)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Takes a lock even after a panic elsewhere: each entry is complete at every moment.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Label values go between quotes: backslash, quote and newline are escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `name{k="v",...}`.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

impl Metrics {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Kind, u64)>> {
        lock(&self.series)
    }

    /// A counter named `name` (no labels) that the caller holds and adds to directly.
    pub fn counter(&self, name: &'static str) -> Arc<Counter> {
        let counter = Arc::new(Counter::default());
        lock(&self.counters).push((name, counter.clone()));
        counter
    }

    /// A value (`kind` is "gauge" or "counter") that `read` gives when `/metrics` is asked.
    pub fn observe(
        &self,
        name: &'static str,
        kind: &'static str,
        read: impl Fn() -> String + Send + Sync + 'static,
    ) {
        lock(&self.observed).push((name, kind, Box::new(read)));
    }

    pub fn add(&self, name: &str, labels: &[(&str, &str)], n: u64) {
        let key = series(name, labels);
        self.map().entry(key).or_insert((Kind::Counter, 0)).1 += n;
    }

    /// A gauge: the value replaces the last one.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.map()
            .insert(series(name, labels), (Kind::Gauge, value));
    }

    pub fn inc(&self, name: &str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Everything, sorted by series, with a `# TYPE` line per metric name.
    pub fn render(&self) -> String {
        let mut lines: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
        for (key, (kind, value)) in self.map().iter() {
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            lines.insert(key.clone(), (kind, value.to_string()));
        }
        for (name, counter) in lock(&self.counters).iter() {
            lines.insert(name.to_string(), ("counter", counter.get().to_string()));
        }
        for (name, kind, read) in lock(&self.observed).iter() {
            lines.insert(name.to_string(), (kind, read()));
        }
        let mut out = String::new();
        let mut last = String::new();
        for (key, (kind, value)) in &lines {
            let name = key.split('{').next().unwrap_or(key);
            if name != last {
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = name.to_string();
            }
            let _ = writeln!(out, "{key} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let m = Metrics::default();
        m.inc("x_total", &[("route", "script"), ("status", "200")]);
        m.inc("x_total", &[("route", "script"), ("status", "200")]);
        m.add("a_total", &[("v", "q\"\\\n")], 5);
        m.set("g", &[], 7);
        m.set("g", &[], 3);
        let bytes = m.counter("b_bytes_total");
        bytes.add(40);
        bytes.add(2);
        m.observe("c_open", "gauge", || "9".to_string());
        assert_eq!(
            m.render(),
            "# TYPE a_total counter\na_total{v=\"q\\\"\\\\\\n\"} 5\n\
             # TYPE b_bytes_total counter\nb_bytes_total 42\n\
             # TYPE c_open gauge\nc_open 9\n\
             # TYPE g gauge\ng 3\n\
             # TYPE x_total counter\nx_total{route=\"script\",status=\"200\"} 2\n"
        );
    }
}
