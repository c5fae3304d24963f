//! Reading text files, cutting them into lines, and writing files atomically.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TextPrepError};

/// Reads a whole UTF-8 text file.
///
/// # Errors
/// [`TextPrepError::Read`] when the file cannot be opened or read, [`TextPrepError::NotUtf8`]
/// (with the offset of the first bad byte) when it is not UTF-8.
pub fn read_text_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| TextPrepError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| TextPrepError::NotUtf8 {
        path: path.to_path_buf(),
        byte: e.utf8_error().valid_up_to(),
    })
}

/// The lines of a text, the way iterating over a file in Python sees them.
///
/// Lines end at `\n` only; the `\n` is not part of the line, and a `\r` before it is kept
/// (Keras does not treat `\r` as a separator). A final `\n` does not start an extra, empty
/// line, and an empty text has no lines at all.
pub fn text_lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    body.split('\n').filter(move |_| !empty)
}

/// Writes `bytes` to `path` atomically: to `path.tmp` first, synced to disk, then renamed over
/// `path`, and the folder synced so the rename itself is durable.
///
/// A reader never sees a half-written file; after a crash either the old or the new file is
/// there.
///
/// # Errors
/// [`TextPrepError::Write`] naming the file that could not be written, synced or renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let written = write_and_sync(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = written {
        // The temporary file is ours and useless now; failing to remove it must not hide the
        // error that matters, which is the one reported below.
        let _ = fs::remove_file(&tmp);
        return Err(TextPrepError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    sync_parent(path).map_err(|source| TextPrepError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `path` with `.tmp` appended to its file name.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> std::io::Result<()> {
    // Folders cannot be opened for syncing on this platform; the rename is still atomic.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_lines(text: &str, expected: &[&str]) {
        let got: Vec<&str> = text_lines(text).collect();
        assert_eq!(got, expected, "lines of {text:?}");
    }

    #[test]
    fn lines_end_at_newline_only() {
        check_lines("", &[]);
        check_lines("\n", &[""]);
        check_lines("\n\n", &["", ""]);
        check_lines("a", &["a"]);
        check_lines("a\n", &["a"]);
        check_lines("a\nb", &["a", "b"]);
        check_lines("a\nb\n", &["a", "b"]);
        check_lines("a\n\nb\n", &["a", "", "b"]);
        check_lines("a\r\nb\r\n", &["a\r", "b\r"]);
        check_lines("a\rb", &["a\rb"]);
        check_lines(" \n", &[" "]);
    }

    #[test]
    fn read_text_file_reports_missing_file_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.txt");
        let err = read_text_file(&path).unwrap_err();
        assert!(matches!(err, TextPrepError::Read { .. }));
        let msg = err.to_string();
        assert!(msg.starts_with("cannot read \""), "{msg}");
        assert!(msg.contains("missing.txt"), "{msg}");
    }

    #[test]
    fn read_text_file_reports_first_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.txt");
        fs::write(&path, b"caf\xc3\xa9 ok\nna\xefve").unwrap();
        let err = read_text_file(&path).unwrap_err();
        match &err {
            TextPrepError::NotUtf8 { byte, .. } => assert_eq!(*byte, 11),
            other => panic!("unexpected error {other:?}"),
        }
        assert!(
            err.to_string()
                .contains("latin1.txt\" is not valid UTF-8 at byte 11")
        );
    }

    #[test]
    fn read_text_file_reads_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.txt");
        fs::write(&path, "héllo\nwörld\n").unwrap();
        assert_eq!(read_text_file(&path).unwrap(), "héllo\nwörld\n");
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert!(!dir.path().join("out.json.tmp").exists());
    }

    #[test]
    fn write_atomic_names_the_file_when_folder_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("out.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(err, TextPrepError::Write { .. }));
        assert!(err.to_string().contains("no-such-dir"));
    }
}
