//! `lstm-lm train` checkpoints and `--resume` through the real binary: periodic checkpoints,
//! runs killed before their first checkpoint, and what a resume refuses.
use std::path::Path;
use std::process::{Command, Output};

fn lstm_lm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the lstm-lm binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with a one-line `error:` message containing every one of `needles`.
fn assert_clean_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

const CORPUS: &str = "the keeper climbed the tower at dusk\n\
the lamp burned over the cold sea\n\
the keeper trimmed the wick at dawn\n\
ships passed the rocks in the dark\n\
the gulls slept on the cold rocks\n";

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
