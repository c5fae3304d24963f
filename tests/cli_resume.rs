//! `lstm-lm train` checkpoints and `--resume` through the real binary: periodic checkpoints,
//! runs killed before their first checkpoint, and what a resume refuses.
use std::path::Path;
use std::process::Output;

#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, assert_one_line_error as assert_clean_error, lstm_lm, stderr};

/// A small, quick run of the seed preset on `corpus.txt` in `dir`, plus `extra` flags.
fn train_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--preset",
        "seed",
        "--data",
        "corpus.txt",
        "--valid",
        "corpus.txt",
        "--out",
        out,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--hidden-size",
        "16",
        "--embedding-size",
        "8",
        "--quiet",
        "--sample-tokens",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

fn config_json(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap()
}

#[test]
fn checkpoint_every_flag_is_recorded_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    for (flag, recorded) in [
        ("3", serde_json::json!(3)),
        ("90s", serde_json::json!("90s")),
        ("2h", serde_json::json!("2h")),
        ("off", serde_json::json!("off")),
    ] {
        let out = format!("run-{flag}");
        let o = lstm_lm(&train_args(&out, &["--checkpoint-every", flag]), dir);
        assert!(o.status.success(), "{flag}: {}", stderr(&o));
        let config = config_json(&dir.join(&out));
        assert_eq!(config["settings"]["train"]["checkpoint_every"], recorded);
    }
    // Without the flag: every 10 minutes of training.
    let o = lstm_lm(&train_args("run-default", &[]), dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = config_json(&dir.join("run-default"));
    assert_eq!(config["settings"]["train"]["checkpoint_every"], "10m");
    // The same through --set.
    let o = lstm_lm(
        &train_args("run-set", &["--set", "train.checkpoint_every=5m"]),
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let config = config_json(&dir.join("run-set"));
    assert_eq!(config["settings"]["train"]["checkpoint_every"], "5m");

    for bad in ["10x", "-1", "m"] {
        let flag = format!("--checkpoint-every={bad}");
        let o = lstm_lm(&train_args("run-bad", &[&flag]), dir);
        assert_clean_error(&o, &["--checkpoint-every", bad]);
    }
    assert!(!dir.join("run-bad").exists());
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn resume(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--resume",
        "run",
        "--quiet",
        "--sample-tokens",
        "0",
    ];
    args.extend_from_slice(extra);
    lstm_lm(&args, dir)
}

/// A trained run in `dir/run` (2 epochs).
fn trained(dir: &Path) {
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let o = lstm_lm(&train_args("run", &[]), dir);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A run killed before its first checkpoint holds only `config.json` and `tokenizer.json`:
/// `--resume` says so in one line and trains it from the beginning.
#[test]
fn resume_of_a_run_without_checkpoint_starts_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    let run = dir.join("run");
    for name in ["checkpoint.json", "model.bpk", "metrics.jsonl"] {
        std::fs::remove_file(run.join(name)).unwrap();
    }
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let o = resume(dir, &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no checkpoint yet"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("trained 2 epochs"), "{out}");
    assert!(run.join("checkpoint.json").exists());
}

/// An edited `config.json` is checked before training: one line naming the file.
#[test]
fn resume_with_an_invalid_config_json_is_a_clean_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    edit_json(&dir.join("run/config.json"), |v| {
        v["settings"]["train"]["log_interval"] = 0.into()
    });
    assert_clean_error(
        &resume(dir, &["--epochs", "3"]),
        &["config.json", "log_interval"],
    );
}

#[test]
fn resume_with_epochs_0_is_a_clean_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    assert_clean_error(&resume(dir, &["--epochs", "0"]), &["--epochs"]);
}

/// A data file edited since the run started is refused, naming it and the flag that accepts
/// it; with the flag the run continues.
#[test]
fn changed_data_needs_accept_changed_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    std::fs::write(dir.join("corpus.txt"), CORPUS.replace("dusk", "dawn")).unwrap();
    assert_clean_error(
        &resume(dir, &["--epochs", "3"]),
        &["corpus.txt", "--accept-changed-data"],
    );
    let o = resume(dir, &["--epochs", "3", "--accept-changed-data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = resume(dir, &["--epochs", "4"]);
    assert!(o.status.success(), "accepted once: {}", stderr(&o));
}

/// Checkpoint files written by a newer lstm-lm are refused in one line naming the file.
#[test]
fn newer_checkpoint_files_are_clean_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    let pointer = dir.join("run/checkpoint.json");
    let latest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pointer).unwrap()).unwrap();
    let trainer = dir
        .join("run")
        .join(latest["latest"].as_str().unwrap())
        .join("trainer.json");
    edit_json(&trainer, |v| v["version"] = 99.into());
    assert_clean_error(
        &resume(dir, &["--epochs", "3"]),
        &["trainer.json", "version 99"],
    );
}
