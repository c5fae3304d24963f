//! `lstm-lm generate`: stream text from a trained run.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use lstm_lm_train::{LoadedRun, SamplingConfig, TrainError};

use super::device_args::DeviceArgs;

/// Generate text from a prompt, token by token.
#[derive(Debug, Args)]
// A negative number after a flag is its value (refused by validation with a clear
// message), not an unknown flag.
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  lstm-lm generate --model runs/sample --prompt 'the keeper' --max-tokens 30
  lstm-lm generate --model runs/sample --prompt 'the lamp' --temperature 0.7 --top-p 0.9 --seed 3
  lstm-lm generate --model runs/sample --prompt 'the' --greedy | head -c 200"
)]
pub struct GenerateArgs {
    /// Run folder written by `lstm-lm train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Text to continue (empty: start from nothing).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 50)]
    pub max_tokens: usize,
    /// Softmax temperature (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Sample among the K most likely tokens only.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities add up to P (0 < P <= 1).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Always take the most likely token.
    #[arg(long)]
    pub greedy: bool,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs `lstm-lm generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let sampling = SamplingConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        greedy: args.greedy,
    };
    sampling.validate()?;
    if super::ngram::is_ngram_run(&args.model) {
        let (model, prompt) = (&args.model, &args.prompt);
        return super::ngram::generate(model, prompt, args.max_tokens, &sampling, args.seed);
    }
    let device = args.device.device()?;
    // On a pool thread, like training: see `lstm_lm_train::on_pool`.
    lstm_lm_train::on_pool(move || {
        let run = LoadedRun::load(&args.model, device)?;
        let mut out = std::io::stdout().lock();
        out.write_all(args.prompt.as_bytes())?;
        out.flush()?;
        // The library's callback error has no room for an `io::Error` source, so the write
        // error itself is kept here and returned whole: `main` recognises a closed pipe by it.
        let mut write_error: Option<std::io::Error> = None;
        let result = run.generate(
            &args.prompt,
            args.max_tokens,
            &sampling,
            args.seed,
            |piece| {
                out.write_all(piece.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| {
                        let stop =
                            TrainError::Input(format!("cannot write to standard output: {e}"));
                        write_error = Some(e);
                        stop
                    })
            },
        );
        if let Some(e) = write_error {
            return Err(
                anyhow::Error::new(e).context("cannot write the generated text to standard output")
            );
        }
        result?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    })
}
