//! `lstm-lm eval`: loss, perplexity and accuracy of a run on a text file; an n-gram run's
//! loss and perplexity; an LSTM mixed with an n-gram model (`--mix`).
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lstm_lm_infer::{LoadedNgramRun, LoadedRun};

use super::device_args::DeviceArgs;

/// Evaluate a trained run on a text file.
#[derive(Debug, Args)]
// A negative number after a flag is its value (refused by validation with a clear
// message), not an unknown flag.
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  lstm-lm eval --model runs/sample --data datasets/sample/valid.txt
  lstm-lm eval --model runs/wt2 --data data/wikitext-2/test.txt --json
  lstm-lm eval --model runs/kn5 --data data/wikitext-2/test.txt
  lstm-lm eval --model runs/wt2 --mix runs/kn5:0.1,0.3,0.5 --data data/wikitext-2/test.txt
  lstm-lm eval --model runs/wt2 --data test.txt --cache 2000 --tune-cache valid.txt
  lstm-lm eval --model runs/wt2 --data test.txt --dynamic --tune-dynamic valid.txt
  lstm-lm eval --model runs/wt2 --data test.txt --dynamic 1.0:0.001 --dynamic-rule sgd"
)]
pub struct EvalArgs {
    /// Run folder written by `lstm-lm train` or `lstm-lm ngram train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Text to evaluate, prepared as the run's training data was.
    #[arg(long)]
    pub data: PathBuf,
    /// Mix an n-gram run into the LSTM, token by token: (1 − λ) p_lstm + λ p_ngram, for each
    /// weight λ (0 to 1) of a comma-separated list. Both runs must share one tokenizer.
    #[arg(long, value_name = "NGRAM_RUN:λ[,λ…]")]
    pub mix: Option<String>,
    /// Print one JSON object (one per λ with --mix).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub adapt: super::eval_adapt::AdaptArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs `lstm-lm eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.adapt.any() {
        if args.mix.is_some() {
            anyhow::bail!("--mix does not combine with --cache or --dynamic: give one of them");
        }
        if super::ngram::is_ngram_run(&args.model) {
            anyhow::bail!(
                "--cache and --dynamic adapt an LSTM run; \"{}\" is an n-gram run",
                args.model.display()
            );
        }
        return super::eval_adapt::run(args.model, args.data, &args.adapt, args.device, args.json);
    }
    if super::ngram::is_ngram_run(&args.model) {
        return super::ngram::eval(args);
    }
    if let Some(spec) = &args.mix {
        return mix(&args, spec);
    }
    let device = args.device.device()?;
    let (model, data) = (args.model, args.data);
    // On a pool thread, like training: see `lstm_lm_infer::on_pool`.
    let r = lstm_lm_infer::on_pool(move || -> Result<_> {
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

/// Parses `RUN:λ[,λ…]`.
fn parse_mix(spec: &str) -> Result<(PathBuf, Vec<f64>)> {
    let usage = "give --mix NGRAM_RUN:λ with λ from 0 to 1 (several: NGRAM_RUN:0.1,0.3)";
    let (run, weights) = spec
        .rsplit_once(':')
        .with_context(|| format!("--mix {spec:?} has no weight: {usage}"))?;
    let lambdas = weights
        .split(',')
        .map(|w| {
            w.trim()
                .parse::<f64>()
                .ok()
                .filter(|l| (0.0..=1.0).contains(l))
                .with_context(|| format!("--mix weight {w:?} is not a number from 0 to 1: {usage}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((PathBuf::from(run), lambdas))
}

fn mix(args: &EvalArgs, spec: &str) -> Result<()> {
    let (ngram_dir, lambdas) = parse_mix(spec)?;
    if !super::ngram::is_ngram_run(&ngram_dir) {
        anyhow::bail!(
            "--mix \"{}\" is not an n-gram run folder (no ngram.bin): pass the --out folder of `lstm-lm ngram train`",
            ngram_dir.display()
        );
    }
    let device = args.device.device()?;
    let (model, data) = (args.model.clone(), args.data.clone());
    let results = lstm_lm_infer::on_pool(move || -> Result<_> {
        let lstm = LoadedRun::load(&model, device)?;
        let ngram = LoadedNgramRun::load(&ngram_dir)?;
        Ok(lstm_lm_infer::evaluate_mixture(
            &lstm, &ngram, &lambdas, &data,
        )?)
    })?;
    let mut out = std::io::stdout().lock();
    for r in &results {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        } else {
            writeln!(
                out,
                "mix λ={:.2}  loss {:.4}  perplexity {:.2}  (lstm {:.2}, n-gram {:.2})  tokens {}",
                r.lambda, r.loss, r.ppl, r.lstm_ppl, r.ngram_ppl, r.tokens
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
