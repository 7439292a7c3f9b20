//! Reading the operator's files: the hardware file and the config file, each with a size cap,
//! as UTF-8 text, with errors that name the file.

use std::io::Read;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
