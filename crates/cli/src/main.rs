//! The `lstm-lm` command-line tool: parse the flags, run the command, turn the outcome into an
//! exit code.
//!
//! Errors are printed once, on one line, as `error: ` and the chain of causes joined by `: `,
//! and exit with code 1; usage errors exit with clap's code 2. A closed standard output (as in
//! `lstm-lm encode ... | head`) ends the command quietly with success. `train` stopped by
//! Ctrl-C or SIGTERM saves a checkpoint and exits with 130 or 143 (128 + the signal number).

mod commands;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Train LSTM language models and use them: tokenize, encode, decode and more.
#[derive(Debug, Parser)]
#[command(name = "lstm-lm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    lstm_lm_train::allocator::keep_freed_memory();
    let cli = Cli::parse();
    match commands::run(cli.command, Cli::command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, joined by `: `.
fn one_line(err: &anyhow::Error) -> String {
    let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
    chain.join(": ").replace(['\n', '\r'], " ")
}

/// Whether the error comes from writing to a reader that went away.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
