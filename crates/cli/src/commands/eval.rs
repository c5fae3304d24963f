//! `lstm-lm eval`: loss, perplexity and accuracy of a run on a text file.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use lstm_lm_train::LoadedRun;

use super::device_args::DeviceArgs;

/// Evaluate a trained run on a text file.
#[derive(Debug, Args)]
// A negative number after a flag is its value (refused by validation with a clear
// message), not an unknown flag.
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  lstm-lm eval --model runs/sample --data datasets/sample/valid.txt
  lstm-lm eval --model runs/wt2 --data data/wikitext-2/test.txt --json"
)]
pub struct EvalArgs {
    /// Run folder written by `lstm-lm train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Text to evaluate, prepared as the run's training data was.
    #[arg(long)]
    pub data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs `lstm-lm eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.device()?;
    let (model, data) = (args.model, args.data);
    // On a pool thread, like training: see `lstm_lm_train::on_pool`.
    let r = lstm_lm_train::on_pool(move || -> Result<_> {
        Ok(LoadedRun::load(&model, device)?.evaluate_file(&data)?)
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    } else {
        writeln!(
            out,
            "loss {:.4}  perplexity {:.2}  accuracy {:.4}  tokens {}",
            r.loss, r.ppl, r.accuracy, r.tokens
        )?;
    }
    out.flush()?;
    Ok(())
}
