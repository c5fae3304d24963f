//! `lstm-lm info`: what a run folder holds.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_model::burn::module::Module;
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_train::{MetricEvent, RunDir, read_events};

/// Show a run's configuration, size, vocabulary and training history.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm info --model runs/sample
  lstm-lm info --model runs/sample --json
  lstm-lm info --model runs/sample --print-config > again.toml")]
pub struct InfoArgs {
    /// Run folder written by `lstm-lm train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Print one JSON object.
    #[arg(long, conflicts_with = "print_config")]
    pub json: bool,
    /// Print the run's settings as TOML (a --config file that repeats the run) and nothing else.
    #[arg(long)]
    pub print_config: bool,
}

/// Runs `lstm-lm info`.
pub fn run(args: InfoArgs) -> Result<()> {
    let run = RunDir::new(&args.model);
    if !run.config_path().is_file() && super::ngram::is_ngram_run(&args.model) {
        return ngram_info(&args);
    }
    let config = run.load_config()?;
    if args.print_config {
        let mut out = std::io::stdout().lock();
        write!(out, "{}", config.settings.to_toml()?)?;
        out.flush()?;
        return Ok(());
    }
    let tokenizer = run.load_tokenizer(&config)?;
    let model = run.load_model(&config, &Device::flex())?;
    let params = model.num_params();
    let events = if run.metrics_path().exists() {
        read_events(&run.metrics_path())?
    } else {
        Vec::new()
    };
    let epochs: Vec<&MetricEvent> = events
        .iter()
        .filter(|e| matches!(e, MetricEvent::Epoch { .. }))
        .collect();
    let test = events
        .iter()
        .rev()
        .find(|e| matches!(e, MetricEvent::Test { .. }));
    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = serde_json::json!({
            "config": config,
            "parameters": params,
            "tokenizer": tokenizer.kind().name(),
            "vocab_size": tokenizer.vocab_size(),
            "epochs": epochs,
            "test": test,
        });
        writeln!(out, "{summary}")?;
        out.flush()?;
        return Ok(());
    }
    let m = &config.model;
    writeln!(out, "run        {}", args.model.display())?;
    if !config.settings.description.is_empty() {
        writeln!(out, "preset     {}", config.settings.description)?;
    }
    writeln!(
        out,
        "model      {:?} {} layer(s), embedding {}, hidden {}, dropout {}, tied {}",
        m.cell,
        m.num_layers,
        m.embedding_size,
        // Per-layer widths when they differ (AWD-LSTM's shape), bottom first.
        match &m.hidden_sizes {
            Some(sizes) => sizes
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => m.hidden_size.to_string(),
        },
        m.dropout_between,
        m.tie_weights
    )?;
    writeln!(out, "parameters {params}")?;
    writeln!(
        out,
        "tokenizer  {} with {} ids; recipe {:?}",
        tokenizer.kind().name(),
        tokenizer.vocab_size(),
        config.settings.data.recipe
    )?;
    writeln!(
        out,
        "optimizer  {:?} lr {} clip {:?}; backend {}",
        config.settings.optim.optimizer,
        config.settings.optim.lr,
        config.settings.optim.clip,
        config.backend
    )?;
    for e in &epochs {
        if let MetricEvent::Epoch {
            epoch,
            train_loss,
            valid_ppl,
            lr,
            best,
            ..
        } = e
        {
            writeln!(
                out,
                "epoch {epoch:>3}  train loss {train_loss:.4}  valid ppl {}  lr {lr:.4e}{}",
                valid_ppl
                    .map(|p| format!("{p:.2}"))
                    .unwrap_or_else(|| "-".into()),
                if *best { "  best" } else { "" }
            )?;
        }
    }
    if let Some(MetricEvent::Test { ppl, loss, .. }) = test {
        writeln!(out, "test       loss {loss:.4}  perplexity {ppl:.2}")?;
    }
    out.flush()?;
    Ok(())
}

/// `lstm-lm info` on a folder written by `lstm-lm ngram train`.
fn ngram_info(args: &InfoArgs) -> Result<()> {
    if args.print_config {
        bail!(
            "\"{}\" is an n-gram run: it has no training settings to print (`lstm-lm ngram train --help` lists its options)",
            args.model.display()
        );
    }
    let run = lstm_lm_ngram::NgramRun::load(&args.model)?;
    let counts = run.model.ngram_counts();
    let bytes =
        std::fs::metadata(args.model.join(lstm_lm_ngram::MODEL_FILE)).map_or(0, |m| m.len());
    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = serde_json::json!({
            "kind": "ngram",
            "order": run.model.order(),
            "ngram_counts": counts,
            "tokenizer": run.tokenizer.kind().name(),
            "vocab_size": run.tokenizer.vocab_size(),
            "model_bytes": bytes,
        });
        writeln!(out, "{summary}")?;
        return Ok(out.flush()?);
    }
    let per_order: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(k, n)| format!("{}-grams {n}", k + 1))
        .collect();
    writeln!(out, "run        {}", args.model.display())?;
    writeln!(
        out,
        "model      interpolated modified Kneser-Ney n-gram, order {}",
        run.model.order()
    )?;
    writeln!(out, "n-grams    {}", per_order.join(", "))?;
    writeln!(
        out,
        "tokenizer  {} with {} ids",
        run.tokenizer.kind().name(),
        run.tokenizer.vocab_size()
    )?;
    writeln!(out, "size       {bytes} bytes (ngram.bin)")?;
    Ok(out.flush()?)
}
