//! `cargo xtask man`: the man pages of `lstm-lm`, written by the binary itself (`lstm-lm man`,
//! hidden) so that they always match its parser.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Write man pages for lstm-lm and its subcommands.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder for the pages [default: target/man].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Builds `lstm-lm` and runs `lstm-lm man --out DIR`.
pub fn run(args: &ManArgs) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::project_root().join("target").join("man"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(crate::project_root())
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "lstm-lm-cli",
            "--",
            "man",
            "--out",
        ])
        .arg(&out)
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("`lstm-lm man` failed ({status})");
    }
    println!("man pages written to {}", out.display());
    Ok(())
}
