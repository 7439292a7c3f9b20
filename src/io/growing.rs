//! A file that one thread writes while others read it: an asset being downloaded from its
//! upstream into the cache and served at the same time. The writer says how long the file
//! will be (when the upstream's head says so), appends, and ends it with success or a reason;
//! readers wait for the bytes they need, or for the end, within a bound. Readers hold the open
//! descriptor, so the file may be renamed to its final name (or unlinked after a failure)
//! while they read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    /// The announced length (`None`: not known yet, or never announced).
    length: Option<u64>,
    /// The head came (with or without a length).
    started: bool,
    /// Bytes written so far, from the start.
    have: u64,
    /// `Some(Ok)`: complete; `Some(Err)`: failed, with why.
    end: Option<Result<(), String>>,
}

/// The file and how far it has come.
#[derive(Debug)]
pub struct Growing {
    file: File,
    state: Mutex<State>,
    changed: Condvar,
}

impl Growing {
    pub fn new(file: File) -> Growing {
        Growing {
            file,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `ready` says yes or the state ends, at most until `deadline`.
    fn wait_until(
        &self,
        deadline: Instant,
        mut ready: impl FnMut(&State) -> bool,
    ) -> Result<MutexGuard<'_, State>, String> {
        let mut state = self.state();
        loop {
            if ready(&state) {
                return Ok(state);
            }
            if let Some(Err(why)) = &state.end {
                return Err(why.clone());
            }
            if state.end.is_some() {
                return Ok(state);
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| "timed out waiting for the upstream".to_string())?;
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    // The writer's side.

    /// The upstream's head came; `length` when it gave one.
    pub fn start(&self, length: Option<u64>) {
        let mut state = self.state();
        state.started = true;
        state.length = length;
        self.changed.notify_all();
    }

    /// Appends `data` at the end.
    pub fn append(&self, data: &[u8]) -> io::Result<()> {
        let at = self.state().have;
        self.file.write_all_at(data, at)?;
        self.state().have = at + data.len() as u64;
        self.changed.notify_all();
        Ok(())
    }

    /// How it ended, if it has.
    pub fn ended(&self) -> Option<Result<(), String>> {
        self.state().end.clone()
    }

    /// Bytes written so far.
    pub fn have(&self) -> u64 {
        self.state().have
    }

    /// The end: complete, or failed with why. Readers waiting are woken.
    pub fn end(&self, result: Result<(), String>) {
        let mut state = self.state();
        if result.is_ok() && state.length.is_none() {
            state.length = Some(state.have);
        }
        state.end = Some(result);
        self.changed.notify_all();
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    // The readers' side.

    /// Waits for the head (then the length is known) or, for a body without a length, for
    /// the end; at most `wait`. `Err`: the download failed, or the wait ran out.
    pub fn wait_length(&self, wait: Duration) -> Result<u64, String> {
        let state = self.wait_until(Instant::now() + wait, |s| s.length.is_some())?;
        state
            .length
            .ok_or_else(|| "the upstream ended without a body".into())
    }

    /// The length, if the head has come.
    pub fn length_now(&self) -> Option<u64> {
        self.state().length
    }

    /// Waits until the file holds `offset + 1` bytes or more (at most `wait` without
    /// progress), and returns how many bytes from `offset` can be read now (at most `max`).
    pub fn readable(&self, offset: u64, max: u64, wait: Duration) -> Result<u64, String> {
        let state = self.wait_until(Instant::now() + wait, |s| s.have > offset)?;
        if state.have <= offset {
            return Err(format!(
                "the upstream's file ended at {} bytes, before offset {offset}",
                state.have
            ));
        }
        Ok((state.have - offset).min(max))
    }

    /// Reads `buf.len()` bytes at `offset`, waiting for them (at most `wait` for each
    /// arrival).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64, wait: Duration) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let n = self
                .readable(at, (buf.len() - done) as u64, wait)
                .map_err(io::Error::other)? as usize;
            self.file.read_exact_at(&mut buf[done..done + n], at)?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn temp(name: &str) -> File {
        let path =
            std::env::temp_dir().join(format!("netbootd-growing-{name}-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn readers_get_bytes_as_they_arrive_and_the_end() {
        let g = Arc::new(Growing::new(temp("arrive")));
        let writer = {
            let g = g.clone();
            std::thread::spawn(move || {
                g.start(Some(10));
                for chunk in [b"01234".as_slice(), b"56789"] {
                    std::thread::sleep(Duration::from_millis(20));
                    g.append(chunk).unwrap();
                }
                g.end(Ok(()));
            })
        };
        assert_eq!(g.wait_length(Duration::from_secs(5)), Ok(10));
        let mut buf = [0u8; 8];
        g.read_exact_at(&mut buf, 2, Duration::from_secs(5))
            .unwrap();
        assert_eq!(&buf, b"23456789");
        writer.join().unwrap();
        assert!(g.readable(10, 1, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_failure_reaches_every_waiting_reader() {
        let g = Arc::new(Growing::new(temp("fail")));
        g.start(Some(100));
        g.append(b"abc").unwrap();
        let reader = {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 10];
                g.read_exact_at(&mut buf, 0, Duration::from_secs(5))
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        g.end(Err("upstream closed".into()));
        let err = reader.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("upstream closed"));
    }

    #[test]
    fn waits_are_bounded_and_lengthless_bodies_wait_for_the_end() {
        let g = Growing::new(temp("bounded"));
        assert!(g.wait_length(Duration::from_millis(20)).is_err());
        g.start(None);
        g.append(b"xyz").unwrap();
        assert!(g.wait_length(Duration::from_millis(20)).is_err());
        g.end(Ok(()));
        assert_eq!(g.wait_length(Duration::ZERO), Ok(3));
    }
}
