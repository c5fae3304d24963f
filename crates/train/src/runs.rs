//! The run folders under a directory, summarised: what `lstm-lm runs` prints.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::TrainError;
use crate::metrics::{MetricEvent, read_events};
use crate::run_dir::RunDir;
use crate::run_lock::RunLock;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// A trainer holds the run's lock now.
    Running,
    /// Every planned epoch ran (or early stopping ended it).
    Finished,
    /// Stopped before its last epoch: `lstm-lm train --resume` continues it.
    Interrupted,
    /// Made by `lstm-lm import` from another program's weights, not trained here.
    Imported,
    /// An n-gram model made by `lstm-lm ngram train` (counted, not trained in epochs).
    Ngram,
}

/// One run folder, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run folder.
    pub path: PathBuf,
    /// The preset's description (or empty).
    pub preset: String,
    /// The first training file's name.
    pub data: String,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Epochs planned.
    pub epochs: usize,
    /// Best validation perplexity so far.
    pub best_valid_ppl: Option<f64>,
    /// Running, finished, interrupted or imported.
    pub status: RunStatus,
    /// Bytes on disk, every file of the folder included.
    pub bytes: u64,
}

/// Every run folder directly under `dir` (folders holding a `config.json`, or an n-gram run's
/// `ngram.bin`), sorted by name.
/// Folders that are not runs are passed over; a run whose files cannot be read is an error
/// naming it.
pub fn list_runs(dir: &Path) -> Result<Vec<RunSummary>, TrainError> {
    let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut folders: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file() || lstm_lm_ngram::is_ngram_run(p))
        .collect();
    folders.sort();
    folders.iter().map(|p| summarise(p)).collect()
}

/// One run folder, summarised.
pub fn summarise(path: &Path) -> Result<RunSummary, TrainError> {
    let run = RunDir::new(path);
    if !run.config_path().is_file() && lstm_lm_ngram::is_ngram_run(path) {
        // Summarised without loading the model (it can be hundreds of megabytes).
        return Ok(RunSummary {
            path: path.to_path_buf(),
            preset: "n-gram".into(),
            data: String::new(),
            epochs_done: 0,
            epochs: 0,
            best_valid_ppl: None,
            status: RunStatus::Ngram,
            bytes: folder_bytes(path),
        });
    }
    let config = run.load_config()?;
    let events = if run.metrics_path().is_file() {
        read_events(&run.metrics_path())?
    } else {
        Vec::new()
    };
    let mut epochs_done = 0;
    let mut best_valid_ppl: Option<f64> = None;
    let mut tested = false;
    for e in &events {
        match e {
            MetricEvent::Epoch {
                epoch, valid_ppl, ..
            } => {
                epochs_done = epochs_done.max(*epoch);
                if let Some(p) = valid_ppl {
                    best_valid_ppl = Some(best_valid_ppl.map_or(*p, |b: f64| b.min(*p)));
                }
            }
            MetricEvent::Test { .. } => tested = true,
            MetricEvent::Train { .. } => {}
        }
    }
    let epochs = config.settings.train.epochs;
    let status = if RunLock::is_held(path) {
        RunStatus::Running
    } else if config.backend == crate::IMPORTED_BACKEND {
        RunStatus::Imported
    } else if tested || epochs_done >= epochs || model_is_final(&run, &config) {
        RunStatus::Finished
    } else {
        RunStatus::Interrupted
    };
    Ok(RunSummary {
        path: path.to_path_buf(),
        preset: config.settings.description.clone(),
        data: config
            .data
            .train
            .first()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        epochs_done,
        epochs,
        best_valid_ppl,
        status,
        bytes: folder_bytes(path),
    })
}

/// Early stopping ends a run before its planned epochs; its last checkpoint then says so.
fn model_is_final(run: &RunDir, config: &crate::RunConfig) -> bool {
    let Some(patience) = config.settings.train.early_stopping else {
        return false;
    };
    crate::checkpoint::Checkpoint::latest(run)
        .ok()
        .flatten()
        .and_then(|dir| std::fs::read(dir.join("trainer.json")).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("epochs_without_improvement")?.as_u64())
        .is_some_and(|n| n as usize >= patience)
}

fn folder_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
