//! Helpers shared by the CLI test files (`tests/cli_*.rs`, each its own crate, so each includes
//! this file): run the binary, read what it printed, check one-line errors.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// A five-line corpus that trains in well under a second.
pub const CORPUS: &str = "the keeper climbed the tower at dusk\n\
the lamp burned over the cold sea\n\
the keeper trimmed the wick at dawn\n\
ships passed the rocks in the dark\n\
the gulls slept on the cold rocks\n";

/// Runs `lstm-lm ARGS` in `dir` and waits for it.
pub fn lstm_lm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the lstm-lm binary runs")
}

/// Writes `corpus` to `dir/corpus.txt` and runs `train` of the tiny run the CLI tests share
/// (the seed preset, 2 epochs of a 16-unit LSTM over 8-wide embeddings, into `dir/run`) with
/// `extra` flags; returns what it printed.
pub fn train_tiny(dir: &Path, corpus: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("corpus.txt"), corpus).unwrap();
    let mut args = vec![
        "train",
        "--preset",
        "seed",
        "--data",
        "corpus.txt",
        "--out",
        "run",
        "--epochs",
        "2",
        "--hidden-size",
        "16",
        "--embedding-size",
        "8",
    ];
    args.extend_from_slice(extra);
    lstm_lm(&args, dir)
}

/// [`train_tiny`] quietly; panics with the trainer's message when it fails. Returns the run.
pub fn train_tiny_run(dir: &Path, corpus: &str, extra: &[&str]) -> std::path::PathBuf {
    let mut args = vec!["--quiet"];
    args.extend_from_slice(extra);
    let o = train_tiny(dir, corpus, &args);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    dir.join("run")
}

/// What the command printed on standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What the command printed on standard output.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command failed with status 1 and a one-line `error:` message, no panic, that contains
/// every one of `needles`.
pub fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, stdout: {}",
        stdout(o)
    );
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}
