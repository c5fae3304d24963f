//! `lstm-lm eval --cache/--dynamic` and `score --cache` through the real binary: what they
//! print, and one-line errors for bad flag values.
use std::path::Path;

#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, assert_one_line_error, lstm_lm, stderr, stdout, train_tiny_run};

/// A tiny stream run on the corpus (evaluation batch of 2 so the five lines make windows).
fn trained_run(dir: &Path) {
    let stream = [
        "--recipe",
        "stream",
        "--bptt",
        "5",
        "--batch-size",
        "2",
        "--set",
        "data.eval_batch_size=2",
        "--sample-tokens",
        "0",
    ];
    train_tiny_run(dir, &CORPUS.repeat(4), &stream);
}

#[test]
fn eval_and_score_with_adaptation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained_run(dir);
    let base = ["eval", "--model", "run", "--data", "corpus.txt"];
    let eval = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        lstm_lm(&args, dir)
    };

    let o = eval(&[
        "--cache",
        "50",
        "--tune-cache",
        "corpus.txt",
        "--dynamic",
        "--dynamic-rule",
        "sgd",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "tuned cache on",
        "plain            loss",
        "cache            loss",
        "dynamic          loss",
        "dynamic + cache  loss",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    let o = eval(&["--dynamic", "0.5:0.01", "--dynamic-rule", "sgd", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["plain"]["ppl"].as_f64().unwrap().is_finite());
    assert_eq!(v["dynamic"]["lr"].as_f64(), Some(0.5));
    assert!(v["dynamic"]["ppl"].as_f64().unwrap().is_finite());

    let o = eval(&[
        "--dynamic",
        "--dynamic-rule",
        "rms",
        "--tune-dynamic",
        "corpus.txt",
        "--prefix-tokens",
        "60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("tuned dynamic evaluation (rms)"), "{text}");
    let tokens: usize = text
        .lines()
        .find(|l| l.starts_with("plain"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|t| t.parse().ok())
        .unwrap();
    assert!((1..=60).contains(&tokens), "{text}");

    let o = lstm_lm(
        &[
            "score",
            "--model",
            "run",
            "--cache",
            "20:1:0.3",
            "the keeper climbed the tower the keeper climbed the tower",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(plain: log-probability"),
        "{}",
        stdout(&o)
    );

    for (flags, needle) in [
        (vec!["--cache", "0"], "--cache \"0\""),
        (vec!["--cache", "100:x"], "--cache \"100:x\""),
        (vec!["--cache", "100:0.5:1.5"], "λ"),
        (vec!["--dynamic", "-1"], "--dynamic \"-1\""),
        (vec!["--dynamic", "0.1:2"], "decay"),
        (
            vec!["--dynamic", "--dynamic-rule", "rms"],
            "--dynamic-stats",
        ),
        (
            vec!["--dynamic", "--dynamic-rule", "adam"],
            "--dynamic-rule",
        ),
        (
            vec!["--tune-cache", "corpus.txt"],
            "--tune-cache needs --cache",
        ),
        (
            vec!["--cache", "9:1:0.1", "--tune-cache", "corpus.txt"],
            "WINDOW",
        ),
        (
            vec!["--tune-dynamic", "corpus.txt"],
            "--tune-dynamic needs --dynamic",
        ),
        (vec!["--dynamic-stats", "corpus.txt"], "go with --dynamic"),
        (
            vec![
                "--dynamic",
                "--dynamic-rule",
                "rms",
                "--dynamic-stats",
                "missing.txt",
            ],
            "missing.txt",
        ),
        (
            vec!["--dynamic", "--dynamic-stats", "corpus.txt"],
            "--dynamic-rule rms",
        ),
    ] {
        assert_one_line_error(&eval(&flags), &[needle]);
    }
    assert_one_line_error(
        &lstm_lm(
            &["score", "--model", "run", "--cache", "0", "the keeper"],
            dir,
        ),
        &["--cache"],
    );
}
