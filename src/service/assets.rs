//! The asset pull-through cache: assets not on disk are fetched from their upstream once, on
//! a background thread, into a file that every client asking for them reads while it grows
//! ([`Growing`]); complete and checked, it is renamed to its final name below the cache
//! directory, with a side record of its validators. Decisions (which upstream, when to ask
//! again, what to evict) are [`crate::policy::assets`]'s.
//!
//! - One download per file at a time, however many clients ask (no thundering herd).
//! - Partial files live in `.netbootd-partial/` and never appear under a served name; a failed
//!   or short download is removed, and its readers get its error.
//! - A failure is remembered for [`FAILURE_MEMORY`], so a dead upstream is not asked again by
//!   every retrying client, and a TFTP client's retransmission gets the reason.
//! - Files being served are marked in use and never evicted.
//! - Every download's SHA-256 is taken as it arrives and kept in the side record. When a
//!   profile pins the digest or the upstream's `sha256sums` file lists it, the last bytes are
//!   held back until it matches: on a mismatch no reader ever gets the whole file, and it is
//!   not cached. A cached file whose recorded digest differs from a (new) pin is fetched again.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};

use crate::config::assets::{sha256_hex, AssetCacheSettings, Sha256};
use crate::io::fetch::{self, FetchError, Limits, Request};
use crate::io::files::{make_dirs, open_served, write_atomically, Content, Hold, Served};
use crate::io::growing::Growing;
use crate::io::tls;
use crate::policy::assets::{
    expected_digest, listed_digest, needs_revalidation, to_evict, upstream_for, Cached, Expected,
    Meta,
};
use crate::policy::served::{Links, Refusal};
use crate::service::metrics::{Counter, Metrics};

/// Where partial downloads and side records live, below the cache directory; no client path
/// may name them.
const PARTIAL_DIR: &str = ".netbootd-partial";
const META_DIR: &str = ".netbootd-meta";
/// How long a failed download's error is given to new requests before the upstream is tried
/// again.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(5);
/// Longest wait for an upstream's next bytes.
const UPSTREAM_READ: Duration = Duration::from_secs(30);
/// The largest asset fetched (a DVD image is under 10 GiB).
const MAX_ASSET: u64 = 64 << 30;
/// Downloads running at once; more misses wait for a later request.
const MAX_DOWNLOADS: usize = 32;
/// The largest `sha256sums` file read.
const MAX_SUMS_FILE: usize = 4 << 20;

/// A download in progress.
struct Download {
    growing: Arc<Growing>,
    /// The cached file's path once complete.
    real: PathBuf,
}

#[derive(Debug)]
struct Counters {
    hits: Arc<Counter>,
    misses: Arc<Counter>,
    upstream_bytes: Arc<Counter>,
    evictions: Arc<Counter>,
    failures: Arc<Counter>,
    revalidations: Arc<Counter>,
}

pub struct AssetCache {
    downloads: Mutex<Keyed<Arc<Download>>>,
    failures: Mutex<Keyed<(Instant, String)>>,
    in_use: Arc<Mutex<Keyed<usize>>>,
    counters: Counters,
    /// For https upstreams: the system's CAs, built on first use.
    tls: Mutex<Option<Arc<tls::Client>>>,
    sequence: AtomicUsize,
}

/// A few entries by key: downloads running (at most [`MAX_DOWNLOADS`]), recent failures and
/// the files being served. A list costs less code than a hash map and is as fast at these
/// sizes.
struct Keyed<T>(Vec<(String, T)>);

impl<T> Default for Keyed<T> {
    fn default() -> Self {
        Keyed(Vec::new())
    }
}

impl<T> Keyed<T> {
    fn get(&self, key: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn insert(&mut self, key: &str, value: T) {
        match self.get_mut(key) {
            Some(v) => *v = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    #[cfg(test)]
    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Is `relative` a name the cache keeps for itself (never served under `/assets/`)?
fn internal(relative: &str) -> bool {
    relative
        .split('/')
        .next()
        .is_some_and(|first| first.starts_with(".netbootd-"))
}

/// Is `relative` a side record or a partial file? The ISO sources (under `.netbootd-iso/`,
/// see [`crate::policy::assets::iso_key`]) are internal but cached files like the others:
/// listed, counted against the limit, evicted and removable.
fn side_record(relative: &str) -> bool {
    internal(relative) && !relative.starts_with(".netbootd-iso/")
}

/// Marks a cached file in use while its [`Hold`] lives.
struct InUse {
    map: Arc<Mutex<Keyed<usize>>>,
    key: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl AssetCache {
    pub fn new(metrics: &Metrics) -> Arc<AssetCache> {
        Arc::new(AssetCache {
            downloads: Mutex::new(Keyed::default()),
            failures: Mutex::new(Keyed::default()),
            in_use: Arc::new(Mutex::new(Keyed::default())),
            counters: Counters {
                hits: metrics.counter("netbootd_assets_cache_hits_total"),
                misses: metrics.counter("netbootd_assets_cache_misses_total"),
                upstream_bytes: metrics.counter("netbootd_assets_upstream_bytes_total"),
                evictions: metrics.counter("netbootd_assets_cache_evictions_total"),
                failures: metrics.counter("netbootd_assets_upstream_failures_total"),
                revalidations: metrics.counter("netbootd_assets_revalidations_total"),
            },
            tls: Mutex::new(None),
            sequence: AtomicUsize::new(0),
        })
    }

    /// Creates the cache's directories and trims it to its limit (at start).
    pub fn prepare(&self, settings: &AssetCacheSettings) -> io::Result<()> {
        make_dirs(&settings.dir.join(PARTIAL_DIR))?;
        make_dirs(&settings.dir.join(META_DIR))?;
        // Partial files of an earlier run are never complete.
        for entry in fs::read_dir(settings.dir.join(PARTIAL_DIR))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        self.evict(settings);
        Ok(())
    }

    fn hold(&self, key: &str) -> Hold {
        let mut in_use = lock(&self.in_use);
        match in_use.get_mut(key) {
            Some(n) => *n += 1,
            None => in_use.insert(key, 1),
        }
        drop(in_use);
        Hold(Box::new(InUse {
            map: self.in_use.clone(),
            key: key.to_string(),
        }))
    }

    /// `relative` (an asset path, already cleaned) from the cache or its upstream. A miss
    /// starts the download and waits up to `head_wait` for the upstream's head (its length);
    /// `Refusal::Fetching` when it has not come yet, `Refusal::NotFound` when no upstream
    /// serves the path.
    pub fn open(
        self: &Arc<Self>,
        settings: &AssetCacheSettings,
        relative: &str,
        head_wait: Duration,
    ) -> Result<Served, Refusal> {
        if internal(relative) {
            return Err(Refusal::NotFound);
        }
        let Some((_, url)) = upstream_for(&settings.upstreams, relative) else {
            return Err(Refusal::NotFound);
        };
        self.open_url(settings, relative, &url, head_wait)
    }

    /// As [`AssetCache::open`], for a file cached under `key` from `url`.
    pub fn open_url(
        self: &Arc<Self>,
        settings: &AssetCacheSettings,
        key: &str,
        url: &str,
        head_wait: Duration,
    ) -> Result<Served, Refusal> {
        match open_served(&settings.dir, key, Links::Inside) {
            Ok(_) if self.pin_differs(settings, key) => {
                info!("assets {key}: the cached copy's digest is not the pinned one; fetching it again");
            }
            Ok(mut served) => {
                self.counters.hits.add(1);
                if let Content::File(f) = &served.content {
                    let _ = f.set_times(fs::FileTimes::new().set_accessed(SystemTime::now()));
                }
                let meta = Self::read_meta(settings, key);
                let age = Duration::from_secs(now_secs().saturating_sub(meta.fetched));
                if needs_revalidation(settings, key, age) {
                    self.start(settings, key, url, Some(meta));
                }
                served.hold = Some(self.hold(key));
                return Ok(served);
            }
            Err(Refusal::NotFound) => {}
            Err(other) => return Err(other),
        }
        let existing = {
            let downloads = lock(&self.downloads);
            let running = downloads.get(key).cloned();
            // A download that ended since the look on disk renamed its file before it left
            // the list: serve that file rather than fetch it again.
            let finished = running.is_none()
                && settings.dir.join(key).is_file()
                && !self.pin_differs(settings, key);
            drop(downloads);
            if finished {
                return self.open_url(settings, key, url, head_wait);
            }
            running
        };
        let download = match existing {
            Some(d) => d,
            None => {
                if let Some((at, why)) = lock(&self.failures).get(key) {
                    if at.elapsed() < FAILURE_MEMORY {
                        return Err(Refusal::Upstream(why.clone()));
                    }
                }
                self.start(settings, key, url, None)
                    .ok_or_else(|| Refusal::Upstream("too many downloads at once".into()))?
            }
        };
        let size = match download.growing.length_now() {
            Some(n) => n,
            None if head_wait.is_zero() => return Err(Refusal::Fetching),
            None => download
                .growing
                .wait_length(head_wait)
                .map_err(Refusal::Upstream)?,
        };
        Ok(Served {
            content: Content::Growing(download.growing.clone()),
            size,
            real: download.real.clone(),
            modified: None,
            hold: Some(self.hold(key)),
        })
    }

    /// Does a profile pin `key` to a digest other than the cached copy's?
    fn pin_differs(&self, settings: &AssetCacheSettings, key: &str) -> bool {
        match expected_digest(settings, key) {
            Some(Expected::Pinned(pin)) => Self::read_meta(settings, key).sha256 != Some(pin),
            _ => false,
        }
    }

    fn meta_path(settings: &AssetCacheSettings, key: &str) -> PathBuf {
        settings.dir.join(META_DIR).join(key)
    }

    fn read_meta(settings: &AssetCacheSettings, key: &str) -> Meta {
        let text = fs::read_to_string(Self::meta_path(settings, key)).unwrap_or_default();
        Meta::parse(&text)
    }

    /// Starts a download of `key` (a revalidation when `validators` are given) unless one
    /// runs; the running one. `None` when [`MAX_DOWNLOADS`] run already.
    fn start(
        self: &Arc<Self>,
        settings: &AssetCacheSettings,
        key: &str,
        url: &str,
        validators: Option<Meta>,
    ) -> Option<Arc<Download>> {
        let mut downloads = lock(&self.downloads);
        if let Some(d) = downloads.get(key) {
            return Some(d.clone());
        }
        if downloads.len() >= MAX_DOWNLOADS {
            return None;
        }
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let base = key.rsplit('/').next().unwrap_or("asset");
        let partial = settings
            .dir
            .join(PARTIAL_DIR)
            .join(format!("{}-{n}-{base}", std::process::id()));
        let file = make_dirs(&settings.dir.join(PARTIAL_DIR)).and_then(|()| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&partial)
        });
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                let why = format!("cannot create {}: {e}", partial.display());
                warn!("assets {key}: {why}");
                self.remember_failure(key, why);
                return None;
            }
        };
        let download = Arc::new(Download {
            growing: Arc::new(Growing::new(file)),
            real: settings.dir.join(key),
        });
        downloads.insert(key, download.clone());
        drop(downloads);
        // One miss per download started, however many clients asked at once.
        match validators {
            Some(_) => self.counters.revalidations.add(1),
            None => self.counters.misses.add(1),
        }
        let job = Job {
            cache: self.clone(),
            settings: settings.clone(),
            key: key.to_string(),
            url: url.to_string(),
            partial,
            validators,
            // The ISO source is cached under an internal name, from its own URL.
            expected: expected_digest(settings, key).filter(|_| !internal(key)),
            download: download.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("asset-fetch".into())
            .stack_size(256 << 10)
            .spawn(move || job.run());
        if let Err(e) = spawned {
            warn!("assets {key}: cannot start a download thread: {e}");
            download.growing.end(Err("cannot start a download".into()));
            lock(&self.downloads).remove(key);
        }
        Some(download)
    }

    /// Keeps `why` for [`FAILURE_MEMORY`]; older failures are forgotten.
    fn remember_failure(&self, key: &str, why: String) {
        let mut failures = lock(&self.failures);
        failures
            .0
            .retain(|(_, (at, _))| at.elapsed() < FAILURE_MEMORY);
        failures.insert(key, (Instant::now(), why));
    }

    fn tls(&self) -> Result<Arc<tls::Client>, String> {
        let mut slot = lock(&self.tls);
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let client = Arc::new(tls::client(&Default::default())?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// The digest recorded when `relative` was fetched (`netbootd cache ls`).
    pub fn recorded_sha256(settings: &AssetCacheSettings, relative: &str) -> Option<Sha256> {
        Self::read_meta(settings, relative).sha256
    }

    /// Removes a cached file and its side record (`netbootd cache rm`).
    pub fn remove(settings: &AssetCacheSettings, relative: &str) -> io::Result<()> {
        let relative = relative.trim_start_matches('/');
        if side_record(relative) || relative.split('/').any(|s| s == ".." || s.is_empty()) {
            return Err(io::Error::other("not a cached file's name"));
        }
        fs::remove_file(settings.dir.join(relative))?;
        let _ = fs::remove_file(Self::meta_path(settings, relative));
        Ok(())
    }

    /// Fetches `relative` whole into the cache (`netbootd cache prefetch`); what happened.
    pub fn fetch_whole(
        self: &Arc<Self>,
        settings: &AssetCacheSettings,
        relative: &str,
    ) -> Result<String, String> {
        let wait = Duration::from_secs(30);
        let served = self
            .open(settings, relative, wait)
            .map_err(|r| r.http_status().1)?;
        let Content::Growing(growing) = &served.content else {
            return Ok(format!("cached already ({} bytes)", served.size));
        };
        let mut at = 0;
        while at < served.size {
            at += growing.readable(at, served.size - at, UPSTREAM_READ)?;
        }
        // The download thread renames the file once it has it all.
        while lock(&self.downloads).get(relative).is_some() {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(format!("fetched {} bytes", served.size))
    }

    /// Removes least recently used files until the cache fits its limit.
    pub fn evict(&self, settings: &AssetCacheSettings) {
        if settings.max_bytes == 0 {
            return;
        }
        let busy: Vec<String> = {
            let in_use = lock(&self.in_use);
            let downloads = lock(&self.downloads);
            in_use.keys().chain(downloads.keys()).cloned().collect()
        };
        let mut files = Vec::new();
        walk(&settings.dir, "", &mut files);
        for f in &mut files {
            f.in_use = busy.contains(&f.relative);
        }
        for relative in to_evict(&files, settings.max_bytes) {
            match fs::remove_file(settings.dir.join(&relative)) {
                Ok(()) => {
                    let _ = fs::remove_file(Self::meta_path(settings, &relative));
                    self.counters.evictions.add(1);
                    info!(
                        "assets {relative}: evicted (cache over {} bytes)",
                        settings.max_bytes
                    );
                }
                Err(e) => warn!("assets {relative}: cannot evict: {e}"),
            }
        }
    }
}

/// The cached files below `dir`, the ISO sources included (side records and partial files
/// left out).
pub fn walk(dir: &Path, prefix: &str, out: &mut Vec<Cached>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}{name}");
        if side_record(&format!("{relative}/")) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(&entry.path(), &format!("{relative}/"), out);
        } else if meta.is_file() {
            let secs = |t: io::Result<SystemTime>| {
                t.ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs())
            };
            out.push(Cached {
                relative,
                size: meta.len(),
                used: secs(meta.accessed()).max(secs(meta.modified())),
                in_use: false,
            });
        }
    }
}

/// One download on its own thread.
struct Job {
    cache: Arc<AssetCache>,
    settings: AssetCacheSettings,
    key: String,
    url: String,
    partial: PathBuf,
    validators: Option<Meta>,
    expected: Option<Expected>,
    download: Arc<Download>,
}

enum Fetched {
    Complete(Meta),
    NotModified,
}

impl Job {
    fn run(self) {
        let started = Instant::now();
        let result = self.fetch();
        let growing = &self.download.growing;
        let bytes = growing.have();
        let secs = started.elapsed().as_secs_f64();
        let cache = &self.cache;
        match result {
            Ok(Fetched::NotModified) => {
                let mut meta = self.validators.clone().unwrap_or_default();
                meta.fetched = now_secs();
                self.write_meta(&meta);
                info!("assets {}: unchanged at {} (304)", self.key, self.url);
                growing.end(Err("not modified".into()));
            }
            Ok(Fetched::Complete(meta)) => {
                let kept = self.keep(&meta);
                // The data is whole either way: readers finish.
                growing.end(Ok(()));
                match kept {
                    Ok(()) => info!(
                        "assets {}: fetched {bytes} bytes from {} in {secs:.3}s, cached",
                        self.key, self.url
                    ),
                    Err(e) => warn!(
                        "assets {}: fetched {bytes} bytes from {} but cannot cache it: {e}",
                        self.key, self.url
                    ),
                }
            }
            Err(why) => {
                cache.counters.failures.add(1);
                let why = format!("{}: {why}", self.url);
                warn!(
                    "assets {}: download failed after {bytes} bytes: {why}; not cached",
                    self.key
                );
                cache.remember_failure(&self.key, why.clone());
                growing.end(Err(why));
            }
        }
        let _ = fs::remove_file(&self.partial);
        lock(&cache.downloads).remove(&self.key);
        cache.evict(&self.settings);
    }

    fn tls_for(&self, url: &str) -> Result<Option<Arc<tls::Client>>, String> {
        match url.starts_with("https://") {
            true => self.cache.tls().map(Some),
            false => Ok(None),
        }
    }

    /// The digest the file must have, reading the upstream's sums file when it lists it.
    fn expected_sha256(&self) -> Result<Option<Sha256>, String> {
        let (sums_url, name) = match &self.expected {
            None => return Ok(None),
            Some(Expected::Pinned(d)) => return Ok(Some(*d)),
            Some(Expected::Listed { sums_url, name }) => (sums_url, name),
        };
        let listed = || {
            let name = name.as_deref().ok_or("the file is outside its directory")?;
            let tls = self.tls_for(sums_url)?;
            let request = Request {
                url: sums_url,
                tls: tls.as_deref(),
                ..Request::default()
            };
            let limits = Limits {
                max_body: MAX_SUMS_FILE,
                ..Limits::default()
            };
            match fetch::get(&request, &limits).map_err(|e| e.to_string())? {
                fetch::Fetched::Fresh(r) if r.status == 200 => {
                    listed_digest(&String::from_utf8_lossy(&r.body), name)
                }
                _ => Err("not answered with 200".into()),
            }
        };
        listed()
            .map(Some)
            .map_err(|why| format!("{sums_url}: {why}"))
    }

    fn fetch(&self) -> Result<Fetched, String> {
        // Before the file's own request, so a missing digest fails before any client byte.
        let expected = self.expected_sha256()?;
        let tls = self.tls_for(&self.url)?;
        let v = self.validators.as_ref();
        let request = Request {
            url: &self.url,
            etag: v.and_then(|m| m.etag.as_deref()),
            if_modified_since: v.and_then(|m| m.last_modified.as_deref()),
            tls: tls.as_deref(),
            ..Request::default()
        };
        let limits = Limits {
            connect: Duration::from_secs(5),
            read: UPSTREAM_READ,
            total: UPSTREAM_READ,
            max_body: 0,
            ..Limits::default()
        };
        let text = |e: FetchError| e.to_string();
        let mut body = fetch::open(&request, &limits).map_err(text)?;
        match body.status {
            304 if v.is_some() => return Ok(Fetched::NotModified),
            200 => {}
            status => return Err(format!("upstream answered {status}")),
        }
        if body.length.is_some_and(|n| n > MAX_ASSET) {
            return Err(format!("larger than {MAX_ASSET} bytes"));
        }
        let growing = &self.download.growing;
        growing.start(body.length);
        let write = |data: &[u8]| {
            growing
                .append(data)
                .map_err(|e| format!("cannot write the cache: {e}"))
        };
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        // With a digest to match, the latest chunk waits until the next one comes (or the
        // digest matches), so no reader has the whole file before it is checked.
        let mut held: Option<Vec<u8>> = None;
        let mut have = 0u64;
        while let Some(chunk) = body.next_chunk(UPSTREAM_READ).map_err(text)? {
            have += chunk.len() as u64;
            if have > MAX_ASSET {
                return Err(format!("larger than {MAX_ASSET} bytes"));
            }
            digest.update(&chunk);
            self.cache.counters.upstream_bytes.add(chunk.len() as u64);
            match expected {
                Some(_) => {
                    if let Some(previous) = held.replace(chunk) {
                        write(&previous)?;
                    }
                }
                None => write(&chunk)?,
            }
        }
        if let Some(n) = body.length {
            if have != n {
                return Err(format!("{have} bytes of {n}"));
            }
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.finish().as_ref());
        if let Some(want) = expected {
            if sha256 != want {
                return Err(format!(
                    "SHA-256 {} is not the expected {}",
                    sha256_hex(&sha256),
                    sha256_hex(&want)
                ));
            }
        }
        if let Some(last) = held {
            write(&last)?;
        }
        growing
            .file()
            .sync_data()
            .map_err(|e| format!("cannot write the cache: {e}"))?;
        Ok(Fetched::Complete(Meta {
            etag: body.etag.clone(),
            last_modified: body.last_modified.clone(),
            fetched: now_secs(),
            url: self.url.clone(),
            sha256: Some(sha256),
        }))
    }

    /// Renames the complete file to its final name and writes its side record.
    fn keep(&self, meta: &Meta) -> io::Result<()> {
        let real = &self.download.real;
        if let Some(parent) = real.parent() {
            make_dirs(parent)?;
        }
        fs::rename(&self.partial, real)?;
        self.write_meta(meta);
        Ok(())
    }

    fn write_meta(&self, meta: &Meta) {
        let path = AssetCache::meta_path(&self.settings, &self.key);
        let written = path
            .parent()
            .map_or(Ok(()), make_dirs)
            .and_then(|()| write_atomically(&path, &meta.emit()));
        if let Err(e) = written {
            warn!("assets {}: cannot write {}: {e}", self.key, path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// An upstream on loopback: answers each connection with `body`, `pause` between its
    /// halves; counts the GETs.
    fn upstream(body: Vec<u8>, pause: Duration, cut: bool) -> (String, Arc<AtomicUsize>) {
        upstream_with(move |_| body.clone(), pause, cut)
    }

    /// As [`upstream`], answering with `reply(path)`.
    fn upstream_with(
        reply: impl Fn(&str) -> Vec<u8> + Send + 'static,
        pause: Duration,
        cut: bool,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let gets = Arc::new(AtomicUsize::new(0));
        let counted = gets.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut s = stream.unwrap();
                let mut head = [0u8; 1024];
                let n = s.read(&mut head).unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]);
                let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                let body = reply(&path);
                counted.fetch_add(1, Ordering::SeqCst);
                let half = body.len() / 2;
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = s.write_all(&body[..half]);
                std::thread::sleep(pause);
                if !cut {
                    let _ = s.write_all(&body[half..]);
                }
            }
        });
        (url, gets)
    }

    fn settings(name: &str, url: &str) -> AssetCacheSettings {
        let dir =
            std::env::temp_dir().join(format!("netbootd-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        AssetCacheSettings {
            upstreams: vec![crate::config::assets::Upstream {
                prefix: String::new(),
                url: url.into(),
                sha256sums: None,
            }],
            dir,
            max_bytes: 0,
            ttl: None,
            pinned: Vec::new(),
        }
    }

    fn read(served: &Served) -> Vec<u8> {
        let mut buf = vec![0; served.size as usize];
        served
            .content
            .read_exact_at(&mut buf, 0, Duration::from_secs(5))
            .unwrap();
        buf
    }

    #[test]
    fn readers_share_one_download_then_hit_the_cached_file() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (url, gets) = upstream(body.clone(), Duration::from_millis(200), false);
        let s = settings("share", &url);
        let cache = AssetCache::new(&Metrics::default());
        cache.prepare(&s).unwrap();
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, s) = (cache.clone(), s.clone());
                std::thread::spawn(move || {
                    let served = cache.open(&s, "d/vmlinuz", Duration::from_secs(5)).unwrap();
                    assert!(matches!(served.content, Content::Growing(_)));
                    read(&served)
                })
            })
            .collect();
        for r in readers {
            assert_eq!(r.join().unwrap(), body);
        }
        while lock(&cache.downloads).contains_key("d/vmlinuz") {
            std::thread::sleep(Duration::from_millis(10));
        }
        let hit = cache.open(&s, "d/vmlinuz", Duration::ZERO).unwrap();
        assert!(matches!(hit.content, Content::File(_)));
        assert_eq!(read(&hit), body);
        assert_eq!(gets.load(Ordering::SeqCst), 1);
        assert_eq!(cache.counters.misses.get(), 1);
        assert_eq!(cache.counters.hits.get(), 1);
        assert!(cache
            .open(&s, ".netbootd-meta/d/vmlinuz", Duration::ZERO)
            .is_err());
        assert!(fs::read_dir(s.dir.join(PARTIAL_DIR))
            .unwrap()
            .next()
            .is_none());
        let _ = fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn a_cut_download_is_not_cached_and_its_readers_get_the_error() {
        let (url, _) = upstream(vec![7; 100_000], Duration::from_millis(50), true);
        let s = settings("cut", &url);
        let cache = AssetCache::new(&Metrics::default());
        let served = cache.open(&s, "initrd", Duration::from_secs(5)).unwrap();
        let Content::Growing(g) = &served.content else {
            panic!()
        };
        let mut buf = vec![0; 100_000];
        assert!(g
            .read_exact_at(&mut buf, 0, Duration::from_secs(5))
            .is_err());
        while lock(&cache.downloads).contains_key("initrd") {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!s.dir.join("initrd").exists());
        match cache.open(&s, "initrd", Duration::ZERO) {
            Err(Refusal::Upstream(why)) => assert!(why.contains("bytes"), "{why}"),
            other => panic!("{other:?}"),
        }
        let _ = fs::remove_dir_all(&s.dir);
    }

    fn wait_for_download(cache: &AssetCache, key: &str) {
        while lock(&cache.downloads).contains_key(key) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn digest_of(data: &[u8]) -> Sha256 {
        let mut d = [0; 32];
        d.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
        d
    }

    #[test]
    fn a_pinned_digest_holds_the_last_bytes_until_it_matches() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let (url, gets) = upstream(body.clone(), Duration::from_millis(100), false);
        let mut s = settings("pinned", &url);
        s.pinned = vec![("good".into(), digest_of(&body)), ("bad".into(), [1; 32])];
        let cache = AssetCache::new(&Metrics::default());
        cache.prepare(&s).unwrap();

        let good = cache.open(&s, "good", Duration::from_secs(5)).unwrap();
        assert_eq!(read(&good), body);
        wait_for_download(&cache, "good");
        assert_eq!(
            AssetCache::read_meta(&s, "good").sha256,
            Some(digest_of(&body))
        );
        let hit = cache.open(&s, "good", Duration::ZERO).unwrap();
        assert!(matches!(hit.content, Content::File(_)));

        let bad = cache.open(&s, "bad", Duration::from_secs(5)).unwrap();
        let Content::Growing(g) = &bad.content else {
            panic!()
        };
        // Everything but the last chunk arrives; the whole file never does.
        let mut buf = vec![0; body.len()];
        let err = g
            .read_exact_at(&mut buf, 0, Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("not the expected"), "{err}");
        wait_for_download(&cache, "bad");
        assert!(!s.dir.join("bad").exists());

        // A new pin makes the cached copy stale: it is fetched again.
        s.pinned[0].1 = [2; 32];
        let again = cache.open(&s, "good", Duration::from_secs(5)).unwrap();
        assert!(matches!(again.content, Content::Growing(_)));
        wait_for_download(&cache, "good");
        assert_eq!(gets.load(Ordering::SeqCst), 3);
        // It did not match the new pin: the old copy stays, unserved while the pin differs.
        assert!(s.dir.join("good").exists());
        let _ = fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn the_upstreams_sums_file_must_list_each_file_with_its_digest() {
        let body = vec![42u8; 50_000];
        let sums = format!(
            "{}  ./img/linux\n{}  ./img/initrd\n",
            sha256_hex(&digest_of(&body)),
            "00".repeat(32)
        );
        let (url, gets) = upstream_with(
            move |path| match path {
                "/d/SHA256SUMS" => sums.clone().into_bytes(),
                _ => body.clone(),
            },
            Duration::ZERO,
            false,
        );
        let mut s = settings("sums", &format!("{url}d/"));
        s.upstreams[0].sha256sums = Some("SHA256SUMS".into());
        let cache = AssetCache::new(&Metrics::default());
        cache.prepare(&s).unwrap();
        let linux = cache.open(&s, "img/linux", Duration::from_secs(5)).unwrap();
        assert_eq!(read(&linux), vec![42u8; 50_000]);
        wait_for_download(&cache, "img/linux");
        assert!(s.dir.join("img/linux").exists());
        for (key, why) in [
            ("img/initrd", "not the expected"),
            ("img/other", "not listed"),
        ] {
            match cache.open(&s, key, Duration::from_secs(5)) {
                Ok(served) => {
                    let mut buf = vec![0; served.size as usize];
                    let err = served
                        .content
                        .read_exact_at(&mut buf, 0, Duration::from_secs(5))
                        .unwrap_err();
                    assert!(err.to_string().contains(why), "{key}: {err}");
                }
                Err(Refusal::Upstream(e)) => assert!(e.contains(why), "{key}: {e}"),
                Err(other) => panic!("{key}: {other:?}"),
            }
            wait_for_download(&cache, key);
            assert!(!s.dir.join(key).exists(), "{key}");
        }
        // The sums file once per download, the files listed once each; the unlisted one never.
        assert_eq!(gets.load(Ordering::SeqCst), 5);
        let _ = fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn eviction_keeps_the_cache_under_its_limit() {
        let s = settings("evict", "http://127.0.0.1:9/");
        let cache = AssetCache::new(&Metrics::default());
        fs::create_dir_all(&s.dir).unwrap();
        for (name, age) in [("old", 300), ("mid", 200), ("new", 100)] {
            let path = s.dir.join(name);
            fs::write(&path, vec![0; 1000]).unwrap();
            let t = SystemTime::now() - Duration::from_secs(age);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                .unwrap();
        }
        let _held = cache.hold("old");
        // An ISO source counts and is evicted like any file; a partial file does neither.
        fs::create_dir_all(s.dir.join(".netbootd-iso")).unwrap();
        fs::write(s.dir.join(".netbootd-iso/hook.iso"), vec![0; 1000]).unwrap();
        let old_iso = SystemTime::now() - Duration::from_secs(400);
        std::fs::File::options()
            .write(true)
            .open(s.dir.join(".netbootd-iso/hook.iso"))
            .unwrap()
            .set_times(
                fs::FileTimes::new()
                    .set_accessed(old_iso)
                    .set_modified(old_iso),
            )
            .unwrap();
        fs::create_dir_all(s.dir.join(PARTIAL_DIR)).unwrap();
        fs::write(s.dir.join(PARTIAL_DIR).join("big"), vec![0; 5000]).unwrap();
        let s = AssetCacheSettings {
            max_bytes: 2000,
            ..s
        };
        cache.evict(&s);
        assert!(!s.dir.join(".netbootd-iso/hook.iso").exists());
        assert!(s.dir.join("old").exists() && !s.dir.join("mid").exists());
        assert!(s.dir.join("new").exists() && s.dir.join(PARTIAL_DIR).join("big").exists());
        assert!(AssetCache::remove(&s, ".netbootd-meta/new").is_err());
        let _ = fs::remove_dir_all(&s.dir);
    }
}
