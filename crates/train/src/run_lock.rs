//! One training process per run folder.
//!
//! A training process holds an advisory lock on `RUN/.lock` for as long as it runs: a second
//! `train` (new or `--resume`) on the same folder is refused with the first one's process id.
//! The lock belongs to the open file, so the operating system releases it when the process
//! ends in any way, SIGKILL and power cuts included: a lock left behind never blocks a later
//! run. The file itself stays (its content, `{"format":"lstm-lm-run-lock","version":1,"pid":N}`,
//! names the last holder); only the lock on it counts.
//! Once it holds the lock, a process removes the temporary files that writers killed in the
//! middle of an atomic write left in the folder (large ones, for a large model).
//!
//! Readers (`generate`, `score`, `eval`, `info`) take no lock: every file they read is
//! replaced atomically, so they see either the old or the new version.
//!
//! On a file system without advisory locks (the OS answers "unsupported"), training goes
//! ahead unlocked rather than refusing to run at all.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".lock";
/// The format tag of the lock file's content.
pub const LOCK_FORMAT: &str = "lstm-lm-run-lock";
/// The lock file's format version.
pub const LOCK_FORMAT_VERSION: u32 = 1;

/// What the lock file says: who holds the lock (for the message a second process prints).
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    format: String,
    version: u32,
    pid: u32,
}

/// The held lock on a run folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    // Held only to keep the lock: the OS releases it when this file is closed.
    _file: Option<File>,
}

impl RunLock {
    /// Locks the run folder `root`, which must exist. Fails with a message naming the folder
    /// and the other process when another process holds the lock.
    pub fn acquire(root: &Path) -> Result<RunLock, TrainError> {
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(TrainError::RunDir(in_use_message(root, &mut file)));
            }
            Err(TryLockError::Error(e)) if e.kind() == ErrorKind::Unsupported => {
                return Ok(RunLock { _file: None });
            }
            Err(TryLockError::Error(e)) => return Err(TrainError::io(&path, e)),
        }
        // The process id is for the message a second process prints; the lock is what counts.
        let holder = Holder {
            format: LOCK_FORMAT.into(),
            version: LOCK_FORMAT_VERSION,
            pid: std::process::id(),
        };
        let record = (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            serde_json::to_writer(&mut file, &holder)?;
            file.write_all(b"\n")
        })();
        record.map_err(|e| TrainError::io(&path, e))?;
        // No other process writes here now: what a killed writer left half-written can go.
        crate::atomic::remove_stale_temporaries(root);
        Ok(RunLock { _file: Some(file) })
    }

    /// Whether a trainer holds the lock of the run folder `root` now (nothing is written; a
    /// folder without a lock file is not held).
    pub fn is_held(root: &Path) -> bool {
        let Ok(file) = File::open(root.join(LOCK_FILE)) else {
            return false;
        };
        matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
    }

    /// As [`acquire`](Self::acquire) when the folder exists; `None` when it does not yet (a new
    /// run locks it right after creating it).
    pub fn acquire_if_present(root: &Path) -> Result<Option<RunLock>, TrainError> {
        if root.is_dir() {
            Self::acquire(root).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn in_use_message(root: &Path, file: &mut File) -> String {
    let mut text = String::new();
    // The holder writes its id right after locking; a reader that comes in between sees none.
    let _ = file.read_to_string(&mut text);
    let holder = match serde_json::from_str::<Holder>(&text) {
        Ok(h) if h.format == LOCK_FORMAT => format!("process {}", h.pid),
        _ => "another process".to_string(),
    };
    format!(
        "run folder \"{}\" is in use by {holder} (another `lstm-lm train` on it): wait for it to finish or stop it, then pass --resume",
        root.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        // A second open file description conflicts with the first, even in one process.
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(
            e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        let holder: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (holder.format.as_str(), holder.version),
            (LOCK_FORMAT, LOCK_FORMAT_VERSION)
        );
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn is_held_sees_a_held_lock_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!RunLock::is_held(dir.path()));
        let lock = RunLock::acquire(dir.path()).unwrap();
        assert!(RunLock::is_held(dir.path()));
        drop(lock);
        assert!(!RunLock::is_held(dir.path()));
    }

    #[test]
    fn a_missing_folder_is_not_locked_yet() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("new-run");
        assert!(RunLock::acquire_if_present(&missing).unwrap().is_none());
        assert!(!missing.exists());
        std::fs::create_dir(&missing).unwrap();
        assert!(RunLock::acquire_if_present(&missing).unwrap().is_some());
    }
}
