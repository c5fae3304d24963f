//! `lstm-lm neighbors`: nearest words and analogies in a run's word vectors.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_infer::{LoadedRun, WordNeighbor, WordSearch};
use lstm_lm_model::VectorTable;

use super::device_args::DeviceArgs;

/// Nearest words by cosine similarity of their vectors, or word2vec analogies.
#[derive(Debug, Args)]
#[command(
    allow_negative_numbers = true,
    after_help = "The query words themselves are never listed (each is its own nearest word, similarity 1).

Examples:
  lstm-lm neighbors --model runs/wt2 king queen -k 5
  lstm-lm neighbors --model runs/wt2 --analogy man king woman
  lstm-lm neighbors --model runs/wt2 river --table output --json"
)]
pub struct NeighborsArgs {
    /// Run folder written by `lstm-lm train` or `lstm-lm import`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Words to find neighbours of.
    #[arg(
        value_name = "WORD",
        required_unless_present = "analogy",
        conflicts_with = "analogy"
    )]
    pub words: Vec<String>,
    /// How many words to list per query.
    #[arg(short = 'k', long = "top", default_value_t = 10)]
    pub k: usize,
    /// Word vectors to search: input (the embedding) or output (the projection's rows; the
    /// same when weights are tied).
    #[arg(long, default_value = "input")]
    pub table: String,
    /// "A is to B as C is to ?": words nearest to B - A + C, the three left out.
    #[arg(long, num_args = 3, value_names = ["A", "B", "C"])]
    pub analogy: Option<Vec<String>>,
    /// Print one JSON object per query.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// One query and what it found.
struct Answer {
    label: serde_json::Value,
    title: String,
    found: Vec<WordNeighbor>,
}

/// Runs `lstm-lm neighbors`.
pub fn run(args: NeighborsArgs) -> Result<()> {
    if args.k == 0 {
        bail!("-k must be at least 1");
    }
    let table: VectorTable = args
        .table
        .parse()
        .map_err(|e| anyhow::anyhow!("--table: {e}"))?;
    let device = args.device.device()?;
    let NeighborsArgs {
        model,
        words,
        k,
        analogy,
        json,
        ..
    } = args;
    // On a pool thread, like the other model commands: see `lstm_lm_infer::on_pool`.
    let answers = lstm_lm_infer::on_pool(move || -> Result<Vec<Answer>> {
        let run = LoadedRun::load(&model, device)?;
        let search = WordSearch::new(&run, table)?;
        if let Some(abc) = analogy {
            let [a, b, c] = [&abc[0], &abc[1], &abc[2]];
            let found = search.analogy(a, b, c, k)?;
            return Ok(vec![Answer {
                label: serde_json::json!({ "analogy": [a, b, c] }),
                title: format!("{a} : {b} :: {c} : ?"),
                found,
            }]);
        }
        // Every word is looked up before anything is printed, so a typo prints nothing else.
        for w in &words {
            search.word_id(w)?;
        }
        words
            .iter()
            .map(|w| {
                Ok(Answer {
                    label: serde_json::json!({ "query": w }),
                    title: w.clone(),
                    found: search.neighbors(w, k)?,
                })
            })
            .collect()
    })?;
    let mut out = std::io::stdout().lock();
    for answer in answers {
        if json {
            let mut line = answer.label;
            line["table"] = table.name().into();
            line["neighbors"] = serde_json::to_value(&answer.found)?;
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", answer.title)?;
            for n in &answer.found {
                writeln!(out, "  {:>7.4}  {}", n.similarity, n.word)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
