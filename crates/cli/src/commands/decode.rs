//! `lstm-lm decode`: the text of each line of token ids.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lstm_lm_text_prep::TextTokenizer;

use super::input::{Lines, quoted};

/// Print the text of each line of token ids (space-separated numbers or a JSON array).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm decode --tokenizer tokenizer.json ids.txt
  lstm-lm encode --tokenizer tok.json corpus.txt | lstm-lm decode --tokenizer tok.json")]
pub struct DecodeArgs {
    /// Tokenizer written by `lstm-lm tokenize`.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,
    /// Ids to decode, one sequence per line; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,
}

/// Runs `lstm-lm decode`.
///
/// Each line of ids becomes one line of text; text that already ends with a newline (a word
/// tokenizer's `<eos>`) gets no second one, so `encode | decode` gives the text back.
pub fn run(args: DecodeArgs) -> Result<()> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)
        .with_context(|| format!("cannot use --tokenizer {}", quoted(&args.tokenizer)))?;
    let vocab_size = tokenizer.vocab_size();
    let mut lines = Lines::open(args.input.as_deref())?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    while let Some(line) = lines.next_line()? {
        let ids = parse_ids(line)
            .with_context(|| format!("line {} of {}", lines.number(), lines.name()))?;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            bail!(
                "line {} of {}: id {id} is out of range for --tokenizer {}, whose ids go from 0 to {}; decode ids made with the same tokenizer",
                lines.number(),
                lines.name(),
                quoted(&args.tokenizer),
                vocab_size.saturating_sub(1)
            );
        }
        let mut text = tokenizer.decode(&ids);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// The ids of one line: a JSON array, or numbers separated by whitespace.
fn parse_ids(line: &str) -> Result<Vec<u32>> {
    let line = line.trim();
    if line.starts_with('[') {
        return serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!("not a JSON array of token ids ({e}); write ids as [1,2,3] or 1 2 3")
        });
    }
    line.split_whitespace()
        .map(|word| {
            word.parse::<u32>().map_err(|_| {
                anyhow::anyhow!(
                    "{word:?} is not a token id; write ids as whole numbers such as 1 2 3"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<&[u32], &str>) {
        let got = parse_ids(line).map_err(|e| e.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expected, "{line:?}");
    }

    #[test]
    fn ids_as_numbers_or_json() {
        check("", Ok(&[]));
        check("  ", Ok(&[]));
        check("1 2  3\t4\r", Ok(&[1, 2, 3, 4]));
        check("[1, 2,3]", Ok(&[1, 2, 3]));
        check("[]", Ok(&[]));
        check(
            "1 x",
            Err("\"x\" is not a token id; write ids as whole numbers such as 1 2 3"),
        );
        check(
            "-1",
            Err("\"-1\" is not a token id; write ids as whole numbers such as 1 2 3"),
        );
        check(
            "1.5",
            Err("\"1.5\" is not a token id; write ids as whole numbers such as 1 2 3"),
        );
        let err = parse_ids("[1, \"a\"]").unwrap_err().to_string();
        assert!(err.starts_with("not a JSON array of token ids ("), "{err}");
    }
}
