//! Notices when a file has changed. The truth is a `stat(2)` signature of what the path
//! resolves to (device, inode, size, mtime, ctime), so in-place rewrites, atomic renames and
//! symlink swaps such as a Kubernetes ConfigMap's `..data` all count. What prompts a look is
//! inotify on the file's directory (and on its real directory when it is reached through a
//! symlink): an idle server is not woken at all. Where inotify cannot be had (no kernel
//! support, the watch limit reached, a directory that is missing) the path is looked at every
//! [`CHECK_INTERVAL`] instead. A change is reported once the signature has held still between
//! two looks, so a file caught half-written is not loaded, but never later than [`MAX_DELAY`]
//! after it was first seen, so a file rewritten without pause is still picked up.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::debug;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Without inotify: how often the file is looked at.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// With inotify: how long after an event the file is looked at (and looked at again).
pub const SETTLE: Duration = Duration::from_millis(100);
/// A change that never holds still is reported this long after it was first seen.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// What `stat` says about the file the path resolves to (`None`: it cannot be stat'ed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// The signature seen at the last look.
    seen: Signature,
    /// When a change not yet loaded was first seen.
    changing_since: Option<Instant>,
    next_check: Option<Instant>,
    notify: Option<Inotify>,
}

/// Events in a watched directory that may change what the path resolves to.
fn interesting() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
}

/// An inotify instance watching the directories that decide what `path` is.
fn watch_directories(path: &Path) -> nix::Result<Inotify> {
    let notify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    notify.add_watch(&parent(path), interesting())?;
    if let Ok(real) = path.canonicalize() {
        // Reached through a symlink: a rewrite of the target happens in its own directory.
        if parent(&real) != parent(path) {
            let _ = notify.add_watch(&parent(&real), interesting());
        }
    }
    Ok(notify)
}

impl FileWatch {
    /// Starts watching; `loaded` is the signature taken just before the current copy was read.
    pub fn new(path: &Path, loaded: Signature, now: Instant) -> FileWatch {
        let mut watch = FileWatch {
            path: path.to_path_buf(),
            loaded,
            seen: loaded,
            changing_since: None,
            next_check: None,
            notify: None,
        };
        watch.arm(now);
        watch
    }

    /// (Re)creates the inotify watches, or falls back to looking on a timer.
    fn arm(&mut self, now: Instant) {
        match watch_directories(&self.path) {
            Ok(notify) => self.notify = Some(notify),
            Err(e) => {
                debug!(
                    "watching {}: no inotify ({e}); looking every {CHECK_INTERVAL:?}",
                    self.path.display()
                );
                self.notify = None;
                self.next_check = Some(now + CHECK_INTERVAL);
            }
        }
    }

    /// True when inotify prompts the looks (false: a timer does).
    pub fn uses_inotify(&self) -> bool {
        self.notify.is_some()
    }

    /// The inotify descriptor to poll, if there is one.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.notify.as_ref().map(|n| n.as_fd())
    }

    /// When [`Self::poll`] wants to be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_check
    }

    /// The inotify descriptor is readable: something in a watched directory changed.
    pub fn on_readable(&mut self, now: Instant) {
        let Some(notify) = &self.notify else { return };
        let mut rearm = false;
        while let Ok(events) = notify.read_events() {
            if events.is_empty() {
                break;
            }
            // A watched directory went away, or events were lost: watch anew.
            rearm |= events.iter().any(|e| {
                e.mask.intersects(
                    AddWatchFlags::IN_IGNORED
                        | AddWatchFlags::IN_Q_OVERFLOW
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF,
                )
            });
        }
        if rearm {
            self.arm(now);
        }
        self.next_check.get_or_insert(now + SETTLE);
    }

    /// At or after the deadline: returns the new signature when the file changed and has held
    /// still since the previous look (or has kept changing for [`MAX_DELAY`]). The caller
    /// loads the file and calls [`Self::loaded`].
    pub fn poll(&mut self, now: Instant) -> Option<Signature> {
        if self.next_check.is_none_or(|at| now < at) {
            return None;
        }
        let current = Signature::of(&self.path);
        let report = self.check(current, now);
        let unsettled = report.is_none() && current != self.loaded;
        self.next_check = match (&self.notify, unsettled) {
            (None, _) => Some(now + CHECK_INTERVAL),
            (Some(_), true) => Some(now + SETTLE),
            (Some(_), false) => None,
        };
        report
    }

    /// The decision, apart from the `stat` call.
    fn check(&mut self, current: Signature, now: Instant) -> Option<Signature> {
        let settled = current == self.seen;
        self.seen = current;
        if current == self.loaded {
            self.changing_since = None;
            return None;
        }
        let since = *self.changing_since.get_or_insert(now);
        (settled || now.duration_since(since) >= MAX_DELAY).then_some(current)
    }

    /// Records what was loaded (or attempted: a bad file is not retried until it changes).
    pub fn loaded(&mut self, signature: Signature) {
        self.loaded = signature;
        self.changing_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u64) -> Signature {
        Signature(Some((1, n, 10, 0, 0, 0, 0)))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_change_is_reported_once_it_holds_still() {
        let t0 = Instant::now();
        let mut w = FileWatch::new(Path::new("/nonexistent/x"), sig(1), t0);
        assert_eq!(w.check(sig(1), t0), None);
        assert_eq!(w.check(sig(2), t0), None, "first sight of a change waits");
        assert_eq!(w.check(sig(3), t0), None, "still moving");
        assert_eq!(w.check(sig(3), t0), Some(sig(3)));
        w.loaded(sig(3));
        assert_eq!(w.check(sig(3), t0), None);
        assert_eq!(w.check(Signature(None), t0), None);
        assert_eq!(
            w.check(Signature(None), t0),
            Some(Signature(None)),
            "a vanished file is reported too"
        );
    }

    #[test]
    fn a_file_that_never_holds_still_is_reported_after_the_maximum_delay() {
        let t0 = Instant::now();
        let mut w = FileWatch::new(Path::new("/nonexistent/x"), sig(0), t0);
        let mut reported = None;
        for n in 1..100u64 {
            let now = t0 + ms(100 * n);
            if let Some(s) = w.check(sig(n), now) {
                reported = Some((n, s));
                break;
            }
        }
        // First seen at 100 ms; reported at the first look at or past 2.1 s.
        assert_eq!(reported, Some((21, sig(21))));
    }

    #[test]
    fn without_inotify_the_path_is_looked_at_on_a_timer() {
        let t0 = Instant::now();
        // A directory that does not exist cannot be watched: the timer takes over.
        let mut w = FileWatch::new(Path::new("/nonexistent/x"), sig(1), t0);
        assert!(!w.uses_inotify());
        assert_eq!(w.next_deadline(), Some(t0 + CHECK_INTERVAL));
        assert_eq!(w.poll(t0), None);
        assert_eq!(w.poll(t0 + CHECK_INTERVAL), None);
        assert_eq!(w.next_deadline(), Some(t0 + 2 * CHECK_INTERVAL));
        assert_eq!(w.poll(t0 + 2 * CHECK_INTERVAL), Some(Signature(None)));
    }

    /// With inotify, an idle watch has no deadline at all; a rewrite wakes it through its
    /// descriptor, and the change is reported after it settles.
    #[test]
    fn inotify_wakes_the_watch_only_when_the_directory_changes() {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let dir = std::env::temp_dir().join(format!("netbootd-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hw.yaml");
        std::fs::write(&path, "a").unwrap();
        let t0 = Instant::now();
        let mut w = FileWatch::new(&path, Signature::of(&path), t0);
        assert!(w.uses_inotify());
        assert_eq!(w.next_deadline(), None, "idle: no timer");
        let tmp = dir.join("hw.yaml.tmp");
        std::fs::write(&tmp, "bb").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let mut fds = [PollFd::new(w.fd().unwrap(), PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, PollTimeout::from(2000u16)), Ok(1));
        let now = Instant::now();
        w.on_readable(now);
        assert_eq!(w.next_deadline(), Some(now + SETTLE));
        assert_eq!(w.poll(now + SETTLE), None, "first look: the change is new");
        let reported = w.poll(now + SETTLE * 2).expect("held still: reported");
        assert_eq!(reported, Signature::of(&path));
        w.loaded(reported);
        assert_eq!(w.next_deadline(), None, "idle again");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
