//! Reading text files, cutting them into lines, and writing files atomically.

use std::fs::{self, File};
use std::io::Read;
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

/// The size of the pieces [`TextPieces::open`] reads when asked for the default (1 MiB).
pub const READ_PIECE_BYTES: usize = 1 << 20;

/// A UTF-8 text file read in pieces of about `piece_bytes` bytes, so that a file of any size
/// is read in a bounded amount of memory.
///
/// Each piece is valid UTF-8 and ends on a character boundary (a character cut by a read is
/// completed by the next one); joined, the pieces are the file's text, as
/// [`read_text_file`] returns it. The first error (an unreadable file, bytes that are not
/// UTF-8) is the last item.
#[derive(Debug)]
pub struct TextPieces {
    path: PathBuf,
    file: File,
    piece_bytes: usize,
    /// The start of a character that the last read cut (at most 3 bytes).
    carry: Vec<u8>,
    /// Bytes handed out so far, to place a bad byte in the file.
    offset: usize,
    done: bool,
}

impl TextPieces {
    /// Opens `path` to read it in pieces of about `piece_bytes` bytes (at least 1).
    ///
    /// # Errors
    /// [`TextPrepError::Read`] when the file cannot be opened.
    pub fn open(path: impl AsRef<Path>, piece_bytes: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| TextPrepError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file,
            piece_bytes: piece_bytes.max(1),
            carry: Vec::new(),
            offset: 0,
            done: false,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn next_piece(&mut self) -> Result<Option<String>> {
        let mut bytes = std::mem::take(&mut self.carry);
        loop {
            let start = bytes.len();
            bytes.resize(start + self.piece_bytes, 0);
            let read = loop {
                match self.file.read(&mut bytes[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(TextPrepError::Read {
                            path: self.path.clone(),
                            source,
                        });
                    }
                }
            };
            bytes.truncate(start + read);
            let at_end = read == 0;
            match std::str::from_utf8(&bytes) {
                Ok(_) if bytes.is_empty() => return Ok(None),
                Ok(_) => break,
                Err(e) => {
                    let good = e.valid_up_to();
                    // A character cut by the read: keep its start for the next piece, unless
                    // the file ends there.
                    if e.error_len().is_none() && !at_end {
                        if good > 0 {
                            self.carry = bytes.split_off(good);
                            break;
                        }
                        continue;
                    }
                    return Err(TextPrepError::NotUtf8 {
                        path: self.path.clone(),
                        byte: self.offset + good,
                    });
                }
            }
        }
        self.offset += bytes.len();
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| TextPrepError::NotUtf8 {
                path: self.path.clone(),
                byte: self.offset + e.utf8_error().valid_up_to(),
            })
    }
}

impl Iterator for TextPieces {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if self.done {
            return None;
        }
        let piece = self.next_piece().transpose();
        if !matches!(piece, Some(Ok(_))) {
            self.done = true;
        }
        piece
    }
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

/// Writes `bytes` to `path` atomically (see [`atomic_file`](crate::atomic_file)): to a temporary
/// file beside it first, synced to disk, then renamed over
/// `path`, and the folder synced so the rename itself is durable.
///
/// A reader never sees a half-written file; after a crash either the old or the new file is
/// there.
///
/// # Errors
/// [`TextPrepError::Write`] naming the file that could not be written, synced or renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic_file::write(path, bytes).map_err(|source| TextPrepError::Write {
        path: path.to_path_buf(),
        source,
    })
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

    fn pieces_of(bytes: &[u8], piece_bytes: usize) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        fs::write(&path, bytes).unwrap();
        TextPieces::open(&path, piece_bytes).unwrap().collect()
    }

    #[test]
    fn pieces_join_to_the_whole_text_at_any_size() {
        let text = "héllo wörld\n🙂 emoji\r\nlast line without newline";
        for size in [1, 2, 3, 4, 5, 7, 64, 1 << 20] {
            let pieces = pieces_of(text.as_bytes(), size).unwrap();
            assert_eq!(pieces.concat(), text, "piece size {size}");
            assert!(pieces.iter().all(|p| !p.is_empty()));
            if size >= 4 {
                assert!(pieces.iter().all(|p| p.len() <= size + 3), "{size}");
            }
        }
        assert!(pieces_of(b"", 8).unwrap().is_empty());
    }

    #[test]
    fn pieces_report_the_first_bad_byte_like_read_text_file() {
        let bytes = b"caf\xc3\xa9 ok\nna\xefve";
        for size in [1, 2, 3, 5, 11, 12, 100] {
            match pieces_of(bytes, size) {
                Err(TextPrepError::NotUtf8 { byte, .. }) => assert_eq!(byte, 11, "{size}"),
                other => panic!("piece size {size}: {other:?}"),
            }
        }
        // A character cut by the end of the file.
        match pieces_of(b"ab\xe2\x82", 2) {
            Err(TextPrepError::NotUtf8 { byte, .. }) => assert_eq!(byte, 2),
            other => panic!("{other:?}"),
        }
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
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
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
