//! Counters for `/metrics`, in the Prometheus text format. Services count into one shared
//! [`Metrics`]: a series is its name with labels (`netbootd_dhcp_packets_total{type="DISCOVER",
//! verdict="OFFER"}`), kept sorted so the output is stable. Counters only grow; gauges
//! ([`Metrics::set`]) hold the last value set. A mutex, not atomics per series: counting is
//! rare next to the work each event stands for.

use std::collections::BTreeMap;
use std::fmt::Write;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<String, (Kind, u64)>>,
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
        self.series.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Every series, with a `# TYPE` line per metric name.
    pub fn render(&self, out: &mut String) {
        let map = self.map();
        let mut last = "";
        for (key, (kind, value)) in map.iter() {
            let name = key.split('{').next().unwrap_or(key);
            if name != last {
                let kind = match kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = name;
            }
            let _ = writeln!(out, "{key} {value}");
        }
    }
}

/// One gauge or counter line with its `# TYPE` line.
pub fn write_value(out: &mut String, name: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
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
        let mut out = String::new();
        m.render(&mut out);
        assert_eq!(
            out,
            "# TYPE a_total counter\na_total{v=\"q\\\"\\\\\\n\"} 5\n\
             # TYPE g gauge\ng 3\n\
             # TYPE x_total counter\nx_total{route=\"script\",status=\"200\"} 2\n"
        );
    }
}
