//! `lstm-lm runs`: a table of the run folders under a directory.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use lstm_lm_train::runs::{RunStatus, list_runs};

/// List run folders with their preset, data, epochs, best validation perplexity and status.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm runs
  lstm-lm runs experiments/ --json")]
pub struct RunsArgs {
    /// Folder holding run folders.
    #[arg(value_name = "DIR", default_value = "runs")]
    pub dir: PathBuf,
    /// One JSON object per run.
    #[arg(long)]
    pub json: bool,
}

/// Runs `lstm-lm runs`.
pub fn run(args: RunsArgs) -> Result<()> {
    let runs = list_runs(&args.dir)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for r in &runs {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(out.flush()?);
    }
    writeln!(
        out,
        "{:<24} {:<12} {:<16} {:>7} {:>10} {:<11} {:>9}",
        "run", "preset", "data", "epochs", "best ppl", "status", "size"
    )?;
    for r in &runs {
        let name = r
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let preset: String = r.preset.chars().take(12).collect();
        let status = serde_json::to_value(r.status)?;
        writeln!(
            out,
            "{:<24} {:<12} {:<16} {:>7} {:>10} {:<11} {:>9}",
            name,
            preset,
            r.data,
            if r.status == RunStatus::Ngram {
                "-".to_string()
            } else {
                format!("{}/{}", r.epochs_done, r.epochs)
            },
            r.best_valid_ppl.map_or("-".into(), |p| format!("{p:.2}")),
            status.as_str().unwrap_or("?"),
            human_size(r.bytes)
        )?;
    }
    Ok(out.flush()?)
}

fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}
