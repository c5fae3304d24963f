//! Metrics: `metrics.jsonl` in the run folder, and progress on the terminal.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum MetricEvent {
    /// Running training figures at a log interval.
    Train {
        /// 1-based epoch.
        epoch: usize,
        /// Batches done in this epoch.
        batch: usize,
        /// Optimizer steps since the start of the run.
        step: u64,
        /// Mean loss (nats per token) since the last log line.
        loss: f64,
        /// exp(loss).
        ppl: f64,
        /// Share of correctly predicted tokens since the last log line.
        accuracy: f64,
        /// Learning rate of the last step.
        lr: f64,
        /// Training tokens per second since the last log line.
        tok_per_s: f64,
        /// Seconds of training so far.
        elapsed_s: f64,
        /// Estimated seconds left for the whole run.
        eta_s: f64,
    },
    /// End of an epoch.
    Epoch {
        /// 1-based epoch.
        epoch: usize,
        /// Optimizer steps since the start of the run.
        step: u64,
        /// Mean training loss over the epoch.
        train_loss: f64,
        /// Validation loss, when there is validation data.
        valid_loss: Option<f64>,
        /// Validation perplexity.
        valid_ppl: Option<f64>,
        /// Validation accuracy.
        valid_accuracy: Option<f64>,
        /// Learning rate at the end of the epoch.
        lr: f64,
        /// Seconds of training so far.
        elapsed_s: f64,
        /// Whether this epoch's model became the best so far.
        best: bool,
    },
    /// Final evaluation on the test split with the best model.
    Test {
        /// Optimizer steps at the end of training.
        step: u64,
        /// Test loss.
        loss: f64,
        /// Test perplexity.
        ppl: f64,
        /// Test accuracy.
        accuracy: f64,
        /// Tokens scored.
        tokens: u64,
    },
}

impl MetricEvent {
    fn step(&self) -> u64 {
        match self {
            MetricEvent::Train { step, .. }
            | MetricEvent::Epoch { step, .. }
            | MetricEvent::Test { step, .. } => *step,
        }
    }
}

/// Appends events to `metrics.jsonl`, flushing each line.
pub struct MetricsFile {
    path: PathBuf,
    file: File,
}

impl MetricsFile {
    /// Opens for appending. On resume, `keep_up_to_step` drops lines written after the
    /// checkpoint, so the file reads as if the run had never stopped.
    pub fn open(path: &Path, keep_up_to_step: Option<u64>) -> Result<Self, TrainError> {
        if let Some(step) = keep_up_to_step
            && path.exists()
        {
            let kept: Vec<String> = read_events(path)?
                .into_iter()
                .filter(|e| e.step() <= step)
                .filter_map(|e| serde_json::to_string(&e).ok())
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::atomic::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one event.
    pub fn write(&mut self, event: &MetricEvent) -> Result<(), TrainError> {
        let mut line = serde_json::to_string(event)
            .map_err(|e| TrainError::RunDir(format!("cannot serialize a metric: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads every event of a `metrics.jsonl`.
pub fn read_events(path: &Path) -> Result<Vec<MetricEvent>, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| {
            TrainError::RunDir(format!("\"{}\" line {}: {e}", path.display(), i + 1))
        })?);
    }
    Ok(out)
}

/// How progress reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A progress bar on a terminal, plain lines otherwise.
    Auto,
    /// Plain log lines on stderr.
    Lines,
    /// Nothing on stderr (metrics.jsonl is still written).
    Quiet,
}

impl ProgressMode {
    /// The mode the `--quiet` and `--log-lines` flags ask for (`--quiet` wins).
    pub fn from_flags(quiet: bool, log_lines: bool) -> Self {
        if quiet {
            ProgressMode::Quiet
        } else if log_lines {
            ProgressMode::Lines
        } else {
            ProgressMode::Auto
        }
    }
}

/// Progress display for one epoch.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    mode: ProgressMode,
}

impl Progress {
    pub(crate) fn new(
        mode: ProgressMode,
        epoch: usize,
        epochs: usize,
        batches: usize,
        done: usize,
    ) -> Self {
        let use_bar = mode == ProgressMode::Auto && std::io::stderr().is_terminal();
        let bar = use_bar.then(|| {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            bar.set_position(done as u64);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let mode = if use_bar {
            ProgressMode::Auto
        } else if mode == ProgressMode::Auto {
            ProgressMode::Lines
        } else {
            mode
        };
        Progress { bar, mode }
    }

    pub(crate) fn batch_done(&self, message: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(message());
        }
    }

    pub(crate) fn log(&self, line: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(line),
            (None, ProgressMode::Lines) => eprintln!("{line}"),
            _ => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
