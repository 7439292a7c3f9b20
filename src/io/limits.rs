//! Process limits and counts: the soft limit on open files is raised to the hard one at
//! start, because the HTTP service keeps every connection that waits for a request head open
//! in the poll loop (up to 4096) and the usual soft limit is 1024; the thread count for
//! `/healthcheck`; the CPU priority of threads that send large files ([`BulkPriority`]).

use nix::libc;

/// Raises the soft open-file limit to the hard limit; returns (before, after).
#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
pub fn raise_open_files() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct passed, of the right type.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur as u64;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur as u64))
}

/// glibc's allocator gives each thread that allocates its own arena (up to eight per core) and
/// keeps what is freed there: after a burst of TFTP transfers or HTTP workers the heap stayed
/// several megabytes above idle. Two arenas are plenty for netbootd's short-lived threads.
/// (musl's allocator returns freed memory by itself: nothing to do there.)
pub fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator tunable; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// After a burst (the last TFTP transfer or HTTP worker has ended): hands memory the
/// allocator keeps free back to the system (glibc's `malloc_trim`; nothing on musl).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The process's threads now (from `/proc/self/status`), for `/healthcheck`'s `goroutines`
/// (Smee's field name, so its probes and dashboards keep working). 0 when it cannot be read.
pub fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Threads:"))?;
            line["Threads:".len()..].trim().parse().ok()
        })
        .unwrap_or(0)
}

/// Whether threads may lower their CPU priority and take it back ([`allow_bulk_priority`]).
static BULK_PRIORITY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets threads that send large files run at the lowest CPU priority and return to normal
/// after, when the process may take a priority back: RLIMIT_NICE allows nice 0 (the soft
/// limit is raised here when the hard one allows; systemd's `LimitNICE=+0` sets both), or it
/// keeps CAP_SYS_NICE (running as root).
/// Called after privileges are dropped.
/// `false`: every thread keeps the normal priority.
#[allow(clippy::unnecessary_cast)]
pub fn allow_bulk_priority() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct passed, of the right type.
    if unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } == 0
        && (limit.rlim_cur as u64) < 20
        && limit.rlim_max as u64 >= 20
    {
        limit.rlim_cur = 20;
        unsafe { libc::setrlimit(libc::RLIMIT_NICE, &limit) };
    }
    const CAP_SYS_NICE: u32 = 23;
    let allowed = (unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } == 0
        && limit.rlim_cur as u64 >= 20)
        || std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .is_some_and(|caps| caps & (1 << CAP_SYS_NICE) != 0)
        });
    BULK_PRIORITY.store(allowed, std::sync::atomic::Ordering::Relaxed);
    allowed
}

/// While alive, the calling thread runs at nice 19: a bulk transfer (sendfile, little CPU of
/// its own) yields the CPU to the poll loop, DHCP, TFTP and scripts, and to the other
/// programs on the host. Left at the normal priority when that could not be undone.
pub struct BulkPriority(bool);

impl BulkPriority {
    pub fn enter() -> BulkPriority {
        BulkPriority(
            BULK_PRIORITY.load(std::sync::atomic::Ordering::Relaxed) && set_thread_nice(19),
        )
    }
}

impl Drop for BulkPriority {
    fn drop(&mut self) {
        if self.0 {
            set_thread_nice(0);
        }
    }
}

fn set_thread_nice(nice: i32) -> bool {
    // SAFETY: gettid has no arguments; setpriority on this thread's id changes only it.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_nice() -> i32 {
        // SAFETY: as in set_thread_nice; errno is not needed for a value 0..19.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (before, after) = raise_open_files().unwrap();
        assert!(after >= before);
        let (again, same) = raise_open_files().unwrap();
        assert_eq!((again, same), (after, after));
    }

    #[test]
    fn bulk_transfers_run_at_nice_19_and_come_back_when_allowed() {
        let allowed = allow_bulk_priority();
        std::thread::spawn(move || {
            assert_eq!(thread_nice(), 0);
            {
                let _bulk = BulkPriority::enter();
                assert_eq!(thread_nice(), if allowed { 19 } else { 0 });
            }
            assert_eq!(thread_nice(), 0);
        })
        .join()
        .unwrap();
        // The probe left this thread alone.
        assert_eq!(thread_nice(), 0);
    }
}
