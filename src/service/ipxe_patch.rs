//! iPXE binaries served with `--ipxe-script-patch` written over their marker, over TFTP and
//! HTTP alike: each binary is read and patched once per (file version, patch) and kept in
//! memory; a binary that changes on disk (another size, time or inode) or a new patch after a
//! reload is patched again. A binary without the marker is served as it is, with one WARN per
//! file version. The patch itself is [`crate::wire::ipxe_patch`]'s.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use log::{info, warn};

use crate::io::files::{Content, Served};
use crate::wire::ipxe_patch::patch_binary;

/// Binaries kept patched (a directory of iPXE builds holds a handful).
const MAX_KEPT: usize = 32;
/// The largest binary patched (iPXE builds are about 1 MB; an ISO of iPXE is larger).
const MAX_BINARY: u64 = 32 << 20;

/// A binary as it was on disk when patched: path, size, modification time (ns), inode; and
/// the patch.
type Version = (PathBuf, u64, i64, i64, u64, String);

/// A binary's patched bytes; `None`: it has no marker.
type Patched = Option<Arc<[u8]>>;

#[derive(Default)]
pub struct PatchedBinaries {
    /// Oldest first.
    kept: Mutex<Vec<(Version, Patched)>>,
}

impl PatchedBinaries {
    /// `served` (an iPXE binary just opened) with `patch` applied, when there is a patch and
    /// the binary carries the marker.
    pub fn apply(&self, served: Served, patch: Option<&str>) -> Served {
        let (Some(patch), Content::File(file)) = (patch, &served.content) else {
            return served;
        };
        let Ok(meta) = file.metadata() else {
            return served;
        };
        let version: Version = (
            served.real.clone(),
            served.size,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino(),
            patch.to_string(),
        );
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let patched = match kept.iter().find(|(v, _)| *v == version) {
            Some((_, p)) => p.clone(),
            None => {
                let p = Self::patch(&served, patch);
                // An older version of the same file, or the same file with another patch.
                kept.retain(|(v, _)| v.0 != version.0);
                if kept.len() >= MAX_KEPT {
                    kept.remove(0);
                }
                kept.push((version, p.clone()));
                p
            }
        };
        drop(kept);
        match patched {
            Some(bytes) => Served {
                content: Content::Bytes(bytes),
                ..served
            },
            None => served,
        }
    }

    fn patch(served: &Served, patch: &str) -> Patched {
        let mut binary = vec![0; served.size.min(MAX_BINARY) as usize];
        let read = served
            .content
            .read_exact_at(&mut binary, 0, std::time::Duration::ZERO);
        let patched = read
            .ok()
            .filter(|()| served.size <= MAX_BINARY)
            .and_then(|()| patch_binary(&binary, patch.as_bytes()));
        let name = served.real.display();
        match patched {
            Some(p) => {
                info!("ipxe {name}: --ipxe-script-patch written over its script marker");
                Some(p.into())
            }
            None => {
                warn!("ipxe {name}: no script marker (BIOS .kpxe builds never show one), served without --ipxe-script-patch");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::files::open_served;
    use crate::policy::served::Links;
    use crate::wire::ipxe_patch::SCRIPT_MARKER;

    #[test]
    fn a_binary_is_patched_once_per_version_and_patch() {
        let dir = std::env::temp_dir().join(format!("netbootd-ipxe-patch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut binary = vec![0x90u8; 5000];
        binary[1000..1131].copy_from_slice(SCRIPT_MARKER);
        std::fs::write(dir.join("ipxe.efi"), &binary).unwrap();
        std::fs::write(dir.join("plain.efi"), vec![1u8; 3000]).unwrap();
        let binaries = PatchedBinaries::default();
        let open = |name: &str| open_served(&dir, name, Links::Inside).unwrap();
        let read = |s: &Served| {
            let mut buf = vec![0; s.size as usize];
            s.content
                .read_exact_at(&mut buf, 0, std::time::Duration::ZERO)
                .unwrap();
            buf
        };

        let served = binaries.apply(open("ipxe.efi"), Some("echo one"));
        assert!(matches!(served.content, Content::Bytes(_)));
        assert_eq!(served.size, 5000);
        let bytes = read(&served);
        assert_eq!(&bytes[1000..1008], b"echo one");
        assert!(bytes[1008..1131].iter().all(|&b| b == b' '));
        assert_eq!(binaries.kept.lock().unwrap().len(), 1);
        // Again: the kept copy. Another patch (a reload): patched again, in its place.
        binaries.apply(open("ipxe.efi"), Some("echo one"));
        let two = binaries.apply(open("ipxe.efi"), Some("echo two"));
        assert_eq!(&read(&two)[1000..1008], b"echo two");
        assert_eq!(binaries.kept.lock().unwrap().len(), 1);
        // No marker, or no patch: served as they are.
        let plain = binaries.apply(open("plain.efi"), Some("echo one"));
        assert!(matches!(plain.content, Content::File(_)));
        let unpatched = binaries.apply(open("ipxe.efi"), None);
        assert!(matches!(unpatched.content, Content::File(_)));
        // A new build on disk is patched afresh.
        binary[2000..2131].copy_from_slice(SCRIPT_MARKER);
        binary[1000..1131].fill(b'z');
        std::fs::write(dir.join("ipxe.efi.new"), &binary).unwrap();
        std::fs::rename(dir.join("ipxe.efi.new"), dir.join("ipxe.efi")).unwrap();
        let fresh = binaries.apply(open("ipxe.efi"), Some("echo two"));
        assert_eq!(&read(&fresh)[2000..2008], b"echo two");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
