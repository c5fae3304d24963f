//! `lstm-lm import`: a run folder from a PyTorch word_language_model state dict.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_infer::{ImportOptions, import_torch};
use lstm_lm_model::CellKind;

/// Make a run folder from a PyTorch state dict in a safetensors file and a tokenizer.json.
#[derive(Debug, Args)]
#[command(
    after_help = "The tensors must be named as pytorch/examples' word_language_model names them:
encoder.weight, rnn.weight_ih_l{k}, rnn.weight_hh_l{k}, rnn.bias_ih_l{k}, rnn.bias_hh_l{k} and
decoder.bias, with decoder.weight unless the weights are tied. Sizes, layers and the cell come
from the shapes. The tokenizer is an lstm-lm tokenizer.json (`lstm-lm tokenize`) whose ids are
the rows of encoder.weight.

Examples:
  lstm-lm import --weights wt2.safetensors --tokenizer runs/wt2/tokenizer.json --out runs/wt2-copy
  lstm-lm import --weights gru.safetensors --tokenizer tokenizer.json --out runs/gru --cell gru"
)]
pub struct ImportArgs {
    /// The safetensors file (PyTorch: safetensors.torch.save_file(model.state_dict(), FILE)).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// The tokenizer.json whose ids the weights use.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,
    /// The run folder to create (new or empty).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// The cell the weights must be: lstm, gru or rnn (default: what the shapes say).
    #[arg(long)]
    pub cell: Option<String>,
}

/// Runs `lstm-lm import`.
pub fn run(args: ImportArgs) -> Result<()> {
    let cell = match args.cell.as_deref() {
        None => None,
        Some("lstm") => Some(CellKind::Lstm),
        Some("gru") => Some(CellKind::Gru),
        Some("rnn") => Some(CellKind::Rnn),
        Some(other) => bail!("unknown --cell '{other}': use lstm, gru or rnn"),
    };
    let opts = ImportOptions {
        weights: args.weights,
        tokenizer: args.tokenizer,
        out: args.out,
        cell,
    };
    let config = import_torch(&opts)?;
    let m = &config.model;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "imported {:?} {} layer(s), embedding {}, hidden {}, vocab {}, tied {} into {}",
        m.cell,
        m.num_layers,
        m.embedding_size,
        m.hidden_size,
        m.vocab_size,
        m.tie_weights,
        opts.out.display()
    )?;
    out.flush()?;
    Ok(())
}
