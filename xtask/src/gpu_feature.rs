//! The GPU backend is a cargo feature (`wgpu`), off by default so that the first build stays
//! CPU-only. `cargo xtask gpu-bench` needs it: a build without it runs itself again through
//! cargo with the feature on, so the documented command works as typed.
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs this xtask invocation again as `cargo run --release -p xtask --features wgpu -- ARGS`.
///
/// Cargo sets `CARGO` for the programs it runs; outside cargo, `cargo` from `PATH` is used.
pub fn rerun_with_wgpu() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "note: this xtask build has no GPU backend; building it with `--features wgpu` \
         (the first time takes a while: the wgpu stack is most of a cold build)"
    );
    let status = Command::new(&cargo)
        .args([
            "run",
            "--release",
            "--package",
            "xtask",
            "--features",
            "wgpu",
            "--",
        ])
        .args(std::env::args_os().skip(1))
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("`cargo xtask` with --features wgpu failed ({status})");
    }
    Ok(())
}
