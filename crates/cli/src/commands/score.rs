//! `lstm-lm score`: log-probabilities of a text under a run's model.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_train::{LoadedRun, TextScore, TrainError};

use super::device_args::DeviceArgs;

/// Score text: total and per-token log-probabilities, and perplexity.
#[derive(Debug, Args)]
// A negative number after a flag is its value (refused by validation with a clear
// message), not an unknown flag.
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  lstm-lm score --model runs/sample 'the lamp was lit at dusk'
  lstm-lm score --model runs/sample --file sentences.txt --json"
)]
pub struct ScoreArgs {
    /// Run folder written by `lstm-lm train` or `lstm-lm ngram train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// The text to score (or use --file).
    #[arg(conflicts_with = "file")]
    pub text: Option<String>,
    /// Score each line of this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print JSON (one object per text).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs `lstm-lm score`.
pub fn run(args: ScoreArgs) -> Result<()> {
    let texts: Vec<String> = match (&args.text, &args.file) {
        (Some(t), None) => vec![t.clone()],
        (None, Some(path)) => lstm_lm_train::data::read_file(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        _ => bail!("give the text to score as an argument or with --file FILE"),
    };
    if super::ngram::is_ngram_run(&args.model) {
        return super::ngram::score(&args, &texts);
    }
    let device = args.device.device()?;
    let (model, json) = (args.model, args.json);
    // On a pool thread, like training: see `lstm_lm_train::on_pool`.
    lstm_lm_train::on_pool(move || -> Result<()> {
        let run = LoadedRun::load(&model, device)?;
        print_scores(texts.iter().map(|t| Ok((t.as_str(), run.score(t)?))), json)
    })
}

/// Prints each text's scores as `score` does: the text, one line per token and a total line,
/// or one JSON object per text.
pub fn print_scores<'a>(
    scores: impl Iterator<Item = Result<(&'a str, TextScore), TrainError>>,
    json: bool,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for scored in scores {
        let (text, s) = scored?;
        if json {
            let tokens: Vec<serde_json::Value> = s
                .tokens
                .iter()
                .map(|(t, lp)| serde_json::json!({"token": t, "logprob": lp}))
                .collect();
            let line = serde_json::json!({
                "text": text,
                "total_logprob": s.total_logprob,
                "ppl": s.ppl,
                "tokens": tokens,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{text}")?;
            for (t, lp) in &s.tokens {
                writeln!(out, "  {lp:>9.4}  {t}")?;
            }
            writeln!(
                out,
                "  total log-probability {:.4} over {} tokens, perplexity {:.2}",
                s.total_logprob,
                s.tokens.len(),
                s.ppl
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
