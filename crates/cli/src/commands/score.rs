//! `lstm-lm score`: log-probabilities of a text under a run's model.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_infer::{InferError, LoadedRun, TextScore};

use super::device_args::DeviceArgs;
use super::embed::{TEXTS_PER_BLOCK, TextSource};

/// Score text: total and per-token log-probabilities, and perplexity.
#[derive(Debug, Args)]
// A negative number after a flag is its value (refused by validation with a clear
// message), not an unknown flag.
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  lstm-lm score --model runs/sample 'the lamp was lit at dusk'
  lstm-lm score --model runs/sample --file sentences.txt --json
  lstm-lm score --model runs/sample --file sentences.txt --cache 200:0.5:0.2"
)]
pub struct ScoreArgs {
    /// Run folder written by `lstm-lm train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// The text to score (or use --file).
    #[arg(conflicts_with = "file")]
    pub text: Option<String>,
    /// Score each line of this file (- for standard input); blank lines are skipped.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print JSON (one object per text: text, total_logprob, ppl, tokens with id, token and
    /// logprob, and the line number with --file).
    #[arg(long)]
    pub json: bool,
    /// Mix in the continuous cache pointer over each text's own earlier tokens (see `eval
    /// --cache`); the plain perplexity is printed next to the cached one.
    #[arg(long, value_name = "WINDOW[:θ:λ]")]
    pub cache: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs `lstm-lm score`. Lines of a file are scored in blocks, many at once (see
/// `LoadedRun::score_many`), and printed in input order; blank lines are skipped.
pub fn run(args: ScoreArgs) -> Result<()> {
    if args.text.is_none() && args.file.is_none() {
        bail!("give the text to score as an argument or with --file FILE");
    }
    let cache = args
        .cache
        .as_deref()
        .map(lstm_lm_infer::cache_pointer::CacheConfig::parse)
        .transpose()?;
    if super::ngram::is_ngram_run(&args.model) {
        if cache.is_some() {
            bail!(
                "--cache works on LSTM runs; \"{}\" is an n-gram run",
                args.model.display()
            );
        }
        let texts: Vec<String> = match (&args.text, &args.file) {
            (Some(t), _) => vec![t.clone()],
            (None, Some(path)) => lstm_lm_infer::data::read_file(path)?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect(),
            (None, None) => Vec::new(),
        };
        return super::ngram::score(&args, &texts);
    }
    let device = args.device.device()?;
    // On a pool thread, like training: see `lstm_lm_infer::on_pool`.
    lstm_lm_infer::on_pool(move || -> Result<()> {
        let run = LoadedRun::load(&args.model, device)?;
        let texts: Vec<String> = args.text.iter().cloned().collect();
        // Opened here: standard input's lock stays on this thread.
        let mut source = TextSource::new(&texts, args.file.as_deref())?;
        let mut out = std::io::stdout().lock();
        let mut line = 0usize;
        loop {
            let block = source.block(TEXTS_PER_BLOCK)?;
            if block.is_empty() {
                break;
            }
            // (line number from 1, text) of the lines that are not blank.
            let numbered: Vec<(usize, String)> = block
                .into_iter()
                .enumerate()
                .map(|(i, t)| (line + i + 1, t))
                .collect();
            line += numbered.len();
            let (lines, texts): (Vec<usize>, Vec<String>) = numbered
                .into_iter()
                .filter(|(_, t)| !t.trim().is_empty())
                .unzip();
            let scores: Vec<Result<(TextScore, Option<Plain>), InferError>> = match &cache {
                None => run
                    .score_many(&texts)
                    .into_iter()
                    .map(|s| s.map(|s| (s, None)))
                    .collect(),
                Some(cache) => texts
                    .iter()
                    .map(|t| {
                        run.score_with_cache(t, cache).map(|c| {
                            let plain = Plain {
                                total_logprob: c.plain_total_logprob,
                                ppl: c.plain_ppl,
                            };
                            (c.score, Some(plain))
                        })
                    })
                    .collect(),
            };
            for ((n, text), score) in lines.iter().zip(&texts).zip(scores) {
                let (s, plain) = score.map_err(|e| match &args.file {
                    Some(_) => anyhow::anyhow!("{}: {e}", source.describe(n - 1)),
                    None => e.into(),
                })?;
                let line = args.file.as_ref().map(|_| *n);
                print_score(&mut out, text, line, &s, plain.as_ref(), args.json)?;
            }
        }
        out.flush()?;
        Ok(())
    })
}

/// Prints each text's scores as `score` does (see [`print_score`]).
pub fn print_scores<'a>(
    scores: impl Iterator<Item = Result<(&'a str, TextScore), InferError>>,
    json: bool,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for scored in scores {
        let (text, s) = scored?;
        print_score(&mut out, text, None, &s, None, json)?;
    }
    out.flush()?;
    Ok(())
}

/// The plain model's figures on a text scored with `--cache`.
struct Plain {
    total_logprob: f64,
    ppl: f64,
}

/// One text's scores: the text, one line per token and a total line; or one JSON object (text,
/// total_logprob, ppl, tokens with id, token and logprob, and the line number of a file). With
/// `--cache`, the plain model's figures follow the cached ones (`plain_total_logprob`,
/// `plain_ppl`).
fn print_score(
    out: &mut impl Write,
    text: &str,
    line: Option<usize>,
    s: &TextScore,
    plain: Option<&Plain>,
    json: bool,
) -> Result<()> {
    if json {
        let tokens: Vec<serde_json::Value> = s
            .tokens
            .iter()
            .zip(&s.ids)
            .map(|((t, lp), id)| serde_json::json!({"id": id, "token": t, "logprob": lp}))
            .collect();
        let mut v = serde_json::json!({
            "text": text,
            "total_logprob": s.total_logprob,
            "ppl": s.ppl,
            "tokens": tokens,
        });
        if let Some(n) = line {
            v["line"] = serde_json::json!(n);
        }
        if let Some(p) = plain {
            v["plain_total_logprob"] = serde_json::json!(p.total_logprob);
            v["plain_ppl"] = serde_json::json!(p.ppl);
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{text}")?;
        for (t, lp) in &s.tokens {
            writeln!(out, "  {lp:>9.4}  {t}")?;
        }
        write!(
            out,
            "  total log-probability {:.4} over {} tokens, perplexity {:.2}",
            s.total_logprob,
            s.tokens.len(),
            s.ppl
        )?;
        match plain {
            Some(p) => writeln!(
                out,
                " (plain: log-probability {:.4}, perplexity {:.2})",
                p.total_logprob, p.ppl
            )?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}
