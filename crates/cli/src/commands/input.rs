//! Reading a text line by line from a file or standard input, with errors that name it.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Lines of a file, or of standard input for `-` or no file, read as they are needed.
///
/// Lines end at `\n`, which is not part of the line; a final `\n` does not start an extra line.
pub struct Lines {
    reader: Box<dyn BufRead>,
    name: String,
    buf: Vec<u8>,
    /// Offset of the next line's first byte in the input.
    offset: usize,
    /// Number of the last line read, from 1.
    number: usize,
}

impl Lines {
    /// Opens `path`, or standard input when it is `None` or `-`.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let (reader, name): (Box<dyn BufRead>, String) = match path {
            None => (Box::new(io::stdin().lock()), "standard input".into()),
            Some(p) if p == Path::new("-") => {
                (Box::new(io::stdin().lock()), "standard input".into())
            }
            Some(p) => {
                let file = File::open(p).with_context(|| {
                    format!(
                        "cannot read \"{}\" (check that it exists and is readable)",
                        p.display()
                    )
                })?;
                (
                    Box::new(BufReader::new(file)),
                    format!("\"{}\"", p.display()),
                )
            }
        };
        Ok(Self {
            reader,
            name,
            buf: Vec::new(),
            offset: 0,
            number: 0,
        })
    }

    /// The input's name for messages: a quoted path or `standard input`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of the last line returned, counting from 1.
    pub fn number(&self) -> usize {
        self.number
    }

    /// The next line, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<&str>> {
        self.buf.clear();
        let read = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("cannot read {}", self.name))?;
        if read == 0 {
            return Ok(None);
        }
        let start = self.offset;
        self.offset += read;
        self.number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(line) => Ok(Some(line)),
            Err(e) => bail!(
                "{} is not valid UTF-8 at byte {} (line {}); convert it to UTF-8 first",
                self.name,
                start + e.valid_up_to(),
                self.number
            ),
        }
    }
}

/// The path for messages, quoted.
pub fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// Paths given on the command line, for reading whole files.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<String>> {
    paths
        .iter()
        .map(|p| Ok(lstm_lm_text_prep::read_text_file(p)?))
        .collect()
}
