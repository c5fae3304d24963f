//! Metrics: `metrics.jsonl` in the run folder, and progress on the terminal.
//!
//! `metrics.jsonl` starts with a header line `{"format":"lstm-lm-metrics","version":1}`; every
//! further line is one [`MetricEvent`]. Files written before the header existed have none and
//! read as version 0 (the same events).
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Format tag of `metrics.jsonl` (its first line).
pub const METRICS_FORMAT: &str = "lstm-lm-metrics";
/// Current version of `metrics.jsonl`.
pub const METRICS_FORMAT_VERSION: u32 = 1;

/// The first line of `metrics.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
}

fn header_line() -> String {
    format!("{{\"format\":\"{METRICS_FORMAT}\",\"version\":{METRICS_FORMAT_VERSION}}}\n")
}

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
        /// Training tokens (targets) seen since the start of the run; absent in files written
        /// before lstm-lm counted them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<u64>,
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
        /// Training tokens (targets) seen since the start of the run; absent in files written
        /// before lstm-lm counted them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<u64>,
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

/// Receives every event as it is appended to `metrics.jsonl` (`train --json` prints them).
pub type EventSink = Box<dyn FnMut(&MetricEvent) + Send>;

/// Appends events to `metrics.jsonl`, flushing each line, and hands each to an optional
/// [`EventSink`].
pub struct MetricsFile {
    path: PathBuf,
    file: File,
    sink: Option<EventSink>,
}

impl MetricsFile {
    /// Opens for appending, writing the header line into a new or empty file. On resume,
    /// `keep_up_to_step` drops lines written after the checkpoint, so the file reads as if the
    /// run had never stopped (and gains the header if it had none).
    pub fn open(path: &Path, keep_up_to_step: Option<u64>) -> Result<Self, TrainError> {
        let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if let Some(step) = keep_up_to_step
            && !empty
        {
            let mut text = header_line();
            for event in read_events(path)?.into_iter().filter(|e| e.step() <= step) {
                let line = serde_json::to_string(&event)
                    .map_err(|e| TrainError::RunDir(format!("cannot serialize a metric: {e}")))?;
                text.push_str(&line);
                text.push('\n');
            }
            crate::atomic::write_atomic(path, text.as_bytes())?;
        } else if empty {
            crate::atomic::write_atomic(path, header_line().as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsFile {
            path: path.to_path_buf(),
            file,
            sink: None,
        })
    }

    /// Hands every event written from now on to `sink` too.
    pub fn set_sink(&mut self, sink: Option<EventSink>) {
        self.sink = sink;
    }

    /// Appends one event.
    pub fn write(&mut self, event: &MetricEvent) -> Result<(), TrainError> {
        let mut line = serde_json::to_string(event)
            .map_err(|e| TrainError::RunDir(format!("cannot serialize a metric: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))?;
        if let Some(sink) = &mut self.sink {
            sink(event);
        }
        Ok(())
    }
}

/// Reads every event of a `metrics.jsonl`, checking its header line (a file without one was
/// written before headers existed and reads as version 0).
pub fn read_events(path: &Path) -> Result<Vec<MetricEvent>, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        if i == 0
            && let Ok(header) = serde_json::from_str::<Header>(&line)
        {
            crate::run_dir::check_format(
                path,
                &header.format,
                header.version,
                METRICS_FORMAT,
                METRICS_FORMAT_VERSION,
            )?;
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

/// Running figures shown on the progress bar after each batch.
pub(crate) struct BatchFigures {
    /// Mean loss since the last log line.
    pub loss: f64,
    /// Training tokens per second since the last log line.
    pub tok_per_s: f64,
    /// Estimated seconds left in this epoch.
    pub epoch_eta_s: f64,
    /// Estimated seconds left in the whole run.
    pub run_eta_s: f64,
}

impl BatchFigures {
    /// `loss 4.213 | ppl 67.58 | 12.3k tok/s | ETA epoch 21s, run 3m10s`: the progress bar's
    /// message and the tail of a log line.
    pub(crate) fn describe(&self) -> String {
        format!(
            "loss {:.4} | ppl {:.2} | {} tok/s | ETA epoch {}, run {}",
            self.loss,
            self.loss.exp(),
            human_count(self.tok_per_s),
            crate::trainer::format_secs(self.epoch_eta_s),
            crate::trainer::format_secs(self.run_eta_s)
        )
    }
}

/// `950`, `12.3k`, `1.25M`: a rate short enough for a progress bar.
pub(crate) fn human_count(x: f64) -> String {
    if !x.is_finite() {
        "?".into()
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Progress display for one epoch: a bar on a terminal (epoch, step of steps, loss, perplexity,
/// tokens/s and the ETA of the epoch and of the run), a log line per interval elsewhere.
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
                ProgressStyle::with_template("epoch {prefix} [{bar:24}] step {pos}/{len} | {msg}")
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

    pub(crate) fn batch_done(&self, figures: impl FnOnce() -> BatchFigures) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(figures().describe());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(step: u64) -> MetricEvent {
        MetricEvent::Epoch {
            epoch: 1,
            step,
            train_loss: 1.5,
            valid_loss: None,
            valid_ppl: None,
            valid_accuracy: None,
            lr: 0.1,
            elapsed_s: 2.0,
            best: true,
            tokens: Some(step * 10),
        }
    }

    #[test]
    fn a_new_file_starts_with_the_format_header_and_keeps_it_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut m = MetricsFile::open(&path, None).unwrap();
        m.write(&epoch(3)).unwrap();
        m.write(&epoch(6)).unwrap();
        drop(m);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"format":"lstm-lm-metrics","version":1}"#
        );
        assert_eq!(read_events(&path).unwrap(), vec![epoch(3), epoch(6)]);
        // Resuming from step 3 drops the later line and keeps the header.
        drop(MetricsFile::open(&path, Some(3)).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with(r#"{"format":"lstm-lm-metrics""#), "{text}");
        assert_eq!(read_events(&path).unwrap(), vec![epoch(3)]);
    }

    #[test]
    fn files_without_a_header_read_as_version_0_and_gain_one_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let line = serde_json::to_string(&epoch(3)).unwrap();
        std::fs::write(&path, format!("{line}\n")).unwrap();
        assert_eq!(read_events(&path).unwrap(), vec![epoch(3)]);
        drop(MetricsFile::open(&path, Some(3)).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}{line}\n", header_line()));
    }

    #[test]
    fn a_newer_or_foreign_header_is_a_one_line_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        for (header, needle) in [
            (
                r#"{"format":"lstm-lm-metrics","version":2}"#,
                "newer lstm-lm",
            ),
            (
                r#"{"format":"something-else","version":1}"#,
                "'something-else'",
            ),
        ] {
            std::fs::write(&path, format!("{header}\n")).unwrap();
            let e = read_events(&path).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("metrics.jsonl"), "{e}");
            assert_eq!(e.lines().count(), 1);
        }
    }
}
