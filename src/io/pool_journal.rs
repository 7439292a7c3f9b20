//! The pool journal on disk (`pool.journal` in `--state-dir`): records appended and synced
//! (`fdatasync`) before the ACKs they stand for are sent, and the whole file rewritten from
//! the pool's current state (a new file synced and renamed over the old one) when it has grown
//! well past that state. The format is [`crate::policy::pool::journal`]'s.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::policy::pool::journal::{self, Read, HEADER};
use crate::policy::pool::Record;

pub const FILE_NAME: &str = "pool.journal";
/// A journal larger than this is not read (and netbootd does not start): 256 MiB is far
/// beyond what compaction lets it grow to.
const MAX_BYTES: u64 = 256 << 20;

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Records appended since the file was last rewritten, and what it was rewritten with.
    pub appended: usize,
    pub compacted_with: usize,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and reads what it holds. A directory that cannot
    /// be written is an error naming it.
    pub fn open(dir: &Path) -> Result<(Journal, Read), String> {
        let path = dir.join(FILE_NAME);
        let named = |e: io::Error| {
            format!(
                "the address pool keeps its leases in --state-dir {}, which cannot be written: {e}",
                dir.display()
            )
        };
        std::fs::create_dir_all(dir).map_err(named)?;
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(f) => {
                f.take(MAX_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if bytes.len() as u64 > MAX_BYTES {
                    return Err(format!(
                        "{}: larger than {MAX_BYTES} bytes; not read",
                        path.display()
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(named)?;
        // A probe that the directory takes new files (compaction renames one in).
        let probe = dir.join(format!(".{FILE_NAME}.probe"));
        File::create(&probe).map_err(named)?;
        let _ = std::fs::remove_file(&probe);
        Ok((
            Journal {
                path,
                file,
                appended: 0,
                compacted_with: 0,
            },
            journal::read(&bytes),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` in one write and syncs: when this returns Ok they are durable.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let text: String = records.iter().map(Record::encode).collect();
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.appended += records.len();
        Ok(())
    }

    /// Worth rewriting: many more records than the state they describe.
    pub fn wants_compaction(&self) -> bool {
        self.appended > 1000 && self.appended > 2 * self.compacted_with
    }

    /// Replaces the file with `state` (atomically) and appends from there on.
    pub fn compact(&mut self, state: &[Record]) -> io::Result<()> {
        let mut text = format!("{HEADER}\n");
        text.extend(state.iter().map(Record::encode));
        super::files::write_atomically(&self.path, &text)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.appended = 0;
        self.compacted_with = state.len();
        Ok(())
    }
}
