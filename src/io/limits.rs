//! Process limits and counts: the soft limit on open files is raised to the hard one at
//! start, because the HTTP service keeps every connection that waits for a request head open
//! in the poll loop (up to 4096) and the usual soft limit is 1024; the thread count for
//! `/healthcheck`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (before, after) = raise_open_files().unwrap();
        assert!(after >= before);
        let (again, same) = raise_open_files().unwrap();
        assert_eq!((again, same), (after, after));
    }
}
