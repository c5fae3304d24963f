//! `lstm-lm encode`: the token ids of each line of a text.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lstm_lm_text_prep::TextTokenizer;

use super::input::{Lines, quoted};

/// Print the token ids of each line of a text, one line of ids per line of text.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm encode --tokenizer tokenizer.json corpus.txt
  echo 'the keeper' | lstm-lm encode --tokenizer runs/sample/tokenizer.json --json
  lstm-lm encode --tokenizer zh.json --tokens zh.txt")]
pub struct EncodeArgs {
    /// Tokenizer written by `lstm-lm tokenize`.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,
    /// Text to encode (UTF-8); `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print each line's ids as a JSON array instead of space-separated numbers.
    #[arg(long)]
    pub json: bool,
    /// Print each line's tokens instead of their ids (separated by spaces, or a JSON array of
    /// strings with --json): the words a segmenting tokenizer found, for instance.
    #[arg(long)]
    pub tokens: bool,
}

/// Runs `lstm-lm encode`.
pub fn run(args: EncodeArgs) -> Result<()> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)
        .with_context(|| format!("cannot use --tokenizer {}", quoted(&args.tokenizer)))?;
    let mut lines = Lines::open(args.input.as_deref())?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut text = String::new();
    while let Some(line) = lines.next_line()? {
        let ids = tokenizer.encode_line(line)?;
        text.clear();
        if args.json {
            text.push('[');
        }
        let sep = if args.json { "," } else { " " };
        for (i, &id) in ids.iter().enumerate() {
            if i > 0 {
                text.push_str(sep);
            }
            if args.tokens {
                let token = tokenizer.id_to_token(id).unwrap_or_default();
                if args.json {
                    text.push_str(&serde_json::to_string(&token)?);
                } else {
                    text.push_str(&token);
                }
            } else {
                text.push_str(&id.to_string());
            }
        }
        if args.json {
            text.push(']');
        }
        text.push('\n');
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
