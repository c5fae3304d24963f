//! Fortune files (Debian's `fortunes-*` packages) as training text: entries separated by lines
//! holding `%`, turned into one line per entry for recipes that model whole entries (a Tang
//! poem per line).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One line per entry of a fortune file: the entry's lines joined without a separator (the
/// verses of a Chinese poem run on), after dropping the lines that carry a terminal escape
/// code (in fortunes-zh, the colour-coded title and author) and the blank lines. Entries left
/// empty are dropped; `\r` before a line end is ignored.
pub fn entries_as_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut entry = String::new();
    let flush = |entry: &mut String, out: &mut String| {
        if !entry.is_empty() {
            out.push_str(entry);
            out.push('\n');
            entry.clear();
        }
    };
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim() == "%" {
            flush(&mut entry, &mut out);
        } else if !line.contains('\x1b') && !line.trim().is_empty() {
            entry.push_str(line.trim());
        }
    }
    flush(&mut entry, &mut out);
    out
}

/// Writes [`entries_as_lines`] of the fortune file `source` beside it, as `NAME.lines.txt`
/// (atomically), and returns that path.
pub fn write_entries_as_lines(source: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let mut name = source.file_name().unwrap_or_default().to_os_string();
    name.push(".lines.txt");
    let out = source.with_file_name(name);
    lstm_lm_train::write_atomic(&out, entries_as_lines(&text).as_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_lines_without_titles() {
        let text = "\x1b[32m《感遇》\x1b[m\n\x1b[33m作者：张九龄\x1b[m\n兰叶春葳蕤，桂华秋皎洁。\n欣欣此生意，自尔为佳节。\n%\n\x1b[32m《静夜思》\x1b[m\r\n床前明月光，疑是地上霜。\r\n\r\n举头望明月，低头思故乡。\r\n%\n%\n";
        assert_eq!(
            entries_as_lines(text),
            "兰叶春葳蕤，桂华秋皎洁。欣欣此生意，自尔为佳节。\n床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
        );
        assert_eq!(entries_as_lines(""), "");
        assert_eq!(
            entries_as_lines("no separator\nat all"),
            "no separatorat all\n"
        );
    }
}
