//! `cargo xtask`: project tasks for lstm-lm. See `xtask/README.md`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// `cargo xtask fuzz` holds its targets to a limit on single allocations; every other
// subcommand runs with the limit off (it is armed only while a fuzz case runs).
#[global_allocator]
static ALLOCATOR: xtask::fuzz::LimitedAllocator = xtask::fuzz::LimitedAllocator;

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
    /// Time the seed, lm and gen configurations (optionally against PyTorch).
    Bench(xtask::bench::BenchArgs),
    /// One benchmark measurement in this process (used by `bench`).
    #[command(hide = true)]
    BenchOne(xtask::bench::BenchOneArgs),
    /// Time training steps and generation on the wgpu backend (GPU).
    GpuBench(xtask::gpu_bench::GpuBenchArgs),
    /// Train a recipe (a dataset and a preset), evaluate it, compare with the published figure.
    Train(xtask::recipes::TrainArgs),
    /// Fuzz every loader with mutated files and random input; cases and failures per target.
    Fuzz(xtask::fuzz::FuzzArgs),
    /// Load-test `lstm-lm serve` on loopback with 1, 4, 16 and 64 streaming clients.
    LoadTest(xtask::load_test::LoadTestArgs),
    /// Write the man pages of lstm-lm (default: target/man).
    Man(xtask::man::ManArgs),
}

fn main() -> ExitCode {
    lstm_lm_train::allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Download(args) => xtask::download::run(&args),
        Command::Synth(args) => xtask::synth::run(&args),
        Command::Bench(args) => xtask::bench::run(&args),
        Command::BenchOne(args) => xtask::bench::run_one(&args),
        Command::GpuBench(args) if cfg!(feature = "wgpu") => xtask::gpu_bench::run(&args),
        Command::GpuBench(_) => xtask::gpu_feature::rerun_with_wgpu(),
        Command::Train(args) => xtask::recipes::run(&args),
        Command::Fuzz(args) => xtask::fuzz::run(&args),
        Command::Man(args) => xtask::man::run(&args),
        Command::LoadTest(args) => xtask::load_test::run(&args),
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
