//! File helpers: hashing, `.part` names, atomic installation, display.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// `<path>.part`: where a file is written before it is verified.
pub(crate) fn part_path(path: &Path) -> PathBuf {
    with_suffix(path, ".part")
}

/// `<part>.src`: records where a `.part` file came from, so that it is only
/// resumed from the same place.
pub(crate) fn source_note_path(part: &Path) -> PathBuf {
    with_suffix(part, ".src")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Lowercase hex SHA-256 and size of a file.
pub(crate) fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((hex(&h.finalize()), n_total))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Removes a file if it exists (and its `.src` note for `.part` files).
pub(crate) fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(source_note_path(path));
}

/// Flushes `from` to disk, renames it to `to` and syncs the folder, so that
/// `to` is either the old file or the complete new one.
pub(crate) fn install(from: &Path, to: &Path) -> Result<()> {
    File::open(from)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {}", show(from)))?;
    fs::rename(from, to).with_context(|| format!("cannot move {} to {}", show(from), show(to)))?;
    let _ = fs::remove_file(source_note_path(from));
    if let Some(dir) = to.parent() {
        // Not all platforms can open a folder; the rename is done either way.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A path for messages: relative to the current folder when it is inside it.
pub fn show(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = path.strip_prefix(&cwd)
        && !rel.as_os_str().is_empty()
    {
        return rel.display().to_string();
    }
    path.display().to_string()
}

/// Human-readable byte count.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
