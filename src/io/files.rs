//! Reading the operator's files: the hardware file and the config file, each with a size cap,
//! as UTF-8 text, with errors that name the file; and opening served files (TFTP, HTTP) so
//! that no name or symlink reaches outside the served directory ([`open_beneath`]), and sending
//! them into a socket without copying ([`send_file`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;

use crate::inventory::{self, Format, Loaded, Problem, Profiles};

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
    let file = path.display().to_string();
    let text = read_text(path, MAX_HARDWARE_FILE_BYTES).map_err(|message| {
        vec![Problem {
            file: file.clone(),
            line: 0,
            mac: None,
            field: None,
            message,
        }]
    })?;
    inventory::load_str(&text, Format::for_path(path), &file, profiles)
}

/// Why a served file could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// No such file, or not a regular file (directories, devices and FIFOs are never served).
    NotFound,
    /// The name, after following symlinks, leads outside the root.
    Outside,
    Io(std::io::Error),
}

/// How far symlinks in a served directory may lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Every link must resolve inside the root.
    Inside,
    /// A link directly in the root may point anywhere; deeper names must stay inside. For the
    /// iPXE directory, which is looked up by base name only: Debian's `ipxe` package links
    /// `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`, and those links are the operator's.
    TopLevelTrusted,
}

/// An open regular file below `root`, its size, and its real path.
/// `relative` must already be free of `..` (see `policy::tftp::interpret_name`); symlinks are
/// followed and the result must still be inside `root` (but see [`Links`]). Opened
/// non-blocking, so a FIFO that slipped in between the check and the open cannot hang the
/// caller.
pub fn open_beneath(
    root: &Path,
    relative: &str,
    links: Links,
) -> Result<(std::fs::File, u64, std::path::PathBuf), OpenError> {
    use std::io::ErrorKind;
    use std::os::unix::fs::OpenOptionsExt;
    let missing = |e: std::io::Error| match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => OpenError::NotFound,
        _ if e.raw_os_error() == Some(nix::libc::ENOTDIR)
            || e.raw_os_error() == Some(nix::libc::ELOOP) =>
        {
            OpenError::NotFound
        }
        _ => OpenError::Io(e),
    };
    let root = root.canonicalize().map_err(missing)?;
    let real = root.join(relative).canonicalize().map_err(missing)?;
    let trusted = links == Links::TopLevelTrusted && !relative.contains('/');
    if !real.starts_with(&root) && !trusted {
        return Err(OpenError::Outside);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(&real)
        .map_err(missing)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotFound);
    }
    Ok((file, meta.len(), real))
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
        assert!(matches!(open("out"), Err(OpenError::Outside)));
        assert!(matches!(open("sub"), Err(OpenError::NotFound)));
        assert!(matches!(open("nope"), Err(OpenError::NotFound)));
        assert!(matches!(open("sub/f/x"), Err(OpenError::NotFound)));
        // Links directly in a trusted root (Debian's iPXE directory) may lead out; deeper not.
        let trusted = |name| open_beneath(&root, name, Links::TopLevelTrusted);
        assert!(trusted("out").is_ok());
        assert!(matches!(trusted("sub/out"), Err(OpenError::Outside)));
        std::fs::remove_dir_all(&base).unwrap();
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
