//! `cargo xtask bench --config eval,score,embed`: using a trained run on many texts, through
//! the library calls behind `lstm-lm eval FILE`, `lstm-lm score --file FILE` and `lstm-lm embed
//! --file FILE`, on the `lm` benchmark's model (10,000 words, 256-wide embedding, 2×256 LSTM).
//!
//! The texts are 400 lines of 4 to 60 random words (about 13k tokens); the run folder is
//! written once, untimed. The figure is tokens per second over the same lines, so `score` and
//! `embed` compare directly with `eval` (the issue asks both to run at least at eval speed).
use std::path::PathBuf;

use anyhow::{Context, Result};
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_train::{
    DataFiles, EmbedOptions, LoadedRun, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir,
    TrainSettings, data, model_bytes, write_atomic,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Which use of the run is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunUse {
    /// `lstm-lm eval FILE`: the stream evaluation.
    Eval,
    /// `lstm-lm score --file FILE`: every line's per-token log-probabilities.
    Score,
    /// `lstm-lm embed --file FILE`: every line's sentence vector.
    Embed,
}

/// A run folder in the temporary directory, removed when dropped.
struct BenchRun {
    dir: PathBuf,
}

impl Drop for BenchRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const VOCAB_WORDS: usize = 9_990;
const LINES: usize = 400;

/// Writes an untrained run with the `lm` model's shape and a word tokenizer fitted on `text`.
fn write_run(text: &str, device: &Device) -> Result<BenchRun> {
    let dir = std::env::temp_dir().join(format!("lstm-lm-bench-use-{}", std::process::id()));
    let settings = TrainSettings::preset("wt2-small")?
        .set("model.embedding_size=256")?
        .set("model.hidden_size=256")?
        .set("model.dropout=0")?;
    let tokenizer = data::fit_tokenizer(&settings.data, text)?;
    let model = settings.model.model_config(tokenizer.vocab_size());
    let run = RunDir::new(&dir);
    let guard = BenchRun { dir: dir.clone() };
    run.create()?;
    run.save_tokenizer(&tokenizer)?;
    write_atomic(&run.model_path(), &model_bytes(&model.init(device)?)?)?;
    run.save_config(&RunConfig {
        format: RUN_FORMAT.into(),
        version: RUN_FORMAT_VERSION,
        settings,
        model,
        ngram_width: None,
        data: DataFiles::default(),
        data_digests: Vec::new(),
        backend: "bench".into(),
    })?;
    Ok(guard)
}

/// Wall and CPU milliseconds of each timed call (see `bench::time_iters`).
pub type Timings = (Vec<f64>, Vec<f64>);

/// Tokens per timed call, and the timings.
pub fn bench_run_use(
    what: RunUse,
    warmup: usize,
    iters: usize,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> Result<(usize, Timings)> {
    let words: Vec<String> = (0..VOCAB_WORDS).map(|k| format!("w{k}")).collect();
    // Every word once, so the vocabulary is the `lm` model's 10,000 (with the specials).
    let mut text = words.join(" ");
    text.push('\n');
    let lines: Vec<String> = (0..LINES)
        .map(|_| {
            let n = rng.random_range(4..=60);
            (0..n)
                .map(|_| words[rng.random_range(0..VOCAB_WORDS)].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let run_dir = write_run(&text, device)?;
    let run = LoadedRun::load(&run_dir.dir, device.clone())?;
    let file = run_dir.dir.join("lines.txt");
    std::fs::write(&file, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", file.display()))?;
    // The same count for all three: every word of every line and its end of line.
    let tokens = run.evaluate_file(&file)?.tokens as usize;
    let mut failed = None;
    let times = crate::bench::time_iters(warmup, iters, || {
        let outcome = match what {
            RunUse::Eval => run.evaluate_file(&file).map(|_| ()),
            RunUse::Score => run
                .score_many(&lines)
                .into_iter()
                .try_for_each(|r| r.map(|_| ())),
            RunUse::Embed => run
                .embed_many(&lines, &EmbedOptions::default())
                .into_iter()
                .try_for_each(|r| r.map(|_| ())),
        };
        if let Err(e) = outcome {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok((tokens, times))
}
