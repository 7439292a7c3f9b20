//! The pool journal on disk (`pool.journal` in `--state-dir`): records appended and synced
//! (`fdatasync`) before the ACKs they stand for are sent, and the whole file rewritten from
//! the pool's current state when it has grown well past that state. A rewrite runs in three
//! steps so that the loop never waits for the big write: the loop encodes the state
//! ([`Journal::begin_rewrite`]); a background thread writes and syncs it to a temporary file
//! ([`write_new`]); the loop appends what was appended to the old file meanwhile, syncs, and
//! renames the new file over the old one ([`Journal::finish_rewrite`]). A crash at any point
//! leaves a whole journal holding every durable record. The format is
//! [`crate::policy::pool::journal`]'s.

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
    /// While a rewrite runs: what was appended since its state was taken.
    since_rewrite: Option<Vec<u8>>,
}

/// A rewrite's new file, written off the loop: the state's text, synced.
pub fn write_new(tmp: &Path, text: &str) -> io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
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
        crate::io::files::make_dirs(dir).map_err(named)?;
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
                since_rewrite: None,
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
        if let Some(since) = &mut self.since_rewrite {
            since.extend_from_slice(text.as_bytes());
        }
        Ok(())
    }

    /// Starts a rewrite with `state`: returns the temporary file's name and the text to write
    /// to it (off the loop, by [`write_new`]). Appends go on to the old file and are also kept
    /// for [`Journal::finish_rewrite`].
    pub fn begin_rewrite(&mut self, state: &[Record]) -> (PathBuf, String) {
        let mut text = format!("{HEADER}\n");
        text.extend(state.iter().map(Record::encode));
        self.since_rewrite = Some(Vec::new());
        self.compacted_with = state.len();
        let tmp = self.path.with_file_name(format!(".{FILE_NAME}.rewrite"));
        (tmp, text)
    }

    /// The new file is written (`written` is how that went): appends the records made since,
    /// syncs, renames it over the journal and appends from there on. On any error the old file
    /// stays the journal (it has every record) and the new one is removed.
    pub fn finish_rewrite(&mut self, tmp: &Path, written: io::Result<()>) -> io::Result<()> {
        let since = self.since_rewrite.take().unwrap_or_default();
        let result = written.and_then(|()| {
            let mut file = OpenOptions::new().append(true).open(tmp)?;
            file.write_all(&since)?;
            file.sync_data()?;
            std::fs::rename(tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(file)
        });
        match result {
            Ok(file) => {
                self.file = file;
                self.appended = since.iter().filter(|&&b| b == b'\n').count();
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                Err(e)
            }
        }
    }

    pub fn rewriting(&self) -> bool {
        self.since_rewrite.is_some()
    }

    /// Worth rewriting: many more records than the state they describe.
    pub fn wants_compaction(&self) -> bool {
        self.appended > 1000 && self.appended > 2 * self.compacted_with
    }

    /// Replaces the file with `state` (atomically) and appends from there on.
    pub fn compact(&mut self, state: &[Record]) -> io::Result<()> {
        self.since_rewrite = None;
        let mut text = format!("{HEADER}\n");
        text.extend(state.iter().map(Record::encode));
        super::files::write_atomically(&self.path, &text)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.appended = 0;
        self.compacted_with = state.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::pool::{ClientKey, Lease, LeaseState};
    use crate::wire::MacAddr;
    use std::net::Ipv4Addr;

    fn lease(n: u8) -> Record {
        Record::Lease(Lease {
            ip: Ipv4Addr::new(10, 0, 9, n),
            client: ClientKey::new(None, MacAddr([2, 0, 0, 0, 0, n])),
            mac: MacAddr([2, 0, 0, 0, 0, n]),
            state: LeaseState::Bound,
            expires: 1_800_000_000_000 + u64::from(n),
        })
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netbootd-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_rewrite_keeps_the_records_appended_while_it_ran() {
        let dir = scratch("rewrite");
        let (mut j, read) = Journal::open(&dir).unwrap();
        assert!(read.records.is_empty());
        j.append(&[
            lease(1),
            lease(2),
            Record::Forget(Ipv4Addr::new(10, 0, 9, 1)),
        ])
        .unwrap();
        // The state at the rewrite's start is lease 2; lease 3 comes while it is written.
        let (tmp, text) = j.begin_rewrite(&[lease(2)]);
        j.append(&[lease(3)]).unwrap();
        let written = write_new(&tmp, &text);
        j.finish_rewrite(&tmp, written).unwrap();
        j.append(&[lease(4)]).unwrap();
        drop(j);
        let (_, read) = Journal::open(&dir).unwrap();
        assert_eq!(read.records, vec![lease(2), lease(3), lease(4)]);
        assert!(!tmp.exists());
        // A failed write leaves the old journal, with everything.
        let (mut j, _) = Journal::open(&dir).unwrap();
        let (tmp, _) = j.begin_rewrite(&[]);
        j.append(&[lease(5)]).unwrap();
        assert!(j
            .finish_rewrite(&tmp, Err(io::Error::other("disk full")))
            .is_err());
        drop(j);
        let (_, read) = Journal::open(&dir).unwrap();
        assert_eq!(read.records, vec![lease(2), lease(3), lease(4), lease(5)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
