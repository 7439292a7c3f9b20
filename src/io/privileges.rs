//! Giving up privileges once every socket is bound: the packet socket, ports 67, 69, 80, 514
//! and 4011 stay open, and the process goes on unprivileged.
//!
//! - Started as root: setuid(2) to an unprivileged user clears the permitted, effective and
//!   ambient capability sets (no SECBIT_KEEP_CAPS is set); a check that setuid(0) now fails
//!   proves root is gone.
//! - Started as a user with capabilities (systemd's `AmbientCapabilities=`): capset(2) empties
//!   every set, so CAP_NET_RAW and CAP_NET_BIND_SERVICE last only until the sockets exist.

use nix::unistd::{getuid, setgid, setgroups, setuid, Gid, Group, Uid, User};

/// What [`drop_privileges`] did, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not root to begin with; `dropped_capabilities` when it had some and gave them up.
    NotRoot {
        uid: u32,
        dropped_capabilities: bool,
    },
    /// `--user root`: stays root on purpose.
    StayedRoot,
    /// `--user auto` and no `netbootd` user on this system.
    NoUser,
    Dropped {
        user: String,
        uid: u32,
        gid: u32,
    },
}

/// The user `auto` picks when it exists.
pub const DEFAULT_USER: &str = "netbootd";

/// Switches to `user` (`None`: [`DEFAULT_USER`] if it exists) and `group` (default: the user's
/// primary group), with no supplementary groups. An explicitly named user or group that does
/// not exist is an error: the operator asked not to run as root.
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<Outcome, String> {
    let uid = getuid();
    if !uid.is_root() {
        let dropped_capabilities =
            drop_capabilities().map_err(|e| format!("cannot drop capabilities: {e}"))?;
        return Ok(Outcome::NotRoot {
            uid: uid.as_raw(),
            dropped_capabilities,
        });
    }
    let found = match user {
        Some("root") => return Ok(Outcome::StayedRoot),
        Some(name) => lookup_user(name)?.ok_or_else(|| format!("no user {name:?}"))?,
        None => match lookup_user(DEFAULT_USER)? {
            Some(u) => u,
            None => return Ok(Outcome::NoUser),
        },
    };
    let gid = match group {
        Some(name) => {
            Group::from_name(name)
                .map_err(|e| format!("looking up group {name:?}: {e}"))?
                .ok_or_else(|| format!("no group {name:?}"))?
                .gid
        }
        None => found.gid,
    };
    switch(found.uid, gid).map_err(|e| format!("switching to user {}: {e}", found.name))?;
    Ok(Outcome::Dropped {
        user: found.name,
        uid: found.uid.as_raw(),
        gid: gid.as_raw(),
    })
}

/// Started as root and about to become another user: gives `dir` and what is below it to
/// that user (and its primary group; the owner's rights are what the process needs), so the
/// process can still write there (the asset cache). Nothing to do when staying root or not
/// root.
pub fn hand_over(dir: &std::path::Path, user: Option<&str>) -> Result<(), String> {
    if !getuid().is_root() || user == Some("root") {
        return Ok(());
    }
    let found = match lookup_user(user.unwrap_or(DEFAULT_USER))? {
        Some(u) => u,
        None => return Ok(()), // drop_privileges says why, or stays root
    };
    fn walk(path: &std::path::Path, uid: Uid, gid: Gid) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))?;
        if path.symlink_metadata()?.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(dir, found.uid, found.gid)
        .map_err(|e| format!("giving {} to {}: {e}", dir.display(), found.name))
}

fn lookup_user(name: &str) -> Result<Option<User>, String> {
    User::from_name(name).map_err(|e| format!("looking up user {name:?}: {e}"))
}

fn switch(uid: Uid, gid: Gid) -> nix::Result<()> {
    setgroups(&[gid])?;
    setgid(gid)?;
    setuid(uid)?;
    // Root must be gone for good.
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(nix::errno::Errno::EPERM);
    }
    Ok(())
}

/// Empties the permitted, effective and inheritable sets (the ambient set follows the
/// permitted one). Returns whether there was anything to drop.
fn drop_capabilities() -> std::io::Result<bool> {
    use nix::libc;
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and data are the layouts capget(2)/capset(2) take for version 3.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if got != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if data
        .iter()
        .all(|d| d.effective == 0 && d.permitted == 0 && d.inheritable == 0)
    {
        return Ok(false);
    }
    let empty = [Data::default(); 2];
    // SAFETY: as above; the kernel only reads `empty`.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, empty.as_ptr()) };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}
