//! `cargo xtask`: project tasks for lstm-lm. See `xtask/README.md`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "Project tasks for lstm-lm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download a corpus listed in datasets/manifest.json and verify it.
    Download(xtask::download::DownloadArgs),
    /// Write the synthetic corpus of known entropy (train/valid/test).
    Synth(xtask::synth::SynthArgs),
    /// Time training steps and generation on the wgpu backend (GPU).
    GpuBench(xtask::gpu_bench::GpuBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Download(args) => xtask::download::run(&args),
        Command::Synth(args) => xtask::synth::run(&args),
        Command::GpuBench(args) => xtask::gpu_bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined by ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
