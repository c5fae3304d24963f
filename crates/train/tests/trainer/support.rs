//! What the trainer's tests share: runs that take turns, a small deterministic corpus, the
//! synthetic corpus of known entropy, and what a finished run reports.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use lstm_lm_text_prep::synthetic::{SplitSizes, SyntheticConfig, SyntheticCorpus};
use lstm_lm_train::{
    DataFiles, MetricEvent, TrainOptions, TrainOutcome, TrainSettings, TrainSummary, read_events,
};

/// burn's CPU backends draw initial weights and dropout masks from one process-wide
/// generator, and a run seeds it: every test that trains holds this turn, so that each run
/// sees only its own draws.
pub fn serial() -> MutexGuard<'static, ()> {
    static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new run on flex, quiet: [`TrainOptions::new`] from borrowed settings and data.
pub fn options(settings: &TrainSettings, data: &DataFiles, out: &Path) -> TrainOptions {
    TrainOptions::new(settings.clone(), data.clone(), out)
}

/// Lines of 4 to 9 words from a 30-word vocabulary, drawn by a fixed LCG: enough text for a
/// few batches of either recipe, the same on every machine.
pub fn corpus_text(lines: usize, salt: u64) -> String {
    let mut x = 0x2545_F491_4F6C_DD1D_u64 ^ salt;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    };
    let mut text = String::new();
    for _ in 0..lines {
        let words = 4 + next(6);
        let line: Vec<String> = (0..words).map(|_| format!("w{}", next(30))).collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

/// Writes the three splits of a synthetic Markov corpus into `dir`; returns the files (all
/// three) and the source's perplexity, the best any model can reach.
pub fn synthetic(
    dir: &Path,
    config: SyntheticConfig,
    sizes: SplitSizes,
    seed: u64,
) -> (DataFiles, f64) {
    let corpus = SyntheticCorpus::new(config).unwrap();
    corpus.write_splits(dir, &sizes, seed).unwrap();
    let files = DataFiles {
        train: vec![dir.join("train.txt")],
        valid: Some(dir.join("valid.txt")),
        test: Some(dir.join("test.txt")),
    };
    (files, corpus.perplexity())
}

/// The summary of a run that ran to its end; panics if it was interrupted.
pub fn finished(outcome: TrainOutcome) -> TrainSummary {
    match outcome {
        TrainOutcome::Finished(s) => s,
        TrainOutcome::Interrupted { .. } => panic!("run was interrupted"),
    }
}

/// Per epoch of the run in `run`: (epoch, train loss, valid loss if validated).
pub fn epoch_figures(run: &Path) -> Vec<(usize, f64, Option<f64>)> {
    read_events(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            MetricEvent::Epoch {
                epoch,
                train_loss,
                valid_loss,
                ..
            } => Some((epoch, train_loss, valid_loss)),
            _ => None,
        })
        .collect()
}
