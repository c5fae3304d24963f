//! Crash-safe file writes, the one implementation every crate of lstm-lm uses: temporary file
//! in the same folder, fsync, rename, fsync the folder. (`text_prep::write_atomic` and
//! `lstm_lm_train::write_atomic` wrap [`write()`] with their own error types.)
//!
//! # Fault injection (tests)
//!
//! Environment variables, read once per process, put faults into [`write()`] (checkpoint files,
//! `checkpoint.json`, `model.bpk`, `config.json`, `tokenizer.json`, `metrics.jsonl` when it is
//! cut back on resume), so that tests can show what a crash or a full disk at that point does. Unset (the
//! normal case), each write checks one already-initialised value and nothing else happens.
//!
//! - `LSTM_LM_FAULT_PAUSE_MS=N`: sleep N milliseconds after the temporary file is written and
//!   synced, before it is renamed over the target, so that a test's SIGKILL can land inside a
//!   checkpoint write.
//! - `LSTM_LM_FAULT_ENOSPC_AFTER_BYTES=K`: the writes may store K bytes in all (counted over
//!   the process); the write that would pass K stores what still fits into its temporary file
//!   and fails with "No space left on device", as a full disk would.
//! - `LSTM_LM_FAULT_PATHS=TEXT`: only writes whose target path contains TEXT get the faults
//!   above (e.g. `checkpoints` for the files of checkpoint folders) or count towards K; unset,
//!   every write does.
//!
//! A number that does not parse is ignored (no fault).
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Environment variable: milliseconds to pause before each atomic rename (see the module docs).
pub const FAULT_PAUSE_MS: &str = "LSTM_LM_FAULT_PAUSE_MS";
/// Environment variable: bytes the atomic writes may store before the disk is "full".
pub const FAULT_ENOSPC_AFTER_BYTES: &str = "LSTM_LM_FAULT_ENOSPC_AFTER_BYTES";
/// Environment variable: the text a target path must contain for the faults to apply.
pub const FAULT_PATHS: &str = "LSTM_LM_FAULT_PATHS";

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the
/// new one, never a torn mix. The error is the I/O error alone: callers name the file.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, bytes, Faults::get().filter(|f| f.apply_to(path)))
}

fn write_with(path: &Path, bytes: &[u8], faults: Option<&Faults>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        match faults.and_then(|f| f.space.as_ref()) {
            Some(space) => space.write(&mut f, bytes)?,
            None => f.write_all(bytes)?,
        }
        f.sync_all()?;
        drop(f);
        if let Some(pause) = faults.and_then(|f| f.pause) {
            std::thread::sleep(pause);
        }
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files that writers killed inside [`write()`] left in `dir`
/// (`.NAME.tmp-PID`). Only safe while no other process writes there: the run lock's holder
/// calls it. Best effort: a file that cannot be removed stays.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if is_temporary_name(&name.to_string_lossy()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether `name` is one [`write()`] gives its temporary files.
fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(".tmp-").is_some_and(|(stem, pid)| {
            stem.len() > 1 && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Opening a directory for fsync works on Unix; elsewhere the rename is the best we have.
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// The injected faults, from the environment.
#[derive(Debug, Default)]
struct Faults {
    pause: Option<Duration>,
    space: Option<DiskSpace>,
    paths: Option<String>,
}

impl Faults {
    /// `None` when no fault is asked for (read once, then one load per write).
    fn get() -> Option<&'static Faults> {
        static FAULTS: OnceLock<Option<Faults>> = OnceLock::new();
        FAULTS
            .get_or_init(|| Faults::from_lookup(|name| std::env::var(name).ok()))
            .as_ref()
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Option<Faults> {
        let number = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
        let faults = Faults {
            pause: number(FAULT_PAUSE_MS).map(Duration::from_millis),
            space: number(FAULT_ENOSPC_AFTER_BYTES).map(DiskSpace::new),
            paths: var(FAULT_PATHS),
        };
        (faults.pause.is_some() || faults.space.is_some()).then_some(faults)
    }

    /// Whether the faults apply to a write of `path`.
    fn apply_to(&self, path: &Path) -> bool {
        self.paths
            .as_deref()
            .is_none_or(|text| path.to_string_lossy().contains(text))
    }
}

/// A simulated disk that holds a fixed number of bytes.
#[derive(Debug)]
struct DiskSpace {
    left: AtomicU64,
}

impl DiskSpace {
    fn new(bytes: u64) -> Self {
        DiskSpace {
            left: AtomicU64::new(bytes),
        }
    }

    /// Writes what fits of `bytes`, then fails as a full disk does if some did not fit.
    fn write(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        let wanted = bytes.len() as u64;
        let granted = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                Some(left.saturating_sub(wanted))
            })
            .map_or(0, |left| left.min(wanted));
        file.write_all(&bytes[..granted as usize])?;
        if granted < wanted {
            return Err(std::io::Error::new(
                ErrorKind::StorageFull,
                format!("No space left on device (injected by {FAULT_ENOSPC_AFTER_BYTES})"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failure_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let e = crate::write_atomic(&blocker.join("sub.json"), b"x").unwrap_err();
        assert!(e.to_string().contains("sub.json"), "{e}");
    }

    #[test]
    fn fault_variables_are_read_as_numbers_and_absent_means_none() {
        assert!(Faults::from_lookup(|_| None).is_none());
        assert!(Faults::from_lookup(|_| Some("soon".into())).is_none());
        let f = Faults::from_lookup(|name| (name == FAULT_PAUSE_MS).then(|| "25".into())).unwrap();
        assert_eq!(f.pause, Some(Duration::from_millis(25)));
        assert!(f.space.is_none());
        let f = Faults::from_lookup(|name| (name == FAULT_ENOSPC_AFTER_BYTES).then(|| "0".into()))
            .unwrap();
        assert!(f.pause.is_none() && f.space.is_some());
        assert!(f.apply_to(Path::new("run/config.json")));
        let f = Faults::from_lookup(|name| match name {
            FAULT_PAUSE_MS => Some("1".into()),
            FAULT_PATHS => Some("checkpoints".into()),
            _ => None,
        })
        .unwrap();
        assert!(f.apply_to(Path::new("run/checkpoints/step-3/model.bpk")));
        assert!(!f.apply_to(Path::new("run/metrics.jsonl")));
    }

    #[test]
    fn a_full_disk_stores_what_fits_then_fails() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(5);
        let p = dir.path().join("f");
        let mut file = File::create(&p).unwrap();
        space.write(&mut file, b"abc").unwrap();
        let e = space.write(&mut file, b"defg").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert!(e.to_string().contains("No space left"), "{e}");
        // What fitted was stored; from then on nothing is.
        assert_eq!(fs::read(&p).unwrap(), b"abcde");
        assert!(space.write(&mut file, b"h").is_err());
        assert!(space.write(&mut file, b"").is_ok());
    }

    #[test]
    fn a_write_on_a_full_disk_keeps_the_old_file_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checkpoint.json");
        write(&p, b"old").unwrap();
        let full = Faults {
            space: Some(DiskSpace::new(2)),
            ..Faults::default()
        };
        let e = write_with(&p, b"new content", Some(&full)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert!(e.to_string().contains("No space left"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        // The partial temporary file is gone.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let keep = ["model.bpk", ".lock", ".x.tmp-", "a.tmp-12", ".y.tmp-1a"];
        let stale = [".model.bpk.tmp-4242", ".checkpoint.json.tmp-7"];
        for name in keep.iter().chain(&stale) {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_stale_temporaries(dir.path());
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(left, expected);
    }
}
