//! The refresh decisions of a remote inventory source (SMD, a generic HTTP source), pure and
//! driven by the time it is given, in the manner of smoltcp's sockets: [`SourceCache`] says when
//! the next fetch is due ([`SourceCache::poll_at`]), hands out one fetch at a time
//! ([`SourceCache::on_timer`]), and judges each result ([`SourceCache::on_result`]): install
//! the new snapshot, or keep the one in service and say why. What it fixes of coresmd's
//! cache: the HTTP status and content type are checked (an error body never becomes an empty
//! inventory), an empty list never replaces a snapshot that had machines unless the operator
//! allows it, failures back off instead of hammering a struggling server, a failure is logged
//! when the state changes (not at every refresh), and staleness is a visible state.

use std::time::{Duration, Instant};

/// Whether a content type names JSON (`application/json`, `application/problem+json`, ...).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| t.to_ascii_lowercase().contains("json"))
}

/// How a source is refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A full snapshot this often (`--backend-smd-refresh`, 30 s).
    pub refresh: Duration,
    /// An empty snapshot may replace one with machines (`--backend-smd-allow-empty`).
    pub allow_empty: bool,
    /// Past this age the source's machines are no longer answered (`--backend-smd-max-stale`).
    pub max_stale: Option<Duration>,
    /// The first retry after a failure; it doubles up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            refresh: Duration::from_secs(30),
            allow_empty: false,
            max_stale: None,
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// What a fetch came back with, after the background job parsed and validated the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 304: the snapshot in service is current.
    NotModified,
    /// A response that parsed: its status and content type, and (for a 200 JSON body) how many
    /// machines the validated snapshot holds.
    Response {
        status: u16,
        content_type: Option<String>,
        machines: usize,
        etag: Option<String>,
        /// For an error status: what the server said (RFC 7807 `detail`), shortened.
        detail: Option<String>,
    },
    /// No usable answer: connection, timeout, truncated or oversized body, a body that is not
    /// the expected JSON.
    Failed(String),
}

/// The source's state, for `/healthcheck`, `/metrics` and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No snapshot yet (none on disk, no successful fetch).
    Starting,
    Ok,
    /// The last fetch failed; the snapshot in service is older than one refresh.
    Stale,
    /// Older than `max_stale`: its machines are not answered.
    Failing,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ok => "ok",
            State::Stale => "stale",
            State::Failing => "failing",
        }
    }
}

/// The verdict on one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Put the new snapshot in service.
    Install,
    /// Nothing changed (304).
    Current,
    /// Keep the snapshot in service: why.
    Keep(String),
}

/// A fetch to start: the ETag of the snapshot held, for `If-None-Match`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOrder {
    pub etag: Option<String>,
}

#[derive(Clone, Debug)]
pub struct SourceCache {
    settings: Settings,
    /// When the snapshot in service was fetched (or confirmed by a 304).
    fetched_at: Option<Instant>,
    machines: usize,
    etag: Option<String>,
    next_fetch: Instant,
    in_flight: bool,
    failures: u32,
    last_error: Option<String>,
    /// A xorshift state for jittered retries (0: none), so that replicas that lost the same
    /// server do not all come back at the same instant.
    jitter: u64,
}

impl SourceCache {
    /// `from_disk`: the machines of the snapshot kept in the state directory, if one loaded
    /// (its age is unknown to the server: it counts as fetched now, and stale at once).
    pub fn new(settings: Settings, now: Instant, from_disk: Option<usize>) -> SourceCache {
        SourceCache {
            settings,
            fetched_at: None,
            machines: from_disk.unwrap_or(0),
            etag: None,
            next_fetch: now,
            in_flight: false,
            failures: u32::from(from_disk.is_some()),
            last_error: from_disk.map(|_| "serving the snapshot kept on disk".into()),
            jitter: 0,
        }
    }

    /// Retries wait between half and all of their backoff, drawn from `seed` onwards.
    pub fn jittered(mut self, seed: u64) -> SourceCache {
        self.jitter = seed | 1;
        self
    }

    /// When [`SourceCache::on_timer`] wants to be called; `None` while a fetch runs.
    pub fn poll_at(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.next_fetch)
    }

    /// When the snapshot in service becomes too old to answer from (`max_stale`), if ever.
    pub fn stale_at(&self) -> Option<Instant> {
        Some(self.fetched_at? + self.settings.max_stale?)
    }

    /// New settings (a reloaded configuration): the next fetch is due no later than one new
    /// refresh interval from `now`.
    pub fn set_settings(&mut self, settings: Settings, now: Instant) {
        self.settings = settings;
        self.next_fetch = self.next_fetch.min(now + settings.refresh);
    }

    /// Starts a fetch when one is due.
    pub fn on_timer(&mut self, now: Instant) -> Option<FetchOrder> {
        if self.in_flight || now < self.next_fetch {
            return None;
        }
        self.in_flight = true;
        Some(FetchOrder {
            etag: self.etag.clone(),
        })
    }

    /// Judges a finished fetch. Returns the decision and, when the state changed, the line to
    /// log (a failure repeated at every refresh is logged once).
    pub fn on_result(&mut self, outcome: Outcome, now: Instant) -> (Decision, Option<String>) {
        self.in_flight = false;
        let verdict = match outcome {
            Outcome::NotModified => Ok((Decision::Current, None)),
            Outcome::Failed(why) => Err(why),
            Outcome::Response { status, detail, .. } if status != 200 => Err(format!(
                "HTTP {status}{}",
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            )),
            Outcome::Response { content_type, .. } if !is_json(content_type.as_deref()) =>
            {
                Err(format!(
                    "content type {:?} is not JSON",
                    content_type.unwrap_or_default()
                ))
            }
            Outcome::Response { machines: 0, .. } if self.machines > 0 && !self.settings.allow_empty => {
                Err(format!(
                    "an empty list where the snapshot in service has {} machines (--backend-smd-allow-empty installs it)",
                    self.machines
                ))
            }
            Outcome::Response { machines, etag, .. } => Ok((Decision::Install, Some((machines, etag)))),
        };
        match verdict {
            Ok((decision, installed)) => {
                if let Some((machines, etag)) = installed {
                    self.machines = machines;
                    self.etag = etag;
                }
                self.fetched_at = Some(now);
                self.next_fetch = now + self.settings.refresh;
                let recovered = (self.failures > 0).then(|| {
                    format!(
                        "recovered after {} failed refreshes ({})",
                        self.failures,
                        self.last_error.take().unwrap_or_default()
                    )
                });
                self.failures = 0;
                (decision, recovered)
            }
            Err(why) => {
                self.failures = self.failures.saturating_add(1);
                let mut backoff = self
                    .settings
                    .retry_first
                    .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
                    .min(self.settings.retry_max);
                if self.jitter != 0 {
                    self.jitter ^= self.jitter << 13;
                    self.jitter ^= self.jitter >> 7;
                    self.jitter ^= self.jitter << 17;
                    let half = backoff / 2;
                    let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
                    backoff = half + Duration::from_millis(self.jitter % millis);
                }
                self.next_fetch = now + backoff;
                let changed = self.last_error.as_deref() != Some(why.as_str());
                let line = changed.then(|| {
                    format!(
                        "refresh failed, keeping the snapshot of {} machines: {why} (next try in {:?})",
                        self.machines, backoff
                    )
                });
                self.last_error = Some(why.clone());
                (Decision::Keep(why), line)
            }
        }
    }

    pub fn state(&self, now: Instant) -> State {
        let Some(at) = self.fetched_at else {
            return if self.machines > 0 {
                State::Stale
            } else {
                State::Starting
            };
        };
        let age = now.saturating_duration_since(at);
        match self.settings.max_stale {
            Some(max) if age > max => State::Failing,
            _ if self.failures > 0 => State::Stale,
            _ => State::Ok,
        }
    }

    /// Whether the source's machines are answered now (not past `max_stale`).
    pub fn serves(&self, now: Instant) -> bool {
        self.state(now) != State::Failing
    }

    /// When the snapshot in service was fetched or confirmed (`None`: never).
    pub fn fetched_at(&self) -> Option<Instant> {
        self.fetched_at
    }

    /// Seconds since the snapshot in service was fetched or confirmed (`None`: never).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.fetched_at.map(|at| now.saturating_duration_since(at))
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(machines: usize, etag: &str) -> Outcome {
        Outcome::Response {
            status: 200,
            content_type: Some("application/json; charset=utf-8".into()),
            machines,
            etag: Some(etag.into()),
            detail: None,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn one_fetch_at_a_time_every_refresh_with_the_etag() {
        let t0 = Instant::now();
        let mut c = SourceCache::new(Settings::default(), t0, None);
        assert_eq!(c.state(t0), State::Starting);
        assert_eq!(c.poll_at(), Some(t0));
        assert_eq!(c.on_timer(t0), Some(FetchOrder { etag: None }));
        assert_eq!((c.poll_at(), c.on_timer(t0)), (None, None), "one in flight");
        assert_eq!(
            c.on_result(json(40, "\"v1\""), t0 + secs(1)),
            (Decision::Install, None)
        );
        assert_eq!(c.state(t0 + secs(1)), State::Ok);
        assert_eq!(c.poll_at(), Some(t0 + secs(31)));
        assert_eq!(c.on_timer(t0 + secs(30)), None, "not yet");
        let order = c.on_timer(t0 + secs(31)).unwrap();
        assert_eq!(order.etag.as_deref(), Some("\"v1\""));
        assert_eq!(
            c.on_result(Outcome::NotModified, t0 + secs(32)),
            (Decision::Current, None)
        );
        assert_eq!(c.age(t0 + secs(40)), Some(secs(8)));
    }

    /// coresmd's H2: an error body must never replace a good snapshot; nor an empty list
    /// where there were machines (unless allowed); nor a body that is not JSON.
    #[test]
    fn error_bodies_empty_lists_and_failures_keep_the_snapshot() {
        let t0 = Instant::now();
        let mut c = SourceCache::new(Settings::default(), t0, None);
        c.on_timer(t0);
        c.on_result(json(40, "a"), t0);
        let problem = Outcome::Response {
            status: 503,
            content_type: Some("application/problem+json".into()),
            machines: 0,
            etag: None,
            detail: Some("HSM's database is unhealthy".into()),
        };
        let mut t = t0 + secs(30);
        c.on_timer(t);
        let (d, line) = c.on_result(problem.clone(), t);
        assert_eq!(
            d,
            Decision::Keep("HTTP 503: HSM's database is unhealthy".into())
        );
        assert_eq!(
            line.as_deref(),
            Some("refresh failed, keeping the snapshot of 40 machines: HTTP 503: HSM's database is unhealthy (next try in 1s)")
        );
        assert_eq!(c.state(t), State::Stale);
        // The same failure again: kept, not logged again; the retries back off up to refresh.
        let mut waits = Vec::new();
        for _ in 0..7 {
            t = c.poll_at().unwrap();
            c.on_timer(t);
            let (d, line) = c.on_result(problem.clone(), t);
            assert!(matches!(d, Decision::Keep(_)) && line.is_none());
            waits.push(c.poll_at().unwrap() - t);
        }
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30].map(secs));
        // A different failure is a new state: logged.
        t = c.poll_at().unwrap();
        c.on_timer(t);
        let (_, line) = c.on_result(json(0, "b"), t);
        assert!(line
            .unwrap()
            .contains("an empty list where the snapshot in service has 40 machines"));
        t = c.poll_at().unwrap();
        c.on_timer(t);
        let (d, _) = c.on_result(
            Outcome::Response {
                status: 200,
                content_type: Some("text/html".into()),
                machines: 3,
                etag: None,
                detail: None,
            },
            t,
        );
        assert_eq!(
            d,
            Decision::Keep("content type \"text/html\" is not JSON".into())
        );
        // Recovery is logged once, with how many refreshes failed.
        t = c.poll_at().unwrap();
        c.on_timer(t);
        let (d, line) = c.on_result(json(41, "c"), t);
        assert_eq!(d, Decision::Install);
        assert!(line
            .unwrap()
            .starts_with("recovered after 10 failed refreshes"));
        assert_eq!((c.state(t), c.last_error()), (State::Ok, None));
    }

    #[test]
    fn empty_is_allowed_on_request_and_for_a_first_snapshot() {
        let t0 = Instant::now();
        let mut c = SourceCache::new(Settings::default(), t0, None);
        c.on_timer(t0);
        assert_eq!(
            c.on_result(json(0, "a"), t0).0,
            Decision::Install,
            "nothing to lose yet"
        );
        let settings = Settings {
            allow_empty: true,
            ..Settings::default()
        };
        let mut c = SourceCache::new(settings, t0, None);
        c.on_timer(t0);
        c.on_result(json(5, "a"), t0);
        c.on_timer(t0 + secs(30));
        assert_eq!(
            c.on_result(json(0, "b"), t0 + secs(30)).0,
            Decision::Install
        );
    }

    /// A restart while the server is down serves the snapshot on disk (stale, never
    /// "unknown"); with --backend-smd-max-stale an old snapshot stops being answered.
    #[test]
    fn the_disk_snapshot_serves_and_max_stale_stops_answering() {
        let t0 = Instant::now();
        let settings = Settings {
            max_stale: Some(secs(300)),
            ..Settings::default()
        };
        let mut c = SourceCache::new(settings, t0, Some(12));
        assert_eq!(c.state(t0), State::Stale);
        assert!(c.serves(t0));
        c.on_timer(t0);
        let (d, line) = c.on_result(Outcome::Failed("connection refused".into()), t0);
        assert_eq!(d, Decision::Keep("connection refused".into()));
        assert!(line
            .unwrap()
            .contains("keeping the snapshot of 12 machines"));
        c.on_timer(c.poll_at().unwrap());
        c.on_result(json(12, "a"), t0 + secs(5));
        assert!(c.serves(t0 + secs(300)));
        assert_eq!(c.state(t0 + secs(306)), State::Failing);
        assert!(!c.serves(t0 + secs(306)));
    }

    /// A watched source (Kubernetes): the next round starts at once after a success; failures
    /// back off from 1 s doubling to 30 s, each wait between half and all of its step.
    #[test]
    fn a_watched_source_goes_on_at_once_and_backs_off_jittered() {
        let t0 = Instant::now();
        let settings = Settings {
            refresh: Duration::ZERO,
            allow_empty: true,
            retry_max: secs(30),
            ..Settings::default()
        };
        let mut c = SourceCache::new(settings, t0, None).jittered(0x9e37_79b9_7f4a_7c15);
        c.on_timer(t0);
        assert_eq!(c.on_result(json(3, "a"), t0).0, Decision::Install);
        assert_eq!(c.poll_at(), Some(t0), "the next watch round at once");
        let mut waits = Vec::new();
        let mut t = t0;
        for _ in 0..8 {
            c.on_timer(t);
            c.on_result(Outcome::Failed("connection refused".into()), t);
            let next = c.poll_at().unwrap();
            waits.push(next - t);
            t = next;
        }
        let steps = [1, 2, 4, 8, 16, 30, 30, 30];
        for (wait, step) in waits.iter().zip(steps) {
            let step = secs(step);
            assert!(
                *wait >= step / 2 && *wait <= step,
                "{wait:?} for a step of {step:?}"
            );
        }
        assert!(
            waits[5..].windows(2).any(|w| w[0] != w[1]),
            "jittered: {waits:?}"
        );
        // An empty set from a working API is the truth.
        c.on_timer(t);
        assert_eq!(c.on_result(json(0, "b"), t).0, Decision::Install);
    }
}
