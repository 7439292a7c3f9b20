//! Reading the operator's files: the hardware file and the config file, each with a size cap,
//! as UTF-8 text, with errors that name the file; and opening served files (TFTP, HTTP) so
//! that no name or symlink reaches outside the served directory ([`open_beneath`]), and sending
//! them into a socket without copying ([`send_file`]). TFTP and HTTP open what they serve
//! through [`open_served`] alike.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;

use std::path::PathBuf;
use std::sync::Arc;

use crate::inventory::{self, Format, Loaded, Problem, Profiles};
use crate::policy::served::{Links, Refusal};

/// Largest hardware file read (a 10,000-machine Smee file is about 2.5 MB).
pub const MAX_HARDWARE_FILE_BYTES: u64 = 64 << 20;

/// Largest config file read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// The whole file as text, refusing files over `max_bytes` and text that is not UTF-8.
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("larger than {max_bytes} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// Reads and loads a hardware file (YAML unless it ends in `.toml`).
pub fn load_inventory(path: &Path, profiles: &Profiles) -> Result<Loaded, Vec<Problem>> {
    let text = read_inventory(path)?;
    inventory::load_str(
        &text,
        Format::for_path(path),
        &path.display().to_string(),
        profiles,
    )
}

/// A hardware file's text, or the problem of reading it.
pub fn read_inventory(path: &Path) -> Result<String, Vec<Problem>> {
    read_text(path, MAX_HARDWARE_FILE_BYTES).map_err(|message| {
        vec![Problem {
            file: path.display().to_string(),
            line: 0,
            mac: None,
            field: None,
            message,
        }]
    })
}

/// The name of the last good copy of a hardware file in the state directory (keeping the
/// format's extension, so that it loads the same way).
pub fn snapshot_path(state_dir: &Path, hardware: &Path) -> PathBuf {
    let name = match Format::for_path(hardware) {
        Format::Toml => "inventory.last-good.toml",
        Format::Yaml => "inventory.last-good.yaml",
    };
    state_dir.join(name)
}

/// Writes `text` to `path` so that a crash at any moment leaves either the old file or the new
/// one, never a part: a temporary file in the same directory, synced, renamed over the old one,
/// and the directory synced.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("snapshot");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `dir` and its missing parents (a smaller `create_dir_all`: std's is a few KiB of
/// code on every target).
pub fn make_dirs(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) => make_dirs(parent)?,
                None => return Err(e),
            }
            fs::create_dir(dir).or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })
        }
        Err(e) => Err(e),
    }
}

/// What a served file's bytes come from: the open file, or bytes held in memory (a file
/// converted for netascii; later, an iPXE binary patched in memory). Both services serve
/// either, ranges included.
#[derive(Debug)]
pub enum Content {
    File(File),
    Bytes(Arc<[u8]>),
    /// An asset still arriving from its upstream: reads wait for their bytes.
    Growing(Arc<crate::io::growing::Growing>),
}

impl Content {
    /// Reads `buf.len()` bytes at `offset` (waiting at most `wait` for each arrival of a file
    /// still growing).
    pub fn read_exact_at(
        &self,
        buf: &mut [u8],
        offset: u64,
        wait: std::time::Duration,
    ) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        match self {
            Content::File(f) => f.read_exact_at(buf, offset),
            Content::Growing(g) => g.read_exact_at(buf, offset, wait),
            Content::Bytes(b) => {
                let part = usize::try_from(offset)
                    .ok()
                    .and_then(|start| b.get(start..start.checked_add(buf.len())?))
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(part);
                Ok(())
            }
        }
    }
}

/// Something kept alive while a file is served (the asset cache's mark that the file is in
/// use, so it is never evicted under a client).
pub struct Hold(pub Box<dyn Send + Sync>);

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold")
    }
}

/// A file opened for serving, with what the protocols need to know of it.
#[derive(Debug)]
pub struct Served {
    pub content: Content,
    pub size: u64,
    /// Where it really is (for the log and the content type).
    pub real: PathBuf,
    /// Last modification, seconds since the epoch, when known.
    pub modified: Option<u64>,
    pub hold: Option<Hold>,
}

/// Opens `relative` below `root` for TFTP or HTTP: the one way both services open what they
/// serve, so both refuse the same names for the same reasons.
pub fn open_served(root: &Path, relative: &str, links: Links) -> Result<Served, Refusal> {
    let (file, size, real) = open_beneath(root, relative, links)?;
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Ok(Served {
        content: Content::File(file),
        size,
        real,
        modified,
        hold: None,
    })
}

impl Served {
    /// The whole content in memory, through `convert` (netascii), refusing more than `max`
    /// bytes before conversion.
    pub fn converted(
        self,
        max: u64,
        convert: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<Served, Refusal> {
        if self.size > max {
            return Err(Refusal::Unreadable(format!(
                "larger than {max} bytes for this mode"
            )));
        }
        let converted: Vec<u8> = match &self.content {
            Content::Bytes(b) => convert(b),
            Content::File(f) => {
                let mut data = Vec::new();
                f.take(max)
                    .read_to_end(&mut data)
                    .map_err(|e| Refusal::Unreadable(e.to_string()))?;
                convert(&data)
            }
            Content::Growing(_) => return Err(Refusal::Fetching),
        };
        Ok(Served {
            size: converted.len() as u64,
            content: Content::Bytes(converted.into()),
            ..self
        })
    }
}

/// An open regular file below `root`, its size, and its real path.
/// `relative` must already be free of `..` (see `policy::tftp::interpret_name`); symlinks are
/// followed and the result must still be inside `root` (but see [`Links`]). Opened
/// non-blocking, so a FIFO cannot hang the caller.
///
/// The kernel resolves the name beneath `root` in one step (`openat2` with `RESOLVE_BENEATH`
/// and `RESOLVE_NO_MAGICLINKS`, Linux 5.6+), so a symlink swapped in while the name is being
/// resolved cannot lead out. On older kernels (or where a sandbox refuses `openat2`) the name
/// is canonicalized and checked first, then opened: that check has a window between the two
/// steps, which only an operator who lets others write into the served directory exposes.
pub fn open_beneath(
    root: &Path,
    relative: &str,
    links: Links,
) -> Result<(std::fs::File, u64, std::path::PathBuf), Refusal> {
    let trusted = links == Links::TopLevelTrusted && !relative.contains('/');
    let file = if trusted {
        // A link directly in the root is the operator's and may point anywhere.
        open_read_only(&root.join(relative))?
    } else {
        match open_resolving_beneath(root, relative) {
            Ok(file) => file,
            Err(Beneath::Unsupported) => return open_beneath_by_path(root, relative),
            Err(Beneath::Refused(e)) => return Err(e),
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Refusal::Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    let real = real_path(&file, &root.join(relative));
    Ok((file, meta.len(), real))
}

/// What an `openat2` attempt says.
enum Beneath {
    /// The kernel has no `openat2`, or a sandbox forbids it: check by path instead.
    Unsupported,
    Refused(Refusal),
}

/// Maps an open's error: missing names (and loops, and a file used as a directory) are
/// "not found"; the rest are I/O errors.
fn open_error(e: io::Error) -> Refusal {
    use nix::libc::{ELOOP, ENOTDIR};
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Refusal::NotFound,
        _ if matches!(e.raw_os_error(), Some(ENOTDIR) | Some(ELOOP)) => Refusal::NotFound,
        _ => Refusal::Unreadable(e.to_string()),
    }
}

fn open_read_only(path: &Path) -> Result<File, Refusal> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(open_error)
}

/// `openat2(root, relative, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn open_resolving_beneath(root: &Path, relative: &str) -> Result<File, Beneath> {
    use nix::libc;
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    let dir = File::open(root).map_err(|e| Beneath::Refused(open_error(e)))?;
    let name = CString::new(relative.trim_start_matches('/'))
        .map_err(|_| Beneath::Refused(Refusal::NotFound))?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: a valid directory descriptor, a NUL-terminated name and an `open_how` of
        // the size passed; the kernel returns a new descriptor that nothing else owns.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            return Ok(unsafe { File::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
            Some(libc::ENOSYS) | Some(libc::EPERM) => Beneath::Unsupported,
            // The name (or a link on the way) leads out of the root.
            Some(libc::EXDEV) => Beneath::Refused(Refusal::Outside),
            _ => Beneath::Refused(open_error(e)),
        });
    }
}

/// The fallback for kernels without `openat2`: canonicalize, check, open.
fn open_beneath_by_path(
    root: &Path,
    relative: &str,
) -> Result<(File, u64, std::path::PathBuf), Refusal> {
    let root = root.canonicalize().map_err(open_error)?;
    let real = root.join(relative).canonicalize().map_err(open_error)?;
    if !real.starts_with(&root) {
        return Err(Refusal::Outside);
    }
    let file = open_read_only(&real)?;
    let meta = file
        .metadata()
        .map_err(|e| Refusal::Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok((file, meta.len(), real))
}

/// Where the open file really is (for the log and the content type), as the kernel names it;
/// `fallback` where `/proc` is not mounted.
fn real_path(file: &File, fallback: &Path) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .unwrap_or_else(|_| fallback.to_path_buf())
}

/// Sends `len` bytes of `file` from `offset` into `socket` with sendfile(2): no copy through
/// user space, and the file's own position is left alone. A file that ends early is an
/// `UnexpectedEof` error (the client was promised `len` bytes); a socket's send timeout is
/// `TimedOut`.
pub fn send_file(socket: &impl AsFd, file: &File, offset: u64, len: u64) -> io::Result<()> {
    /// Linux sends at most about 2 GiB per call.
    const MAX_CHUNK: u64 = 1 << 30;
    let mut position = i64::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    let mut left = len;
    while left > 0 {
        let chunk = left.min(MAX_CHUNK) as usize;
        match nix::sys::sendfile::sendfile64(
            socket.as_fd(),
            file.as_fd(),
            Some(&mut position),
            chunk,
        ) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank")),
            Ok(n) => left -= n as u64,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_files_stay_inside_their_root() {
        let base = std::env::temp_dir().join(format!("netbootd-beneath-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "abc").unwrap();
        std::fs::write(base.join("secret"), "x").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/f", root.join("in")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("sub/out")).unwrap();
        let open = |name| open_beneath(&root, name, Links::Inside);
        let (_, size, real) = open("sub/f").unwrap();
        assert_eq!(size, 3);
        assert!(real.ends_with("sub/f"));
        assert!(open("in").is_ok());
        assert!(matches!(open("out"), Err(Refusal::Outside)));
        assert!(matches!(open("sub"), Err(Refusal::NotFound)));
        assert!(matches!(open("nope"), Err(Refusal::NotFound)));
        assert!(matches!(open("sub/f/x"), Err(Refusal::NotFound)));
        // Links directly in a trusted root (Debian's iPXE directory) may lead out; deeper not.
        let trusted = |name| open_beneath(&root, name, Links::TopLevelTrusted);
        assert!(trusted("out").is_ok());
        assert!(matches!(trusted("sub/out"), Err(Refusal::Outside)));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_fallback_without_openat2_refuses_the_same_names() {
        let base = std::env::temp_dir().join(format!("netbootd-fallback-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "abc").unwrap();
        std::fs::write(base.join("secret"), "x").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("out")).unwrap();
        assert_eq!(open_beneath_by_path(&root, "sub/f").unwrap().1, 3);
        assert!(matches!(
            open_beneath_by_path(&root, "out"),
            Err(Refusal::Outside)
        ));
        assert!(matches!(
            open_beneath_by_path(&root, "sub"),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            open_beneath_by_path(&root, "no"),
            Err(Refusal::NotFound)
        ));
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A directory on the served path is swapped for a symlink to an outside directory (and
    /// back) as fast as the machine can, while 10,000 opens run: no open ever yields the
    /// outside file's bytes. With a check-then-open by path this race is won within a few
    /// hundred opens; `openat2` resolves the name beneath the root in one step.
    #[test]
    #[cfg_attr(
        not(target_arch = "x86_64"),
        ignore = "qemu-user (how the other targets are tested) has no openat2, so only the \
                  racy fallback would run; the kernel path is tested natively"
    )]
    fn a_directory_swapped_for_a_symlink_never_leads_outside() {
        use std::io::Read as _;
        use std::sync::atomic::{AtomicBool, Ordering};
        let base = std::env::temp_dir().join(format!("netbootd-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(root.join("real/f"), "inside").unwrap();
        std::fs::write(base.join("outside/f"), "SECRET").unwrap();
        std::fs::rename(root.join("real"), root.join("d")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), root.join("evil")).unwrap();
        // The guarantee is the kernel's: make sure it is the path being tested.
        assert!(
            !matches!(
                open_resolving_beneath(&root, "d/f"),
                Err(Beneath::Unsupported)
            ),
            "this kernel has no openat2: the check-then-open fallback is racy by nature"
        );
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let swapper = {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // d: real directory <-> symlink to outside, each an atomic rename.
                    let _ = std::fs::rename(root.join("d"), root.join("real"));
                    let _ = std::fs::rename(root.join("evil"), root.join("d"));
                    let _ = std::fs::rename(root.join("d"), root.join("evil"));
                    let _ = std::fs::rename(root.join("real"), root.join("d"));
                    swaps += 1;
                }
                swaps
            })
        };
        // At least 10,000 opens, and on until both outcomes were seen (a loaded machine can
        // schedule the swapper so that one run of 10,000 sees only one of them), 20 s at most.
        let (mut served, mut refused, mut opens) = (0, 0, 0);
        let started = std::time::Instant::now();
        while (opens < 10_000 || served == 0 || refused == 0)
            && started.elapsed() < std::time::Duration::from_secs(20)
        {
            opens += 1;
            match open_beneath(&root, "d/f", Links::Inside) {
                Ok((mut file, _, _)) => {
                    let mut text = String::new();
                    file.read_to_string(&mut text).unwrap();
                    assert_eq!(text, "inside", "a byte from outside the root was served");
                    served += 1;
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(swaps > 100, "the swapper ran {swaps} times");
        assert!(
            served > 0 && refused > 0,
            "served {served}, refused {refused}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("netbootd-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = snapshot_path(&dir, Path::new("/etc/netbootd/hw.toml"));
        assert!(path.ends_with("inventory.last-good.toml"));
        write_atomically(&path, "one").unwrap();
        write_atomically(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(write_atomically(&dir.join("missing/x"), "t").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn size_and_encoding_are_checked() {
        let dir = std::env::temp_dir().join(format!("netbootd-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_text(&path, 10).as_deref(), Ok("0123456789"));
        assert_eq!(read_text(&path, 9), Err("larger than 9 bytes".to_string()));
        std::fs::write(&path, b"\xff").unwrap();
        assert_eq!(read_text(&path, 10), Err("not UTF-8 text".to_string()));
        assert!(read_text(&dir.join("missing"), 10)
            .unwrap_err()
            .starts_with("cannot open:"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn send_file_sends_the_range_and_reports_a_short_file() {
        use std::io::Read as _;
        let dir = std::env::temp_dir().join(format!("netbootd-send-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = File::open(&path).unwrap();
        let (mut rx, tx) = std::os::unix::net::UnixStream::pair().unwrap();
        send_file(&tx, &file, 3, 4).unwrap();
        send_file(&tx, &file, 0, 2).unwrap();
        let err = send_file(&tx, &file, 8, 5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        // The range, then the start (the file position is untouched), then what was there.
        assert_eq!(got, b"34560189");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
