//! `lstm-lm similar`: the lines of a file nearest to a query by the cosine of their sentence
//! vectors: a semantic search over a corpus in one command.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_infer::LoadedRun;

use super::device_args::DeviceArgs;
use super::embed::{TEXTS_PER_BLOCK, TextSource, embed_options};

/// Lines of a file nearest to a query text, by cosine similarity of sentence vectors.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm similar --model runs/sample --query 'the lamp was lit' --file datasets/sample/corpus.txt
  lstm-lm similar --model runs/sample --query 'ships at sea' --file corpus.txt -k 3 --pool mean --json")]
pub struct SimilarArgs {
    /// Run folder written by `lstm-lm train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// The text to search for.
    #[arg(long)]
    pub query: String,
    /// The lines to search (- for standard input).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// How many lines to print.
    #[arg(short = 'k', long = "top", default_value_t = 10)]
    pub k: usize,
    /// How positions become one vector: last, mean or max (as `embed`).
    #[arg(long, default_value = "last", value_name = "last|mean|max")]
    pub pool: String,
    /// Which layer's states: a number from 0, top, or all (as `embed`).
    #[arg(long, default_value = "top", value_name = "N|top|all")]
    pub layer: String,
    /// One JSON object per line found: {"rank", "line", "similarity", "text"}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Cosine similarity; `None` when either vector is zero or not finite.
fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let c = dot / (na.sqrt() * nb.sqrt());
    c.is_finite().then_some(c)
}

/// Runs `lstm-lm similar`.
pub fn run(args: SimilarArgs) -> Result<()> {
    if args.k == 0 {
        bail!("-k must be at least 1");
    }
    let opts = embed_options(&args.pool, &args.layer)?;
    let device = args.device.device()?;
    lstm_lm_infer::on_pool(move || -> Result<()> {
        // Opened here: standard input's lock stays on this thread.
        let mut source = TextSource::new(&[], Some(&args.file))?;
        let run = LoadedRun::load(&args.model, device)?;
        let query = run
            .embed_many(std::slice::from_ref(&args.query), &opts)
            .pop()
            .unwrap_or_else(|| Err(lstm_lm_infer::InferError::Input("empty query".into())))
            .map_err(|e| anyhow::anyhow!("--query: {e}"))?;
        // The k best so far, best first: (similarity, line number from 1, text).
        let mut best: Vec<(f64, usize, String)> = Vec::with_capacity(args.k + 1);
        let mut index = 0usize;
        loop {
            let block = source.block(TEXTS_PER_BLOCK)?;
            if block.is_empty() {
                break;
            }
            let vectors = run.embed_many(&block, &opts);
            for (text, v) in block.into_iter().zip(vectors) {
                index += 1;
                // Lines with no known token have no vector: they cannot be near anything.
                let Some(sim) = v.ok().and_then(|v| cosine(&query, &v)) else {
                    continue;
                };
                if best.len() == args.k && best.last().is_some_and(|b| b.0 >= sim) {
                    continue;
                }
                let at = best.partition_point(|b| b.0 >= sim);
                best.insert(at, (sim, index, text));
                best.truncate(args.k);
            }
        }
        if best.is_empty() {
            bail!(
                "{} has no line with a word this model knows",
                source
                    .describe(0)
                    .rsplit_once(" line")
                    .map_or("the file", |p| p.0)
            );
        }
        let mut out = std::io::stdout().lock();
        for (rank, (sim, line, text)) in best.iter().enumerate() {
            if args.json {
                let v = serde_json::json!({
                    "rank": rank + 1, "line": line, "similarity": sim, "text": text,
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{sim:.4}\t{line}\t{text}")?;
            }
        }
        out.flush()?;
        Ok(())
    })
}
