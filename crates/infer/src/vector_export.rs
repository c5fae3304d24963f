//! `export --format word2vec|projector`: a run's word vectors in the files other tools read.
//!
//! - **word2vec** (text): the header `COUNT DIM`, then one line per word, `WORD V1 V2 ...`,
//!   separated by single spaces, as gensim's `KeyedVectors.load_word2vec_format(path,
//!   binary=False)` and fastText read it.
//! - **projector**: a folder with `vectors.tsv` (one row per word, values separated by tabs, no
//!   header) and `metadata.tsv` (one word per line, no header, as the TensorBoard Embedding
//!   Projector wants for a single column), line `n` of one belonging to line `n` of the other.
//!
//! Both list every id in order except Keras' padding id (not a word). Values are written in
//! the shortest form that reads back as the same `f32`. These formats belong to other tools
//! and have no room for a format tag.
//!
//! **Words with spaces**: both readers split lines on spaces or tabs, so a token that holds
//! whitespace (the character tokenizer's `" "`, `"\n"`, `"\t"`) or a backslash is written with
//! backslash escapes: `\s` space, `\t` tab, `\n` line feed, `\r` carriage return, `\\`
//! backslash, `\u{XXXX}` any other whitespace or control character. The escaped form is
//! unambiguous (the backslash itself is escaped), and words without these characters are
//! written as they are.
use std::fmt::Write as _;
use std::path::Path;

use lstm_lm_model::VectorTable;

use crate::atomic::write_atomic;
use crate::{InferError, LoadedRun};

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorExport {
    /// Words written.
    pub words: usize,
    /// Values per word.
    pub dim: usize,
}

/// The ids and their tokens, padding left out.
fn words(run: &LoadedRun, rows: usize) -> Vec<(usize, String)> {
    let pad = run.tokenizer.pad_id();
    (0..rows)
        .filter(|&id| Some(id as u32) != pad)
        .map(|id| {
            let token = run.tokenizer.id_to_token(id as u32).unwrap_or_default();
            (id, escape_token(&token))
        })
        .collect()
}

/// Writes `table` of `run` as a word2vec text file at `out` (atomically).
pub fn export_word2vec(
    run: &LoadedRun,
    table: VectorTable,
    out: &Path,
) -> Result<VectorExport, InferError> {
    let t = run.model.word_table(table)?;
    let words = words(run, t.rows());
    let mut text = String::with_capacity(words.len() * (t.dim * 11 + 16));
    let _ = writeln!(text, "{} {}", words.len(), t.dim);
    for (id, word) in &words {
        text.push_str(word);
        for v in t.row(*id) {
            let _ = write!(text, " {v}");
        }
        text.push('\n');
    }
    write_atomic(out, text.as_bytes())?;
    Ok(VectorExport {
        words: words.len(),
        dim: t.dim,
    })
}

/// Writes `table` of `run` as `vectors.tsv` and `metadata.tsv` into the folder `out` (created
/// if needed; each file atomically).
pub fn export_projector(
    run: &LoadedRun,
    table: VectorTable,
    out: &Path,
) -> Result<VectorExport, InferError> {
    let t = run.model.word_table(table)?;
    let words = words(run, t.rows());
    std::fs::create_dir_all(out).map_err(|e| InferError::io(out, e))?;
    let mut vectors = String::with_capacity(words.len() * t.dim * 11);
    let mut metadata = String::with_capacity(words.len() * 8);
    for (id, word) in &words {
        let row: Vec<String> = t.row(*id).iter().map(f32::to_string).collect();
        vectors.push_str(&row.join("\t"));
        vectors.push('\n');
        metadata.push_str(word);
        metadata.push('\n');
    }
    write_atomic(&out.join("vectors.tsv"), vectors.as_bytes())?;
    write_atomic(&out.join("metadata.tsv"), metadata.as_bytes())?;
    Ok(VectorExport {
        words: words.len(),
        dim: t.dim,
    })
}

/// A token as word2vec and TSV readers can take it back: whitespace, control characters and
/// backslashes escaped (see the module docs); an empty token becomes `\e`.
pub fn escape_token(token: &str) -> String {
    if token.is_empty() {
        return "\\e".to_string();
    }
    let mut out = String::with_capacity(token.len());
    for c in token.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' => out.push_str("\\s"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_whitespace() || c.is_control() => {
                let _ = write!(out, "\\u{{{:04X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_with_whitespace_are_escaped_and_others_kept() {
        assert_eq!(escape_token("keeper"), "keeper");
        assert_eq!(escape_token("Ġthe"), "Ġthe");
        assert_eq!(escape_token(" "), "\\s");
        assert_eq!(escape_token("\n"), "\\n");
        assert_eq!(escape_token("a\\s"), "a\\\\s");
        assert_eq!(escape_token("\u{a0}"), "\\u{00A0}");
        assert_eq!(escape_token(""), "\\e");
        // Distinct tokens stay distinct.
        assert_ne!(escape_token(" "), escape_token("\\s"));
    }
}
