//! Notices when a file has changed, by comparing `stat(2)` signatures on a timer rather than
//! with inotify: it sees in-place rewrites (size, mtime, ctime), atomic renames and symlink
//! swaps such as a Kubernetes ConfigMap's `..data` (the inode the path resolves to) alike,
//! and needs no extra descriptor. A change is reported once the signature has held still for
//! one interval, so a file caught half-written is not loaded.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the file is looked at; a change is reported within two intervals.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What `stat` says about the file the path resolves to (`None`: it cannot be stat'ed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature(Option<(u64, u64, u64, i64, i64, i64, i64)>);

impl Signature {
    pub fn of(path: &Path) -> Signature {
        Signature(std::fs::metadata(path).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        }))
    }
}

#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    /// The signature of what was last loaded.
    loaded: Signature,
    /// The signature seen at the last check.
    seen: Signature,
    next_check: Instant,
}

impl FileWatch {
    /// Starts watching; `loaded` is the signature taken just before the current copy was read.
    pub fn new(path: &Path, loaded: Signature, now: Instant) -> FileWatch {
        FileWatch {
            path: path.to_path_buf(),
            loaded,
            seen: loaded,
            next_check: now + CHECK_INTERVAL,
        }
    }

    pub fn next_deadline(&self) -> Instant {
        self.next_check
    }

    /// At or after the deadline: returns the new signature when the file changed and has
    /// held still since the previous check. The caller loads the file and calls [`Self::loaded`].
    pub fn poll(&mut self, now: Instant) -> Option<Signature> {
        if now < self.next_check {
            return None;
        }
        self.next_check = now + CHECK_INTERVAL;
        self.check(Signature::of(&self.path))
    }

    /// The decision, apart from the `stat` call.
    fn check(&mut self, current: Signature) -> Option<Signature> {
        let settled = current == self.seen;
        self.seen = current;
        (settled && current != self.loaded).then_some(current)
    }

    /// Records what was loaded (or attempted: a bad file is not retried until it changes).
    pub fn loaded(&mut self, signature: Signature) {
        self.loaded = signature;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u64) -> Signature {
        Signature(Some((1, n, 10, 0, 0, 0, 0)))
    }

    #[test]
    fn a_change_is_reported_once_it_holds_still() {
        let t0 = Instant::now();
        let mut w = FileWatch::new(Path::new("/x"), sig(1), t0);
        assert_eq!(w.check(sig(1)), None);
        assert_eq!(w.check(sig(2)), None, "first sight of a change waits");
        assert_eq!(w.check(sig(3)), None, "still moving");
        assert_eq!(w.check(sig(3)), Some(sig(3)));
        w.loaded(sig(3));
        assert_eq!(w.check(sig(3)), None);
        assert_eq!(w.check(Signature(None)), None);
        assert_eq!(
            w.check(Signature(None)),
            Some(Signature(None)),
            "a vanished file is reported too"
        );
    }

    #[test]
    fn polling_respects_the_deadline() {
        let t0 = Instant::now();
        let mut w = FileWatch::new(Path::new("/nonexistent/x"), sig(1), t0);
        assert_eq!(w.next_deadline(), t0 + CHECK_INTERVAL);
        assert_eq!(w.poll(t0), None);
        assert_eq!(w.poll(t0 + CHECK_INTERVAL), None);
        assert_eq!(w.next_deadline(), t0 + 2 * CHECK_INTERVAL);
        assert_eq!(w.poll(t0 + 2 * CHECK_INTERVAL), Some(Signature(None)));
    }
}
