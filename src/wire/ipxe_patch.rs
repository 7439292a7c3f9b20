//! Smee's `--ipxe-script-patch` on the bytes of an iPXE binary: the marker Tinkerbell's iPXE
//! builds carry in their embedded script, and the patched copy of a binary (the marker's bytes
//! blanked with spaces and the patch written at its offset, so the size never changes).

/// The 131 bytes Tinkerbell's iPXE builds reserve in their embedded script: two comment lines
/// (after `set user-class Tinkerbell`, before DHCP).
pub const SCRIPT_MARKER: &[u8] = b"#a8b7e61f1075c37a793f2f92cee89f7bba00c4a8d7842ce3d40b5889032d8881\n#ddd16a4fc4926ecefdfb6941e33c44ed3647133638f5e84021ea44d3152e7f97";

/// Is `patch` short enough to take the marker's place? The error says why not.
pub fn patch_fits(patch: &str) -> Result<(), String> {
    if patch.len() > SCRIPT_MARKER.len() {
        return Err(format!(
            "the patch is {} bytes; the marker it replaces in the iPXE binaries holds {}",
            patch.len(),
            SCRIPT_MARKER.len()
        ));
    }
    Ok(())
}

/// `binary` with its first marker replaced by `patch` padded with spaces, as Smee patches;
/// `None` when the binary carries no marker (or the patch does not fit).
pub fn patch_binary(binary: &[u8], patch: &[u8]) -> Option<Vec<u8>> {
    if patch.len() > SCRIPT_MARKER.len() {
        return None;
    }
    let at = binary
        .windows(SCRIPT_MARKER.len())
        .position(|w| w == SCRIPT_MARKER)?;
    let mut out = binary.to_vec();
    let slot = &mut out[at..at + SCRIPT_MARKER.len()];
    slot.fill(b' ');
    slot[..patch.len()].copy_from_slice(patch);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_131_bytes_and_the_first_one_is_patched_in_place() {
        assert_eq!(SCRIPT_MARKER.len(), 131);
        let mut binary = b"MZ....#!ipxe\nset user-class Tinkerbell\n".to_vec();
        let at = binary.len();
        binary.extend_from_slice(SCRIPT_MARKER);
        binary.extend_from_slice(b"\ndhcp\n");
        binary.extend_from_slice(SCRIPT_MARKER);
        let patched = patch_binary(&binary, b"set syslog 10.0.0.1\n").unwrap();
        assert_eq!(patched.len(), binary.len());
        assert_eq!(&patched[..at], &binary[..at]);
        let mut slot = b"set syslog 10.0.0.1\n".to_vec();
        slot.resize(131, b' ');
        assert_eq!(&patched[at..at + 131], &slot[..]);
        // Only the first marker: the rest of the file is as it was.
        assert_eq!(&patched[at + 131..], &binary[at + 131..]);
        let whole = "x".repeat(131);
        assert!(patch_binary(&binary, whole.as_bytes()).is_some());
        assert!(patch_fits(&whole).is_ok());
        assert!(patch_fits(&"x".repeat(132))
            .unwrap_err()
            .contains("132 bytes"));
        assert!(patch_binary(&binary, &[b'x'; 132]).is_none());
        assert!(patch_binary(b"no marker here", b"echo").is_none());
        assert!(patch_binary(b"", b"").is_none());
    }
}
