//! One budget for the log lines that clients can cause (a DHCP decision, a TFTP refusal, an
//! HTTP access line, a syslog message): at most so many lines and so many bytes in each
//! one-second window, whoever sends. What goes over is counted by kind and by source (a MAC or
//! an address: the first few sources of the window by name, the rest together) and reported in one summary line
//! when its window has ended, so a flood of junk costs the log one line a second. Lines that
//! matter (an ACK, a finished transfer, a file a machine boots from, an error of netbootd's own)
//! do not go through the budget. Pure: time is passed in.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::wire::MacAddr;

/// The length of a budget window.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Sources named one by one in a summary (the first to go over in a window; a flood from one
/// source is named, one from random MACs shows as "others"); the rest are counted together.
const SOURCES_NAMED: usize = 8;

/// What a line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dhcp,
    Tftp,
    Http,
    Syslog,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dhcp => "dhcp",
            Kind::Tftp => "tftp",
            Kind::Http => "http",
            Kind::Syslog => "syslog",
        }
    }
}

/// Who caused a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Mac(MacAddr),
    Ip(IpAddr),
    /// Sources past the first few of a window, counted together.
    Others,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Mac(mac) => write!(f, "{mac}"),
            Origin::Ip(ip) => write!(f, "{ip}"),
            Origin::Others => f.write_str("others"),
        }
    }
}

/// The limits of one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub lines: u32,
    pub bytes: u64,
}

/// What was held back in a window that has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub limits: Limits,
    /// By kind, then source; every count is at least 1.
    pub counts: BTreeMap<Kind, BTreeMap<Origin, u64>>,
}

impl Suppressed {
    pub fn total(&self) -> u64 {
        self.counts.values().flat_map(BTreeMap::values).sum()
    }

    pub fn of_kind(&self, kind: Kind) -> u64 {
        self.counts.get(&kind).map_or(0, |c| c.values().sum())
    }

    /// `1400 messages not logged in the last second (over 100 lines/s or 12288 bytes/s):
    /// dhcp 1200 (02:00:00:00:00:01 900, others 300), syslog 200 (127.0.0.2 200)`
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} messages not logged in the last second (over {} lines/s or {} bytes/s):",
            self.total(),
            self.limits.lines,
            self.limits.bytes
        );
        for (i, (kind, by_origin)) in self.counts.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(out, "{sep}{} {} (", kind.name(), self.of_kind(*kind));
            let mut origins: Vec<(&Origin, &u64)> = by_origin.iter().collect();
            crate::value::sort_by(&mut origins, |a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (j, (origin, n)) in origins.iter().enumerate() {
                let sep = if j == 0 { "" } else { ", " };
                let _ = write!(out, "{sep}{origin} {n}");
            }
            out.push(')');
        }
        out
    }
}

/// A fixed one-second window of at most `limits` lines and bytes.
#[derive(Debug)]
pub struct LogBudget {
    limits: Limits,
    window_start: Option<Instant>,
    lines: u32,
    bytes: u64,
    held: BTreeMap<Kind, BTreeMap<Origin, u64>>,
}

/// The budget's answer for one line.
#[derive(Debug, PartialEq, Eq)]
pub struct Admission {
    /// Write the line.
    pub log: bool,
    /// What an earlier window held back, to report first.
    pub report: Option<Suppressed>,
}

impl LogBudget {
    pub fn new(limits: Limits) -> LogBudget {
        LogBudget {
            limits,
            window_start: None,
            lines: 0,
            bytes: 0,
            held: BTreeMap::new(),
        }
    }

    /// New limits, from the next window on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// May a line of `bytes` bytes about `kind`, caused by `origin`, be written now?
    pub fn admit(&mut self, kind: Kind, origin: Origin, bytes: usize, now: Instant) -> Admission {
        let report = self.on_timer(now);
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if expired {
            self.window_start = Some(now);
            self.lines = 0;
            self.bytes = 0;
        }
        let fits = self.lines < self.limits.lines && self.bytes + bytes as u64 <= self.limits.bytes;
        if fits {
            self.lines += 1;
            self.bytes += bytes as u64;
        } else {
            self.hold(kind, origin);
        }
        Admission { log: fits, report }
    }

    fn hold(&mut self, kind: Kind, origin: Origin) {
        let by_origin = self.held.entry(kind).or_default();
        let origin = if by_origin.contains_key(&origin) || by_origin.len() < SOURCES_NAMED {
            origin
        } else {
            Origin::Others
        };
        *by_origin.entry(origin).or_default() += 1;
    }

    /// When held-back lines wait to be reported.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.held.is_empty(), self.window_start) {
            (true, _) | (_, None) => None,
            (false, Some(start)) => Some(start + WINDOW),
        }
    }

    /// What was held back, once its window has ended.
    pub fn on_timer(&mut self, now: Instant) -> Option<Suppressed> {
        let due = self.next_deadline().is_some_and(|d| now >= d);
        due.then(|| Suppressed {
            limits: self.limits,
            counts: std::mem::take(&mut self.held),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        lines: 3,
        bytes: 100,
    };

    fn ip(last: u8) -> Origin {
        Origin::Ip(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn lines_over_the_budget_are_held_and_reported_once_the_window_ends() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(LIMITS);
        let admitted: Vec<bool> = (0..5)
            .map(|_| b.admit(Kind::Dhcp, ip(1), 10, t0).log)
            .collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert_eq!(b.next_deadline(), Some(t0 + WINDOW));
        assert_eq!(
            b.on_timer(t0 + WINDOW / 2),
            None,
            "the window has not ended"
        );
        let report = b.on_timer(t0 + WINDOW).expect("reported");
        assert_eq!(report.total(), 2);
        assert_eq!(
            report.describe(),
            "2 messages not logged in the last second (over 3 lines/s or 100 bytes/s): dhcp 2 (10.0.0.1 2)"
        );
        assert_eq!(b.next_deadline(), None, "nothing left to report");
        assert!(
            b.admit(Kind::Dhcp, ip(1), 10, t0 + WINDOW).log,
            "a new window"
        );
    }

    /// (The syslog receiver's own budget's test, carried over to the one budget.)
    #[test]
    fn the_budget_suppresses_and_reports_once_a_window_ends() {
        let t0 = Instant::now();
        let mut budget = LogBudget::new(Limits {
            lines: 3,
            bytes: u64::MAX,
        });
        let admit = |b: &mut LogBudget, at| b.admit(Kind::Syslog, ip(5), 10, at);
        assert_eq!(budget.next_deadline(), None);
        for _ in 0..3 {
            assert_eq!(
                admit(&mut budget, t0),
                Admission {
                    log: true,
                    report: None
                }
            );
        }
        assert_eq!(budget.next_deadline(), None, "nothing suppressed yet");
        for _ in 0..5 {
            assert!(!admit(&mut budget, t0 + Duration::from_millis(500)).log);
        }
        assert_eq!(budget.next_deadline(), Some(t0 + WINDOW));
        assert_eq!(budget.on_timer(t0 + Duration::from_millis(999)), None);
        assert_eq!(budget.on_timer(t0 + WINDOW).map(|r| r.total()), Some(5));
        assert_eq!(budget.next_deadline(), None);
        // A new window logs again; its suppressed lines are reported by the next admission.
        let t1 = t0 + Duration::from_millis(1500);
        for _ in 0..4 {
            admit(&mut budget, t1);
        }
        let next = admit(&mut budget, t1 + WINDOW);
        assert!(next.log);
        assert_eq!(next.report.map(|r| r.total()), Some(1));
    }

    #[test]
    fn bytes_count_as_well_as_lines() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(LIMITS);
        assert!(b.admit(Kind::Syslog, ip(1), 60, t0).log);
        assert!(!b.admit(Kind::Syslog, ip(1), 60, t0).log, "120 bytes > 100");
        assert!(b.admit(Kind::Syslog, ip(1), 40, t0).log, "100 bytes fit");
    }

    #[test]
    fn a_report_names_kinds_and_the_busiest_sources_and_groups_the_rest() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(Limits { lines: 0, bytes: 0 });
        for last in 0..20u8 {
            for _ in 0..=last {
                b.admit(Kind::Dhcp, ip(last), 1, t0);
            }
        }
        let mac = Origin::Mac("02:00:00:00:00:09".parse().unwrap());
        b.admit(Kind::Http, mac, 1, t0);
        // The next admit, a window later, carries the report of the last one.
        let report = b.admit(Kind::Tftp, ip(1), 1, t0 + WINDOW).report.unwrap();
        assert_eq!(report.of_kind(Kind::Dhcp), (1..=20).sum::<u64>());
        assert_eq!(report.counts[&Kind::Dhcp].len(), SOURCES_NAMED + 1);
        let text = report.describe();
        assert!(text.starts_with("211 messages not logged"), "{text}");
        assert!(text.contains("dhcp 210 (others 174, 10.0.0.7 8,"), "{text}");
        assert!(text.ends_with("http 1 (02:00:00:00:00:09 1)"), "{text}");
    }

    #[test]
    fn a_flood_costs_a_bounded_number_of_bytes_per_window() {
        let t0 = Instant::now();
        let limits = Limits {
            lines: 100,
            bytes: 12_288,
        };
        let mut b = LogBudget::new(limits);
        let mut written = 0u64;
        let mut now = t0;
        for i in 0..250_000u64 {
            now = t0 + Duration::from_micros(i * 4); // 250,000 lines a second for a second
            if b.admit(Kind::Dhcp, ip((i % 251) as u8), 150, now).log {
                written += 150;
            }
        }
        assert!(
            written <= 2 * limits.bytes,
            "{written} bytes in two windows at most"
        );
        let report = b.on_timer(now + WINDOW).unwrap();
        assert_eq!(report.total() + written / 150, 250_000);
    }
}
