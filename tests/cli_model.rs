//! End-to-end tests of `lstm-lm train`, `generate`, `eval`, `score` and `info` through the real
//! binary, each in a fresh temporary folder.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, lstm_lm, stderr, stdout};

/// Fails with a one-line `error:` message containing `needle`.
fn assert_clean_error(o: &Output, needle: &str) {
    support::assert_one_line_error(o, &[needle]);
}

/// `train` of the tiny run the model tests share, validated on its corpus, with `extra` flags.
fn train_tiny(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--valid", "corpus.txt"];
    args.extend_from_slice(extra);
    support::train_tiny(dir, CORPUS, &args)
}

/// A tiny trained run shared by the tests that only read it; its training printed a sample.
fn trained_run(dir: &Path) -> PathBuf {
    let o = train_tiny(dir, &["--quiet", "--sample-tokens", "5"]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("trained 2 epochs"), "{out}");
    assert!(out.contains("sample: "), "{out}");
    dir.join("run")
}

#[test]
fn train_then_generate_score_eval_info() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = trained_run(dir);
    for f in [
        "config.json",
        "tokenizer.json",
        "model.bpk",
        "metrics.jsonl",
        "checkpoint.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let o = lstm_lm(
        &[
            "generate",
            "--model",
            "run",
            "--prompt",
            "the keeper",
            "--max-tokens",
            "5",
            "--seed",
            "3",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("the keeper"), "{text}");
    assert!(text.split_whitespace().count() >= 3, "{text}");
    // Same seed, same text.
    let again = lstm_lm(
        &[
            "generate",
            "--model",
            "run",
            "--prompt",
            "the keeper",
            "--max-tokens",
            "5",
            "--seed",
            "3",
        ],
        dir,
    );
    assert_eq!(stdout(&again), text);

    let o = lstm_lm(
        &[
            "score",
            "--model",
            "run",
            "--json",
            "the keeper climbed the tower",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let total = v["total_logprob"].as_f64().unwrap();
    let sum: f64 = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["logprob"].as_f64().unwrap())
        .sum();
    assert!((total - sum).abs() < 1e-6 && total < 0.0);

    let o = lstm_lm(
        &["eval", "--model", "run", "--data", "corpus.txt", "--json"],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert!((v["ppl"].as_f64().unwrap() - loss.exp()).abs() < 1e-6 * loss.exp());
    // Every prefix of every line predicts one token: five lines of 7 words -> 30 targets.
    assert_eq!(v["tokens"].as_u64().unwrap(), 30);

    let o = lstm_lm(&["info", "--model", "run"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("parameters"), "{}", stdout(&o));
}

/// Runs `lstm-lm` with its standard output a pipe whose reader takes the first `keep` bytes
/// (none for 0) and then goes away, as `| head -c` does; returns how the command ended.
fn with_reader_gone(args: &[&str], dir: &Path, keep: usize) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lstm-lm binary runs");
    let mut out = child.stdout.take().unwrap();
    let mut first = vec![0u8; keep];
    out.read_exact(&mut first)
        .unwrap_or_else(|e| panic!("{args:?}: fewer than {keep} bytes on stdout: {e}"));
    drop(out);
    child.wait_with_output().unwrap()
}

/// Status 0 and nothing on stderr (no panic, no `Broken pipe` error).
fn assert_quiet_success(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(o));
    assert_eq!(stderr(o), "", "{what} wrote to stderr");
}

/// Every command ends quietly with status 0 when the reader of its output goes away, before
/// anything was written or in the middle of a long output (`| head`).
#[test]
fn every_model_command_ends_quietly_when_its_reader_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained_run(dir);
    // More output than a pipe holds (64 KiB), so the writer meets the closed pipe mid-way.
    std::fs::write(dir.join("many.txt"), CORPUS.repeat(400)).unwrap();
    let never_read: [&[&str]; 8] = [
        &[
            "generate",
            "--model",
            "run",
            "--prompt",
            "the keeper",
            "--max-tokens",
            "20",
        ],
        &["score", "--model", "run", "the keeper climbed the tower"],
        &[
            "score",
            "--model",
            "run",
            "--json",
            "the keeper climbed the tower",
        ],
        &["eval", "--model", "run", "--data", "corpus.txt"],
        &["eval", "--model", "run", "--data", "corpus.txt", "--json"],
        &["info", "--model", "run"],
        &["info", "--model", "run", "--json"],
        &["score", "--model", "run", "--file", "many.txt"],
    ];
    for args in never_read {
        assert_quiet_success(&with_reader_gone(args, dir, 0), &args.join(" "));
    }
    let read_a_little: [&[&str]; 3] = [
        &["score", "--model", "run", "--file", "many.txt"],
        &[
            "generate",
            "--model",
            "run",
            "--prompts",
            "many.txt",
            "--max-tokens",
            "5",
            "--json",
        ],
        &[
            "generate",
            "--model",
            "run",
            "--prompt",
            "the keeper",
            "--max-tokens",
            "100000",
        ],
    ];
    for args in read_a_little {
        assert_quiet_success(&with_reader_gone(args, dir, 100), &args.join(" "));
    }
    // Training saves the run first, then prints its summary and sample to the closed pipe.
    let args = [
        "train",
        "--preset",
        "seed",
        "--data",
        "corpus.txt",
        "--out",
        "again",
        "--epochs",
        "1",
        "--hidden-size",
        "16",
        "--quiet",
        "--sample-tokens",
        "5",
    ];
    assert_quiet_success(&with_reader_gone(&args, dir, 0), "train");
    assert!(dir.join("again/model.bpk").is_file());
    let mut json_args = args.to_vec();
    json_args[6] = "again-json";
    json_args.push("--json");
    assert_quiet_success(&with_reader_gone(&json_args, dir, 0), "train --json");
    assert!(dir.join("again-json/model.bpk").is_file());
}

/// `--max-tokens` of `usize::MAX` is a limit never reached, not a size to reserve: generation
/// streams until its reader has had enough.
#[test]
fn max_tokens_of_usize_max_streams_until_the_reader_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained_run(dir);
    let max = usize::MAX.to_string();
    for greedy in [false, true] {
        let mut args = vec![
            "generate",
            "--model",
            "run",
            "--prompt",
            "the keeper",
            "--max-tokens",
            &max,
        ];
        if greedy {
            args.push("--greedy");
        }
        let o = with_reader_gone(&args, dir, 5000);
        assert_quiet_success(&o, &args.join(" "));
    }
}

/// Sizes past the model's limits are refused before anything is built or trained, with one
/// line naming the flag and the limit; so is a run folder whose config claims such a size.
#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let max = usize::MAX.to_string();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", "corpus.txt", "--out", "x", "--quiet"];
        args.extend_from_slice(extra);
        lstm_lm(&args, dir)
    };
    assert_clean_error(
        &train(&["--hidden-size", "100000"]),
        "model.hidden_size (--hidden-size) = 100000 is above the limit of 65536",
    );
    assert_clean_error(
        &train(&["--embedding-size", "9223372036854775807"]),
        "model.embedding_size (--embedding-size) = 9223372036854775807 is above the limit of 65536",
    );
    assert_clean_error(
        &train(&["--layers", "1000"]),
        "model.num_layers (--layers) = 1000 is above the limit of 64",
    );
    assert_clean_error(
        &train(&["--hidden-size", "60000", "--layers", "60"]),
        "parameters, above the limit of 2147483648",
    );
    assert_clean_error(
        &train(&["--tokenizer", "bpe", "--set", "data.vocab_size=100000000"]),
        "data.vocab_size = 100000000 is above the limit of 16777216",
    );
    assert_clean_error(
        &train(&["--sample-tokens", &max]),
        "--sample-tokens 18446744073709551615 is above the limit of 100000",
    );
    assert!(!dir.join("x").exists(), "a refused run left a folder");

    // A config.json edited to claim a hidden size of a billion.
    let run = trained_run(dir);
    let path = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model"]["hidden_size"] = serde_json::json!(1_000_000_000u64);
    std::fs::write(&path, config.to_string()).unwrap();
    for command in ["info", "generate"] {
        assert_clean_error(
            &lstm_lm(&[command, "--model", "run"], dir),
            "hidden_size = 1000000000 is above the limit of 65536",
        );
    }
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = trained_run(dir);

    // Missing run folder.
    assert_clean_error(
        &lstm_lm(&["generate", "--model", "nowhere"], dir),
        "nowhere",
    );
    // Corrupt config.
    std::fs::create_dir(dir.join("broken")).unwrap();
    std::fs::write(dir.join("broken/config.json"), "{ not json").unwrap();
    assert_clean_error(&lstm_lm(&["info", "--model", "broken"], dir), "config.json");
    // Corrupt weights.
    let copy = dir.join("copy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(run.join(f), copy.join(f)).unwrap();
    }
    std::fs::write(copy.join("model.bpk"), b"garbage").unwrap();
    assert_clean_error(&lstm_lm(&["generate", "--model", "copy"], dir), "model.bpk");
    // Tokenizer from another run: vocabulary mismatch.
    std::fs::write(
        dir.join("other.txt"),
        "alpha beta gamma delta\nepsilon zeta eta theta iota\n",
    )
    .unwrap();
    let o = lstm_lm(
        &[
            "tokenize",
            "--kind",
            "keras-word",
            "--input",
            "other.txt",
            "--out",
            "other.json",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::copy(run.join("model.bpk"), copy.join("model.bpk")).unwrap();
    std::fs::copy(dir.join("other.json"), copy.join("tokenizer.json")).unwrap();
    assert_clean_error(&lstm_lm(&["generate", "--model", "copy"], dir), "tokenizer");
    // Unknown preset.
    assert_clean_error(
        &lstm_lm(
            &[
                "train",
                "--preset",
                "nope",
                "--data",
                "corpus.txt",
                "--out",
                "x",
            ],
            dir,
        ),
        "unknown preset 'nope'",
    );
    // Tying with different sizes.
    assert_clean_error(
        &lstm_lm(
            &[
                "train",
                "--data",
                "corpus.txt",
                "--out",
                "x",
                "--tie-weights",
                "--hidden-size",
                "16",
                "--embedding-size",
                "8",
            ],
            dir,
        ),
        "tie_weights",
    );
    // top-p outside (0, 1].
    assert_clean_error(
        &lstm_lm(&["generate", "--model", "run", "--top-p", "1.5"], dir),
        "--top-p",
    );
    // A prompt made only of unknown words.
    assert_clean_error(
        &lstm_lm(
            &["generate", "--model", "run", "--prompt", "zebra quasar"],
            dir,
        ),
        "prompt",
    );
    // Training into a folder that already holds a run.
    assert_clean_error(
        &lstm_lm(&["train", "--data", "corpus.txt", "--out", "run"], dir),
        "already holds a run",
    );
    // A training file that does not exist.
    assert_clean_error(
        &lstm_lm(&["train", "--data", "missing.txt", "--out", "y"], dir),
        "missing.txt",
    );
}

/// Ctrl-C stops a run with status 130 and a checkpoint; `--resume` then trains the rest, and
/// ends with the same weights as a run of as many epochs that was never stopped.
#[test]
fn interrupted_training_exits_130_and_resumes_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS.repeat(20)).unwrap();
    let settings = [
        "--preset",
        "seed",
        "--data",
        "corpus.txt",
        "--batch-size",
        "4",
        "--hidden-size",
        "32",
        "--seed",
        "7",
        "--sample-tokens",
        "0",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args(["train", "--out", "run", "--epochs", "400", "--log-lines"])
        .args(settings)
        .current_dir(dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first checkpoint exists, then interrupt as Ctrl-C would.
    let pointer = dir.join("run/checkpoint.json");
    let start = std::time::Instant::now();
    while !pointer.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(pointer.exists(), "no checkpoint was written");
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");

    // What the model is at the interruption: the resumed run must move on from it.
    let figures = |run: &str| {
        let eval = lstm_lm(
            &["eval", "--model", run, "--data", "corpus.txt", "--json"],
            dir,
        );
        assert!(eval.status.success(), "{}", stderr(&eval));
        let score = lstm_lm(
            &[
                "score",
                "--model",
                run,
                "--json",
                "the keeper climbed the tower at dusk",
            ],
            dir,
        );
        assert!(score.status.success(), "{}", stderr(&score));
        stdout(&eval) + &stdout(&score)
    };
    let at_interruption = figures("run");

    // Two epochs past the last one finished: whatever the moment of the interruption, the
    // resumed run trains at least one whole epoch.
    let epochs = epoch_losses(&dir.join("run")).len() + 2;
    let epochs = epochs.to_string();
    let o = lstm_lm(
        &["train", "--resume", "run", "--epochs", &epochs, "--quiet"],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("trained {epochs} epochs")),
        "{}",
        stdout(&o)
    );
    let o = lstm_lm(
        &[
            &["train", "--out", "whole", "--epochs", &epochs, "--quiet"],
            &settings[..],
        ]
        .concat(),
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let resumed = epoch_losses(&dir.join("run"));
    let whole = epoch_losses(&dir.join("whole"));
    assert_eq!(resumed.len().to_string(), epochs);
    assert_eq!(resumed, whole, "per-epoch training losses");
    // The weights, through every figure printed to 16 digits: loss, perplexity and accuracy
    // on the corpus, and each token's log-probability in a sentence (`model.bpk` itself holds
    // random parameter ids, so its bytes differ between any two runs).
    let resumed = figures("run");
    assert_eq!(resumed, figures("whole"), "resumed vs uninterrupted");
    assert_ne!(
        resumed, at_interruption,
        "nothing was trained after resuming"
    );
}

/// The training loss of every finished epoch in a run's `metrics.jsonl`, in order (the last
/// line for an epoch wins, should a resumed run have written it again).
fn epoch_losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut losses: std::collections::BTreeMap<u64, f64> = Default::default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event"] == "epoch" {
            losses.insert(
                v["epoch"].as_u64().unwrap(),
                v["train_loss"].as_f64().unwrap(),
            );
        }
    }
    losses.into_values().collect()
}

/// `lstm-lm` with a private `XDG_RUNTIME_DIR` (Mesa's window-system code otherwise prints a
/// complaint on stderr when it loads).
fn lstm_lm_gpu(args: &[&str], dir: &Path) -> Output {
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args(args)
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", &xdg)
        .output()
        .expect("the lstm-lm binary runs")
}

/// Whether a wgpu adapter exists; prints `SKIPPED` and answers false where none does, except in CI
/// (`CI` or `LSTM_LM_REQUIRE_WGPU=1`), which fails instead.
fn wgpu_available(test: &str) -> bool {
    match lstm_lm_model::device_for(lstm_lm_model::BackendKind::Wgpu, 0) {
        Ok(_) => true,
        Err(e) => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var("LSTM_LM_REQUIRE_WGPU").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: wgpu is required here but unavailable: {e}"
            );
            eprintln!("SKIPPED {test}: no wgpu adapter (install mesa-vulkan-drivers): {e}");
            false
        }
    }
}

/// Train, generate, score and eval with `--backend wgpu`; the wgpu-trained run scores the same
/// on flex.
#[test]
fn wgpu_backend_trains_generates_scores_and_evaluates() {
    if !wgpu_available("wgpu_backend_trains_generates_scores_and_evaluates") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let wgpu = ["--backend", "wgpu", "--device", "0"];
    let mut args = vec![
        "train",
        "--preset",
        "seed",
        "--data",
        "corpus.txt",
        "--out",
        "run",
        "--epochs",
        "1",
        "--hidden-size",
        "16",
        "--embedding-size",
        "8",
        "--quiet",
        "--sample-tokens",
        "3",
    ];
    args.extend(wgpu);
    let o = lstm_lm_gpu(&args, dir);
    assert!(o.status.success(), "train on wgpu failed: {}", stderr(&o));
    let mut args = vec![
        "generate",
        "--model",
        "run",
        "--prompt",
        "the",
        "--max-tokens",
        "4",
    ];
    args.extend(wgpu);
    let o = lstm_lm_gpu(&args, dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("the"), "{}", stdout(&o));
    let score = |backend: &[&str]| -> f64 {
        let mut args = vec![
            "score",
            "--model",
            "run",
            "--json",
            "the keeper climbed the tower",
        ];
        args.extend(backend);
        let o = lstm_lm_gpu(&args, dir);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v["total_logprob"].as_f64().unwrap()
    };
    let (on_wgpu, on_flex) = (score(&wgpu), score(&["--backend", "flex"]));
    assert!(
        (on_wgpu - on_flex).abs() < 1e-3,
        "wgpu {on_wgpu} vs flex {on_flex}"
    );
    let mut args = vec!["eval", "--model", "run", "--data", "corpus.txt", "--json"];
    args.extend(wgpu);
    let o = lstm_lm_gpu(&args, dir);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// An adapter that does not exist is a one-line error naming what was found, whether or not the
/// machine has any adapter at all.
#[test]
fn a_missing_wgpu_adapter_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = trained_run(dir);
    let run = run.to_str().unwrap();
    for args in [
        vec!["generate", "--model", run, "--prompt", "the"],
        vec!["score", "--model", run, "the keeper"],
        vec!["eval", "--model", run, "--data", "corpus.txt"],
        vec![
            "train",
            "--preset",
            "seed",
            "--data",
            "corpus.txt",
            "--out",
            "run2",
            "--epochs",
            "1",
        ],
    ] {
        let mut args = args;
        args.extend(["--backend", "wgpu", "--device", "99"]);
        let o = lstm_lm_gpu(&args, dir);
        assert_clean_error(&o, WGPU_MISSING);
    }
}

/// What `--backend wgpu` says when it cannot run: no adapter in a GPU build, how to rebuild
/// in a CPU-only build.
const WGPU_MISSING: &str = if cfg!(feature = "wgpu") {
    "no wgpu adapter"
} else {
    "rebuild it with `--features wgpu`"
};

/// With every Vulkan driver and EGL vendor hidden (Linux loader variables), `--backend wgpu`
/// fails with one line that says how to install a driver. Where the machine still finds an
/// adapter some other way, the test says so and passes.
#[cfg(target_os = "linux")]
#[test]
fn no_driver_at_all_is_a_one_line_error_with_install_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = trained_run(dir);
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args(["score", "--model", run.to_str().unwrap(), "the keeper"])
        .args(["--backend", "wgpu"])
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", &xdg)
        .env("VK_ICD_FILENAMES", dir.join("none.json"))
        .env("VK_DRIVER_FILES", dir.join("none.json"))
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", dir.join("none.json"))
        .output()
        .unwrap();
    if o.status.success() {
        eprintln!("NOTE: an adapter was found with Vulkan and EGL hidden; error path not checked");
        return;
    }
    if cfg!(feature = "wgpu") {
        assert_clean_error(&o, "no wgpu adapter found");
        assert_clean_error(&o, "mesa-vulkan-drivers");
    } else {
        assert_clean_error(&o, WGPU_MISSING);
    }
}

#[test]
fn devices_flag_trains_data_parallel_and_refuses_bad_combinations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let train = |extra: &[&str], out: &str| {
        let mut args = vec![
            "train",
            "--preset",
            "seed",
            "--data",
            "corpus.txt",
            "--out",
            out,
            "--epochs",
            "1",
            "--hidden-size",
            "8",
            "--embedding-size",
            "8",
            "--quiet",
            "--sample-tokens",
            "0",
        ];
        args.extend_from_slice(extra);
        lstm_lm(&args, dir)
    };
    let o = train(&["--devices", "2"], "two");
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    assert!(stdout(&o).contains("trained 1 epochs"), "{}", stdout(&o));
    // One pool thread, which runs the training itself: the shards' backward passes must not
    // wait for a second one.
    let o = train(&["--devices", "2", "--threads", "1"], "one-thread");
    assert!(o.status.success(), "train failed: {}", stderr(&o));

    assert_clean_error(&train(&["--devices", "0,1"], "list"), "single CPU device");
    assert_clean_error(&train(&["--devices", "0"], "zero"), "at least 1");
    assert_clean_error(
        &train(&["--devices", "2", "--batch-size", "1"], "small"),
        "2 devices need at least 2 sequences",
    );
    let o = train(&["--devices", "2", "--device", "1"], "both");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--devices"), "{}", stderr(&o));
}

/// `--split` takes the form its help and the README show (`0.9,0.05,0.05`), and a negative
/// number after a flag is that flag's value, refused with a message of its own (clap used to
/// read `-1` as an unknown flag).
#[test]
fn split_takes_the_documented_form_and_negative_values_get_their_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS.repeat(8)).unwrap();
    let train = |split: &str, out: &str| {
        lstm_lm(
            &[
                "train",
                "--preset",
                "seed",
                "--data",
                "corpus.txt",
                "--split",
                split,
                "--out",
                out,
                "--epochs",
                "1",
                "--quiet",
                "--sample-tokens",
                "0",
            ],
            dir,
        )
    };
    let o = train("0.8,0.1,0.1", "run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_error(&train("0.9,0.1", "run2"), "--split takes three fractions");
    let run = dir.join("run");
    let o = lstm_lm(
        &[
            "generate",
            "--model",
            run.to_str().unwrap(),
            "--prompt",
            "the",
            "--temperature",
            "-1",
        ],
        dir,
    );
    assert_clean_error(&o, "--temperature -1 must be a positive number");
}

/// `train --print-config` prints the merged settings as TOML without training; fed back
/// through `--config` it gives the same settings, and `info --print-config` of the trained run
/// prints them again.
#[test]
fn print_config_round_trips_through_config_and_info() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let o = lstm_lm(
        &[
            "train",
            "--preset",
            "seed",
            "--hidden-size",
            "24",
            "--lr",
            "0.02",
            "--print-config",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    assert!(
        printed.contains("[model]") && printed.contains("hidden_size = 24"),
        "{printed}"
    );
    assert!(!dir.join("run").exists());
    std::fs::write(dir.join("again.toml"), &printed).unwrap();
    let o = lstm_lm(&["train", "--config", "again.toml", "--print-config"], dir);
    assert_eq!(stdout(&o), printed, "{}", stderr(&o));
    let o = lstm_lm(
        &[
            "train",
            "--config",
            "again.toml",
            "--data",
            "corpus.txt",
            "--out",
            "run",
            "--epochs",
            "1",
            "--quiet",
            "--sample-tokens",
            "0",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lstm_lm(&["info", "--model", "run", "--print-config"], dir);
    let from_run = stdout(&o);
    assert!(
        from_run.contains("hidden_size = 24") && from_run.contains("epochs = 1"),
        "{from_run}"
    );
}

/// `lstm-lm runs DIR` lists each run folder with its epochs, best validation perplexity and
/// status; a run with epochs still to go reads as interrupted.
#[test]
fn runs_lists_finished_and_interrupted_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = trained_run(dir);
    let runs = dir.join("runs");
    std::fs::create_dir_all(runs.join("not-a-run")).unwrap();
    let copy = |name: &str| {
        let to = runs.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&run).unwrap().flatten() {
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
        to
    };
    copy("done");
    let more = copy("more");
    let config = more.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    value["settings"]["train"]["epochs"] = 50.into();
    std::fs::write(&config, value.to_string()).unwrap();
    let o = lstm_lm(&["runs", runs.to_str().unwrap(), "--json"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&o));
    assert_eq!(rows[0]["status"], "finished");
    assert_eq!(rows[1]["status"], "interrupted");
    assert_eq!(rows[1]["epochs"], 50);
    assert!(rows[0]["best_valid_ppl"].as_f64().unwrap() > 1.0);
    assert!(rows[0]["bytes"].as_u64().unwrap() > 1000);
    let o = lstm_lm(&["runs", runs.to_str().unwrap()], dir);
    let table = stdout(&o);
    assert!(
        table.contains("done") && table.contains("interrupted"),
        "{table}"
    );
    assert_clean_error(&lstm_lm(&["runs", "missing"], dir), "missing");
}

/// `train --json` prints only JSON lines on stdout: train events at the log interval, an epoch
/// event per epoch, a sample and the summary last, each with the documented fields; the plain
/// log lines on stderr carry the progress fields.
#[test]
fn train_json_prints_documented_events_and_log_lines_carry_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = train_tiny(
        dir,
        &[
            "--log-interval",
            "1",
            "--sample-tokens",
            "3",
            "--log-lines",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "epoch").count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| **k == "train").count() >= 2,
        "{kinds:?}"
    );
    assert_eq!(
        &kinds[kinds.len() - 2..],
        ["sample", "summary"],
        "{kinds:?}"
    );
    let train = events.iter().find(|e| e["event"] == "train").unwrap();
    for field in [
        "epoch",
        "step",
        "loss",
        "ppl",
        "lr",
        "tok_per_s",
        "eta_s",
        "tokens",
    ] {
        assert!(train[field].is_number(), "{field} in {train}");
    }
    let epoch = events.iter().find(|e| e["event"] == "epoch").unwrap();
    assert!(epoch["valid_ppl"].as_f64().unwrap().is_finite(), "{epoch}");
    let summary = events.last().unwrap();
    assert_eq!(summary["version"], 1);
    assert_eq!(summary["epochs"], 2);
    assert!(
        summary["best_valid"]["ppl"].as_f64().unwrap().is_finite(),
        "{summary}"
    );
    // The human progress lines: epoch, step of steps, loss, ppl, tok/s, both ETAs.
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("step 1/"))
        .unwrap_or_else(|| panic!("{err}"));
    for needle in [
        "epoch 1/2",
        "loss ",
        "ppl ",
        "tok/s",
        "ETA epoch ",
        ", run ",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    }
}

fn json_out(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn vector(v: &serde_json::Value) -> Vec<f64> {
    v["vector"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "{what}: {x} vs {y}"
        );
    }
}

/// Sentence vectors: batched (sorted by length, padded) equal one text at a time, in input
/// order; the formats agree; `similar` finds a line itself first; `score --file` batched equals
/// one line at a time and names ids.
#[test]
fn embed_similar_and_batched_score_agree_with_one_text_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained_run(dir);
    let lines: Vec<&str> = CORPUS.lines().collect();
    std::fs::write(dir.join("lines.txt"), format!("{}\n\n", CORPUS.trim_end())).unwrap();
    let batched = json_out(&lstm_lm(
        &["embed", "--model", "run", "--file", "lines.txt"],
        dir,
    ));
    assert_eq!(
        batched.len(),
        lines.len() + 1,
        "a vector or an error per line"
    );
    assert!(
        batched[lines.len()]["error"].is_string(),
        "{}",
        batched[lines.len()]
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(batched[i]["index"], i);
        let alone = json_out(&lstm_lm(&["embed", "--model", "run", line], dir));
        assert_eq!(vector(&batched[i]).len(), 16);
        assert_close(&vector(&batched[i]), &vector(&alone[0]), line);
    }
    let pooled = |pool: &str| {
        vector(
            &json_out(&lstm_lm(
                &["embed", "--model", "run", "--pool", pool, lines[0]],
                dir,
            ))[0],
        )
    };
    let (last, mean, max) = (pooled("last"), pooled("mean"), pooled("max"));
    assert!(last != mean && mean != max, "the pools differ");
    assert!(
        max.iter().zip(&mean).all(|(m, a)| m >= a),
        "max >= mean everywhere"
    );
    // TSV and NPY hold the same numbers.
    let tsv = stdout(&lstm_lm(
        &["embed", "--model", "run", "--format", "tsv", lines[1]],
        dir,
    ));
    let tsv: Vec<f64> = tsv
        .trim_end()
        .split('\t')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_close(&tsv, &vector(&batched[1]), "tsv");
    let o = lstm_lm(
        &[
            "embed",
            "--model",
            "run",
            "--file",
            "lines.txt",
            "--format",
            "npy",
            "--out",
            "v.npy",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 of 6 texts have no vector"),
        "{}",
        stderr(&o)
    );
    let npy = std::fs::read(dir.join("v.npy")).unwrap();
    assert!(npy.starts_with(b"\x93NUMPY\x01\x00"));
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = std::str::from_utf8(&npy[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'shape': (6, 16)") && header.ends_with('\n'),
        "{header}"
    );
    assert_eq!((10 + header_len) % 64, 0);
    let data = &npy[10 + header_len..];
    assert_eq!(data.len(), 6 * 16 * 4);
    let row2: Vec<f64> = data[2 * 64..3 * 64]
        .chunks(4)
        .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
        .collect();
    assert_close(&row2, &vector(&batched[2]), "npy row 2");
    // `similar`: a line of the file is its own nearest line.
    let found = json_out(&lstm_lm(
        &[
            "similar",
            "--model",
            "run",
            "--query",
            lines[3],
            "--file",
            "lines.txt",
            "-k",
            "3",
            "--json",
        ],
        dir,
    ));
    assert_eq!(found.len(), 3);
    assert_eq!(found[0]["line"], 4);
    assert!(
        (found[0]["similarity"].as_f64().unwrap() - 1.0).abs() < 1e-5,
        "{}",
        found[0]
    );
    assert!(found[1]["similarity"].as_f64().unwrap() <= found[0]["similarity"].as_f64().unwrap());
    // Batched scores equal one line at a time; tokens carry ids.
    let all = json_out(&lstm_lm(
        &["score", "--model", "run", "--file", "lines.txt", "--json"],
        dir,
    ));
    assert_eq!(all.len(), lines.len(), "blank lines are skipped");
    for (i, line) in lines.iter().enumerate() {
        let alone = &json_out(&lstm_lm(&["score", "--model", "run", "--json", line], dir))[0];
        assert_eq!(all[i]["line"], i + 1);
        let (a, b) = (
            all[i]["tokens"].as_array().unwrap(),
            alone["tokens"].as_array().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{line}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!((&x["id"], &x["token"]), (&y["id"], &y["token"]), "{line}");
            let (lx, ly) = (
                x["logprob"].as_f64().unwrap(),
                y["logprob"].as_f64().unwrap(),
            );
            assert!((lx - ly).abs() < 1e-4, "{line}: {lx} vs {ly}");
        }
        assert!(all[i]["tokens"][0]["id"].is_u64(), "{}", all[i]);
    }
}

#[test]
fn embed_and_similar_refuse_bad_input_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained_run(dir);
    std::fs::write(dir.join("blank.txt"), "\n  \n").unwrap();
    for (args, needle) in [
        (vec!["embed", "--model", "run"], "give texts"),
        (
            vec!["embed", "--model", "run", "--layer", "5", "the"],
            "--layer 5",
        ),
        (
            vec!["embed", "--model", "run", "--pool", "median", "the"],
            "--pool",
        ),
        (
            vec!["embed", "--model", "run", "--file", "-", "--format", "npy"],
            "standard input",
        ),
        (
            vec!["embed", "--model", "run", "--file", "nope.txt"],
            "nope.txt",
        ),
        (
            vec![
                "embed",
                "--model",
                "run",
                "--out",
                "no/such/dir/v.npy",
                "the",
            ],
            "no/such/dir",
        ),
        (
            vec![
                "similar",
                "--model",
                "run",
                "--query",
                "the",
                "--file",
                "blank.txt",
            ],
            "no line",
        ),
        (
            vec![
                "similar",
                "--model",
                "run",
                "--query",
                "zzz",
                "--file",
                "blank.txt",
            ],
            "--query",
        ),
        (
            vec![
                "similar",
                "--model",
                "run",
                "--query",
                "the",
                "--file",
                "blank.txt",
                "-k",
                "0",
            ],
            "-k",
        ),
    ] {
        assert_clean_error(&lstm_lm(&args, dir), needle);
    }
}

/// AWD-LSTM's flags set their settings (as `--print-config` shows), bad values are one-line
/// errors naming the setting, and the `awd-ptb` preset prints its three per-layer widths.
#[test]
fn awd_flags_set_their_settings_and_bad_values_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = lstm_lm(
        &[
            "train",
            "--locked-dropout",
            "--weight-drop",
            "0.3",
            "--embedding-dropout",
            "0.1",
            "--ar",
            "2",
            "--tar",
            "1",
            "--random-bptt",
            "--nt-asgd",
            "--print-config",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    for want in [
        "[regularisation]\nlocked_dropout = true\nweight_drop = 0.3\nembedding_dropout = 0.1\nar = 2.0\ntar = 1.0",
        "random_bptt = true",
        "nt_asgd = true",
        "nonmono = 5",
    ] {
        assert!(printed.contains(want), "{want:?} not in {printed}");
    }
    let o = lstm_lm(&["train", "--preset", "awd-ptb", "--print-config"], dir);
    assert!(
        stdout(&o).contains("hidden_sizes = [1150, 1150, 400]"),
        "{}",
        stdout(&o)
    );
    assert_clean_error(
        &lstm_lm(&["train", "--weight-drop", "1.5", "--print-config"], dir),
        "regularisation.weight_drop = 1.5 must be in [0, 1)",
    );
    assert_clean_error(
        &lstm_lm(
            &[
                "train",
                "--recipe",
                "ngram",
                "--random-bptt",
                "--print-config",
            ],
            dir,
        ),
        "data.random_bptt applies to the stream recipe only",
    );
}

/// The `awd-ptb` preset (weight drop, locked and embedding dropout, AR/TAR, random BPTT,
/// NT-ASGD, per-layer widths, tied weights) trains, resumes and evaluates through the normal
/// commands; only the widths and batch shape are made small here.
#[test]
fn the_awd_preset_trains_resumes_and_evaluates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS.repeat(20)).unwrap();
    std::fs::write(dir.join("valid.txt"), CORPUS).unwrap();
    let small = [
        "--set",
        "model.embedding_size=16",
        "--set",
        "model.hidden_sizes=[24,24,16]",
        "--set",
        "data.batch_size=4",
        "--set",
        "data.bptt=12",
    ];
    let mut args = vec![
        "train",
        "--preset",
        "awd-ptb",
        "--data",
        "corpus.txt",
        "--valid",
        "valid.txt",
        "--out",
        "awd",
        "--epochs",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(&small);
    let o = lstm_lm(&args, dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("awd/config.json")).unwrap()).unwrap();
    let s = &config["settings"];
    assert_eq!(s["regularisation"]["weight_drop"], 0.5, "{s}");
    assert_eq!(s["regularisation"]["locked_dropout"], true, "{s}");
    assert_eq!(s["optim"]["nt_asgd"], true, "{s}");
    assert_eq!(s["data"]["random_bptt"], true, "{s}");
    assert_eq!(
        s["model"]["hidden_sizes"],
        serde_json::json!([24, 24, 16]),
        "{s}"
    );
    let o = lstm_lm(
        &["train", "--resume", "awd", "--epochs", "2", "--quiet"],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let info = stdout(&lstm_lm(&["info", "--model", "awd"], dir));
    assert!(
        info.contains("hidden 24/24/16") && info.contains("epoch   2"),
        "{info}"
    );
    let o = lstm_lm(&["eval", "--model", "awd", "--data", "valid.txt"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let ppl: f64 = stdout(&o)
        .split("perplexity")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {}", stdout(&o)));
    assert!(ppl.is_finite() && ppl > 1.0, "{ppl}");
}
