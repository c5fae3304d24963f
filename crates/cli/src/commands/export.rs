//! `lstm-lm export`: a run's weights or word vectors in files other tools read.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lstm_lm_infer::{LoadedRun, export_projector, export_safetensors, export_word2vec};
use lstm_lm_model::VectorTable;

use super::device_args::DeviceArgs;

/// Write a run's weights (PyTorch safetensors) or word vectors (word2vec, Embedding Projector).
#[derive(Debug, Args)]
#[command(after_help = "Formats:
  safetensors  the weights under PyTorch word_language_model names (encoder.weight, rnn.weight_ih_l0, ...,
               decoder.weight, decoder.bias), the model config in the metadata; FILE
  word2vec     text: 'COUNT DIM', then 'WORD V1 V2 ...' per word (gensim, fastText); FILE
  projector    vectors.tsv and metadata.tsv for the TensorBoard Embedding Projector; a FOLDER

Examples:
  lstm-lm export --model runs/wt2 --format safetensors --out wt2.safetensors
  lstm-lm export --model runs/wt2 --format word2vec --out wt2.vec
  lstm-lm export --model runs/wt2 --format projector --table output --out wt2-projector")]
pub struct ExportArgs {
    /// Run folder written by `lstm-lm train` or `lstm-lm import`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// safetensors, word2vec or projector.
    #[arg(long)]
    pub format: String,
    /// The file to write (a folder for projector).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Word vectors to write (word2vec, projector): input (the embedding) or output (the
    /// projection's rows).
    #[arg(long)]
    pub table: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Word2vec,
    Projector,
}

/// Runs `lstm-lm export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let format = match args.format.as_str() {
        "safetensors" => Format::Safetensors,
        "word2vec" => Format::Word2vec,
        "projector" => Format::Projector,
        other => bail!("unknown --format '{other}': use safetensors, word2vec or projector"),
    };
    let table: VectorTable = match (&args.table, format) {
        (Some(_), Format::Safetensors) => {
            bail!(
                "--table applies to --format word2vec and projector; safetensors holds every weight"
            )
        }
        (Some(t), _) => t.parse().map_err(|e| anyhow::anyhow!("--table: {e}"))?,
        (None, _) => VectorTable::Input,
    };
    let device = args.device.device()?;
    let (model, out) = (args.model, args.out);
    let message = lstm_lm_infer::on_pool(move || -> Result<String> {
        let run = LoadedRun::load(&model, device)?;
        let cannot = || format!("cannot write --out \"{}\"", out.display());
        Ok(match format {
            Format::Safetensors => {
                export_safetensors(&run, &out).with_context(cannot)?;
                let m = &run.config.model;
                format!(
                    "wrote {} ({:?}, {} layer(s), embedding {}, hidden {}, vocab {}, tied {}) as safetensors to {}",
                    model.display(),
                    m.cell,
                    m.num_layers,
                    m.embedding_size,
                    m.hidden_size,
                    m.vocab_size,
                    m.tie_weights,
                    out.display()
                )
            }
            Format::Word2vec | Format::Projector => {
                let written = if format == Format::Word2vec {
                    export_word2vec(&run, table, &out)
                } else {
                    export_projector(&run, table, &out)
                }
                .with_context(cannot)?;
                format!(
                    "wrote {} words x {} ({} table) to {}",
                    written.words,
                    written.dim,
                    table,
                    out.display()
                )
            }
        })
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{message}")?;
    stdout.flush()?;
    Ok(())
}
