//! Fit + encode speed of the word, Keras and character tokenizers on one file.
//!
//! `cargo bench -p lstm-lm-text-prep [-- FILE]`, or `LSTM_LM_BENCH_FILE=FILE`. The default file
//! is WikiText-2's training text, `../shared/datasets/wikitext-2/train.txt` from the workspace
//! root; the benchmark says so and stops when it is not there.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lstm_lm_text_prep::{TextTokenizer, TokenizerConfig, TokenizerKind, read_text_file};

fn main() {
    let path = bench_file();
    let path = path.canonicalize().unwrap_or(path);
    if !path.exists() {
        println!(
            "skipped: {} is not there (pass a file or set LSTM_LM_BENCH_FILE)",
            path.display()
        );
        return;
    }
    let text = match read_text_file(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("file: {} ({} bytes)", path.display(), text.len());
    for kind in [
        TokenizerKind::KerasWord,
        TokenizerKind::Word,
        TokenizerKind::Char,
    ] {
        bench(kind, &text);
    }
}

/// The file named on the command line (cargo adds `--bench`, which is skipped), in the
/// environment, or the default.
fn bench_file() -> PathBuf {
    let from_args = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let from_env = std::env::var("LSTM_LM_BENCH_FILE").ok();
    from_args.or(from_env).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/datasets/wikitext-2/train.txt")
        },
        PathBuf::from,
    )
}

/// Best of three runs of fit + encode, to keep noise from other processes out.
fn bench(kind: TokenizerKind, text: &str) {
    let config = TokenizerConfig::new(kind);
    let mut best = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..3 {
        let start = Instant::now();
        let tokenizer = match TextTokenizer::fit(&config, &[text]) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        let fitted = start.elapsed();
        let ids = match tokenizer.encode_text(text) {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        let total = start.elapsed();
        if total < best.1 {
            best = (fitted, total, ids.len());
        }
    }
    let (fit, total, tokens) = best;
    let per_s = tokens as f64 / total.as_secs_f64();
    println!(
        "{kind:>10}: {tokens} tokens, fit {:.3} s, fit+encode {:.3} s, {:.2} M tokens/s, {:.3} s per M tokens",
        fit.as_secs_f64(),
        total.as_secs_f64(),
        per_s / 1e6,
        1e6 / per_s,
    );
}
