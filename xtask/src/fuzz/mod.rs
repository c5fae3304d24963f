//! `cargo xtask fuzz`: property-based fuzzing of every loader on the stable toolchain.
//!
//! The targets ([`targets`]) feed the loaders mutated real files and random bytes (proptest
//! strategies, [`mutate`]) and require a result or a one-line error: never a panic, an abort
//! or a single allocation past [`ALLOCATION_LIMIT`] ([`alloc_limit`]). The same targets run a
//! bounded number of cases in `cargo test -p xtask --test fuzz`, and here for as long as asked.
//!
//! Here each target runs in a child process (`fuzz --worker`), so that an abort (the
//! allocation limit, a stack overflow) is counted as a failure of the input that caused it
//! instead of ending the run. Failing inputs are saved in `target/fuzz/` (one file each, the
//! slot in the name) and `cargo xtask fuzz TARGET --replay FILE` runs one again.

pub mod alloc_limit;
pub mod mutate;
pub mod runner;
pub mod targets;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

pub use alloc_limit::{ALLOCATION_LIMIT, LimitedAllocator};
pub use runner::{Budget, Failure, Report, run_target};
pub use targets::{Fixtures, TARGETS};

/// Fuzz the loaders: cases tried and failures per target.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// One target (default: all). `--list` names them.
    pub target: Option<String>,
    /// List the targets and exit.
    #[arg(long)]
    pub list: bool,
    /// Seed of the first round (each round after it uses the next).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where failing inputs are saved.
    #[arg(long, default_value = "target/fuzz")]
    pub out: PathBuf,
    /// Run the input saved in this file through TARGET once and say what happened.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Run one target in this process (what the parent process starts).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// Runs `cargo xtask fuzz`.
///
/// # Errors
/// An unknown target, a fixture that cannot be made, or failures found (after printing them).
pub fn run(args: &FuzzArgs) -> Result<()> {
    if args.list {
        for t in TARGETS {
            println!("{:<16} {}", t.name, t.about);
        }
        return Ok(());
    }
    let names: Vec<&str> = match &args.target {
        Some(name) => {
            let t = targets::target(name).with_context(|| {
                format!("no fuzz target named {name:?}: `cargo xtask fuzz --list` names them")
            })?;
            vec![t.name]
        }
        None => TARGETS.iter().map(|t| t.name).collect(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    if let Some(file) = &args.replay {
        let [name] = names[..] else {
            bail!("--replay needs the TARGET the input belongs to");
        };
        return replay(name, file);
    }
    if args.worker {
        let [name] = names[..] else {
            bail!("--worker needs one TARGET");
        };
        return worker(name, args);
    }
    let mut total_failures = 0;
    for name in names {
        let (cases, failures) = supervise(name, args)?;
        total_failures += failures.len();
        println!("{name:<16} {cases:>8} cases  {} failures", failures.len());
        for f in failures {
            println!("    {f}");
        }
    }
    if total_failures > 0 {
        bail!(
            "{total_failures} fuzz failures; inputs saved in {}",
            args.out.display()
        );
    }
    Ok(())
}

/// Runs workers for `name` until its time is spent; a worker that dies is a failure and the
/// next one goes on with the next seed.
fn supervise(name: &str, args: &FuzzArgs) -> Result<(u64, Vec<String>)> {
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut seed = args.seed;
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        if left == 0 {
            break;
        }
        let output = Command::new(&exe)
            .args(["fuzz", "--worker", name, "--seconds"])
            .arg(left.to_string())
            .arg("--seed")
            .arg(seed.to_string())
            .arg("--out")
            .arg(&args.out)
            .output()
            .context("cannot start a fuzz worker")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut worker_cases = 0;
        for line in stdout.lines() {
            if let Some(n) = line.strip_prefix("cases ") {
                worker_cases = n.trim().parse().unwrap_or(worker_cases);
            } else if let Some(f) = line.strip_prefix("failure ") {
                failures.push(f.to_owned());
            }
        }
        cases += worker_cases;
        if output.status.success() {
            break;
        }
        // Died: the input it was on is in the case file.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .to_owned();
        let current = runner::current_case_file(&args.out, name);
        let saved = match std::fs::read(&current) {
            Ok(bytes) => {
                let slot = std::fs::read_to_string(current.with_extension("slot"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                runner::save_failure(&args.out, name, slot, &bytes)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("(not saved: {e})"))
            }
            Err(_) => "(no case file)".into(),
        };
        failures.push(format!(
            "the process died ({}): {why}; input {saved}",
            output.status
        ));
        seed += 1_000_003;
        if failures.len() >= 20 {
            break;
        }
    }
    Ok((cases, failures))
}

/// One target in this process, for `args.seconds`; prints `cases N` as it goes and one
/// `failure ...` line per failure.
fn worker(name: &str, args: &FuzzArgs) -> Result<()> {
    let fixtures = Fixtures::new()?;
    let budget = Budget::Time(Duration::from_secs(args.seconds));
    let report = run_target(
        name,
        &fixtures,
        budget,
        args.seed,
        Some(args.out.as_path()),
        |cases| {
            println!("cases {cases}");
        },
    );
    println!("cases {}", report.cases);
    for f in &report.failures {
        println!("failure {f}");
    }
    Ok(())
}

fn replay(name: &str, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let slot = runner::slot_of(file);
    let fixtures = Fixtures::new()?;
    match runner::run_case(&fixtures, name, slot, &bytes) {
        Ok(()) => println!("{name}: {} passes (slot {slot})", file.display()),
        Err(message) => bail!("{name}: {} fails (slot {slot}): {message}", file.display()),
    }
    Ok(())
}
