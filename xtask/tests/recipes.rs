//! Tests for `cargo xtask train RECIPE`. No internet: datasets come from a mirror folder in a
//! temp directory, described by a test manifest (`--manifest`) so that their checksums match.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lstm_lm_train::settings::{OptimizerKind, TokenizerChoice, TrainSettings};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use xtask::manifest::Manifest;
use xtask::recipes::RECIPES;

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic lines of words drawn from a small vocabulary (about `n` bytes).
fn corpus(n: usize, seed: u32) -> String {
    const WORDS: [&str; 12] = [
        "the", "king", "shall", "speak", "and", "thou", "art", "my", "lord", "of", "night", "come",
    ];
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut s = String::new();
    let mut words_in_line = 0;
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.push_str(WORDS[(x % WORDS.len() as u32) as usize]);
        words_in_line += 1;
        if words_in_line == 9 {
            s.push('\n');
            words_in_line = 0;
        } else {
            s.push(' ');
        }
    }
    s.push('\n');
    s
}

/// A temp folder with a mirror, a data folder, a manifest and room for run folders.
struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Puts `data` at `<mirror>/<rel>`.
    fn mirror_file(&self, rel: &str, data: &[u8]) {
        let p = self.path("mirror").join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn write_manifest(&self, datasets: Value) {
        let doc = json!({ "schema_version": 1, "datasets": datasets });
        fs::write(
            self.path("manifest.json"),
            serde_json::to_string_pretty(&doc).unwrap(),
        )
        .unwrap();
    }

    /// `xtask train RECIPE` against this folder's manifest, mirror and data folder.
    fn xtask_train(&self, recipe: &str, out: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["train", recipe, "--quiet", "--manifest"])
            .arg(self.path("manifest.json"))
            .arg("--mirror")
            .arg(self.path("mirror"))
            .arg("--data-dir")
            .arg(self.path("data"))
            .arg("--out")
            .arg(self.path(out))
            .args(extra)
            .output()
            .unwrap()
    }
}

/// Upstream URLs that must never be used (the mirror replaces them).
const NOWHERE: &str = "http://127.0.0.1:9/never-used";

/// A tiny-shakespeare stand-in: one file, cut 90/5/5, with its real checksum.
fn fake_tiny_shakespeare(text: &[u8]) -> Value {
    json!({
        "name": "tiny-shakespeare",
        "description": "test stand-in",
        "licence": "test",
        "source_page": "http://127.0.0.1/",
        "files": [{ "path": "input.txt", "size": text.len(), "sha256": sha(text),
                    "mirror_paths": ["tinyshakespeare/input.txt"] }],
        "sources": [{ "id": "test", "archives": [
            { "name": "input.txt", "kind": "plain", "file": "input.txt", "urls": [NOWHERE] }
        ]}],
        "splits": { "kind": "fraction", "file": "input.txt", "train": 0.9, "valid": 0.05, "test": 0.05 }
    })
}

/// A PTB stand-in: one file per split, with their real checksums.
fn fake_ptb(splits: &[(&str, &[u8])]) -> Value {
    let files: Vec<Value> = splits
        .iter()
        .map(|(f, d)| json!({ "path": f, "size": d.len(), "sha256": sha(d) }))
        .collect();
    let archives: Vec<Value> = splits
        .iter()
        .map(|(f, _)| json!({ "name": f, "kind": "plain", "file": f, "urls": [NOWHERE] }))
        .collect();
    json!({
        "name": "ptb",
        "description": "test stand-in",
        "licence": "test",
        "source_page": "http://127.0.0.1/",
        "files": files,
        "sources": [{ "id": "test", "archives": archives }],
        "splits": { "kind": "files", "train": "train.txt", "valid": "valid.txt", "test": "test.txt" }
    })
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn read_summary(run: &Path) -> Value {
    let text = fs::read_to_string(run.join("summary.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", run.join("summary.json").display()));
    serde_json::from_str(&text).unwrap()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn recipe_table_is_complete_and_every_preset_validates() {
    let names: BTreeSet<&str> = RECIPES.iter().map(|r| r.name).collect();
    let expected: BTreeSet<&str> = [
        "char-rnn",
        "wt2-small",
        "wt2-medium",
        "ptb-small",
        "ptb-medium",
        "tang-poetry",
        "zh-word",
        "awd-ptb",
        "awd-wt2",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected);
    assert_eq!(names.len(), RECIPES.len(), "duplicate recipe names");

    let manifest = Manifest::load(&Manifest::default_path()).unwrap();
    for r in RECIPES {
        let s = TrainSettings::preset(r.preset).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        s.validate().unwrap_or_else(|e| panic!("{}: {e}", r.name));
        manifest
            .get(r.dataset)
            .unwrap_or_else(|e| panic!("{}: dataset {}: {e}", r.name, r.dataset));
        let p = &r.published;
        assert!(!p.source.is_empty() && !p.note.is_empty(), "{}", r.name);
        if p.test_ppl.is_none() {
            assert_eq!(p.source, "no published figure", "{}", r.name);
        }
        assert_eq!(
            s.data.tokenizer == TokenizerChoice::Char,
            r.name == "char-rnn" || r.name == "tang-poetry",
            "{}: only char-rnn and tang-poetry are character level",
            r.name
        );
        if r.dataset == "tiny-shakespeare" {
            assert!(s.data.split.is_some(), "{}: one file needs a split", r.name);
        }
    }

    let by = |n: &str| RECIPES.iter().find(|r| r.name == n).unwrap();
    assert_eq!(by("ptb-small").published.test_ppl, Some(114.5));
    assert_eq!(by("ptb-medium").published.test_ppl, Some(82.7));
    assert_eq!(by("wt2-medium").published.test_ppl, Some(86.68));
    assert_eq!(by("awd-ptb").published.test_ppl, Some(57.3));
    assert_eq!(by("awd-wt2").published.test_ppl, Some(65.8));
    assert_eq!(by("char-rnn").published.test_ppl, None);
    assert_eq!(by("wt2-small").published.test_ppl, None);

    // wt2-medium: tied 2x650, dropout 0.5, pytorch/examples' SGD 20 / clip 0.25.
    let m = TrainSettings::preset("wt2-medium").unwrap();
    assert!(m.model.tie_weights);
    assert_eq!(
        (
            m.model.num_layers,
            m.model.hidden_size,
            m.model.embedding_size
        ),
        (2, 650, 650)
    );
    assert_eq!(m.model.dropout, 0.5);
    assert_eq!((m.optim.optimizer, m.optim.lr), (OptimizerKind::Sgd, 20.0));
    assert_eq!(m.optim.clip, Some(0.25));

    // Zaremba et al.: SGD lr 1 and clip 5 on the loss summed over the unrolled steps.
    for (name, bptt, hidden, epochs) in [("ptb-small", 20, 200, 13), ("ptb-medium", 35, 650, 39)] {
        let s = TrainSettings::preset(name).unwrap();
        assert_eq!(s.data.bptt, bptt, "{name}");
        assert_eq!(s.data.batch_size, 20, "{name}");
        assert_eq!(s.model.hidden_size, hidden, "{name}");
        assert_eq!(s.train.epochs, epochs, "{name}");
        assert_eq!(s.optim.optimizer, OptimizerKind::Sgd, "{name}");
        assert!((s.optim.lr - bptt as f64).abs() < 1e-9, "{name}");
        assert!(
            (s.optim.clip.unwrap() * bptt as f64 - 5.0).abs() < 1e-4,
            "{name}"
        );
    }
}

#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let env = Env::new();
    let text = corpus(2000, 1);
    env.write_manifest(json!([fake_tiny_shakespeare(text.as_bytes())]));
    env.mirror_file("tinyshakespeare/input.txt", text.as_bytes());
    let o = env.xtask_train("char-rnn", "run", &["--dry-run", "--epochs", "3"]);
    assert_ok(&o);
    let out = stdout(&o);
    for want in [
        "recipe    char-rnn",
        "dataset   tiny-shakespeare",
        "fetched from mirror",
        "input.txt cut in order 0.9/0.05/0.05",
        "preset    char-rnn",
        "lstm 2x128",
        "rmsprop lr 0.002",
        "training  3 epochs (whole epochs), batch 50, bptt 50",
        "regularise none",
        "summary.json",
        "no published figure",
        "dry run",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        !env.path("run").exists(),
        "a dry run created the run folder"
    );
    assert!(
        !env.path("data/tiny-shakespeare/input.txt").exists(),
        "a dry run fetched the dataset"
    );

    let o = env.xtask_train("ptb-medium", "run", &["--dry-run"]);
    // No ptb in this manifest: a clear error, not a plan.
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("ptb"));
}

#[test]
fn unknown_recipe_and_bad_settings_fail_with_one_line() {
    let env = Env::new();
    env.write_manifest(json!([]));
    let o = env.xtask_train("nope", "run", &["--dry-run"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown recipe 'nope'") && err.contains("ptb-medium"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "ptb-small", "--dry-run", "--set", "optim.lrr=1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("lrr"));
}

/// tang-poetry through the real manifest and the shared mirror (`../shared/datasets`), on a
/// tiny budget: the fortune file becomes one poem per line, and a poem is printed.
#[test]
fn tang_poetry_recipe_through_the_shared_mirror_prints_a_poem() {
    let shared = xtask::project_root().join("../shared/datasets");
    if !shared.join("fortunes-zh/tang300").is_file() {
        let why = format!("{}/fortunes-zh/tang300 not found", shared.display());
        assert!(
            std::env::var_os("CI").is_none(),
            "tang_poetry_recipe_through_the_shared_mirror_prints_a_poem: {why} (CI is set, so it must be there)"
        );
        eprintln!("SKIPPED tang_poetry_recipe_through_the_shared_mirror_prints_a_poem: {why}");
        return;
    }
    let env = Env::new();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "tang-poetry", "--quiet", "--mirror"])
        .arg(&shared)
        .arg("--data-dir")
        .arg(env.path("data"))
        .arg("--out")
        .arg(env.path("run"))
        .args([
            "--epochs",
            "1",
            "--max-batches",
            "2",
            "--set",
            "model.hidden_size=32",
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    assert_ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("tang-poetry: test ppl "), "{out}");
    assert_eq!(lines[1], "sample (a poem):", "{out}");
    assert!(
        lines[2..]
            .iter()
            .any(|l| l.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))),
        "{out}"
    );
    let poems = fs::read_to_string(env.path("data/fortunes-zh-tang300/tang300.lines.txt")).unwrap();
    assert_eq!(poems.lines().count(), 313, "one line per poem");
    assert!(!poems.contains('\x1b') && !poems.contains("作者"));
    let s = read_summary(&env.path("run"));
    assert_eq!(s["settings"]["data"]["clean"], "escapes,nfkc,whitespace");
    assert!(s["sample"].as_str().is_some_and(|t| !t.is_empty()), "{s}");
}

/// The whole path on a tiny character-level stand-in: mirror -> data folder -> training ->
/// test evaluation -> summary.json and the result line.
#[test]
fn char_recipe_end_to_end_through_a_mirror_folder() {
    let env = Env::new();
    let text = corpus(40_000, 2);
    env.write_manifest(json!([fake_tiny_shakespeare(text.as_bytes())]));
    env.mirror_file("tinyshakespeare/input.txt", text.as_bytes());
    let small = [
        "--epochs",
        "1",
        "--max-batches",
        "3",
        "--set",
        "model.hidden_size=32",
        "--set",
        "model.embedding_size=32",
        "--threads",
        "1",
    ];
    let o = env.xtask_train("char-rnn", "run", &small);
    assert_ok(&o);

    // The dataset went through the download path into the data folder.
    assert_eq!(
        fs::read(env.path("data/tiny-shakespeare/input.txt")).unwrap(),
        text.as_bytes()
    );

    let line = stdout(&o);
    let lines: Vec<&str> = line.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {line}");
    let line = lines[0];
    assert!(line.starts_with("char-rnn: test ppl "), "{line}");
    assert!(line.contains("bits/char"), "{line}");
    assert!(line.contains("(no published figure)"), "{line}");
    assert!(line.contains("after 1 epoch in "), "{line}");

    let run = env.path("run");
    assert!(run.join("model.bpk").is_file());
    let s = read_summary(&run);
    assert_eq!(s["recipe"], "char-rnn");
    assert_eq!(s["dataset"], "tiny-shakespeare");
    assert_eq!(s["preset"], "char-rnn");
    assert_eq!(s["backend"], "flex");
    assert_eq!(s["epochs_planned"], 1);
    assert_eq!(s["epochs_run"], 1);
    assert_eq!(s["max_batches"], 3);
    assert_eq!(s["line"], line);
    // 3 batches of 50 sequences x 50 steps.
    assert_eq!(s["train_tokens"], 3 * 50 * 50);
    assert!(num(&s, "tokens_per_s") > 0.0);
    assert!(num(&s, "wall_s") >= num(&s, "train_loop_s"));
    assert!(num(&s, "train_loop_s") >= num(&s, "train_batches_s"));
    assert_eq!(s["settings"]["model"]["hidden_size"], 32);
    assert_eq!(s["settings"]["data"]["split"], json!([0.9, 0.05, 0.05]));

    let test = &s["test"];
    let nats = num(test, "loss_nats");
    // A few batches on a 12-word vocabulary: well below a uniform guess over the characters,
    // but not below zero.
    assert!(nats > 0.0 && nats < (30f64).ln(), "{test}");
    assert!((num(test, "ppl") - nats.exp()).abs() < 1e-6 * nats.exp());
    assert!((num(test, "bits_per_char") - nats / std::f64::consts::LN_2).abs() < 1e-9);
    assert!(num(test, "tokens") > 0.0);
    assert!(num(&s["best_valid"], "loss_nats") > 0.0);
    assert!(s["published"]["test_ppl"].is_null());
    assert_eq!(s["published"]["source"], "no published figure");

    // The run folder is not overwritten.
    let again = env.xtask_train("char-rnn", "run", &small);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds a run"), "{err}");
    assert!(err.contains("cargo xtask train char-rnn --resume"), "{err}");

    // --resume continues it (here one more epoch) and writes the summary again.
    let mut more = small.to_vec();
    more[1] = "2";
    more.push("--resume");
    let o = env.xtask_train("char-rnn", "run", &more);
    assert_ok(&o);
    assert!(stdout(&o).contains("after 2 epochs in "), "{}", stdout(&o));
    let s = read_summary(&run);
    assert_eq!(s["epochs_run"], 2);
    assert_eq!(s["epochs_planned"], 2);

    // --resume needs a run to continue.
    let none = env.xtask_train("char-rnn", "empty", &more);
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains("holds no run to continue"), "{err}");
}

/// A mirror holding a small PTB-shaped corpus (train, valid and test files) and a manifest
/// that names it.
fn ptb_env() -> Env {
    let env = Env::new();
    let (train, valid, test) = (corpus(30_000, 3), corpus(4_000, 4), corpus(4_000, 5));
    let files: [(&str, &[u8]); 3] = [
        ("train.txt", train.as_bytes()),
        ("valid.txt", valid.as_bytes()),
        ("test.txt", test.as_bytes()),
    ];
    env.write_manifest(json!([fake_ptb(&files)]));
    for (f, d) in files {
        env.mirror_file(&format!("ptb/{f}"), d);
    }
    env
}

/// A word-level recipe whose dataset has one file per split, fetched from `<mirror>/ptb/`.
#[test]
fn word_recipe_with_split_files_reports_the_published_figure() {
    let env = ptb_env();
    let o = env.xtask_train(
        "ptb-small",
        "run",
        &[
            "--epochs",
            "1",
            "--max-batches",
            "2",
            "--set",
            "model.hidden_size=16",
            "--set",
            "model.embedding_size=16",
            "--threads",
            "1",
        ],
    );
    assert_ok(&o);
    let line = stdout(&o);
    assert!(
        line.starts_with("ptb-small: test ppl ")
            && line.contains("(published 114.5, Zaremba et al. 2014) after 1 epoch in "),
        "{line}"
    );
    assert!(!line.contains("bits/char"), "{line}");
    let s = read_summary(&env.path("run"));
    assert_eq!(s["dataset"], "ptb");
    assert_eq!(s["published"]["test_ppl"], 114.5);
    assert_eq!(s["train_tokens"], 2 * 20 * 20);
    assert!(s["settings"]["data"]["split"].is_null());
    assert!(s["test"].get("bits_per_char").is_none());
    // 12 words plus <unk> and <eos>: the test perplexity cannot beat 1 nor be far above the
    // vocabulary size.
    let ppl = num(&s["test"], "ppl");
    assert!(ppl > 1.0 && ppl < 30.0, "{ppl}");
}

/// `--json`: the run's events as JSON lines, then a summary line holding summary.json's fields.
#[test]
fn json_flag_prints_events_then_the_summary() {
    let env = ptb_env();
    let o = env.xtask_train(
        "ptb-small",
        "run",
        &[
            "--epochs",
            "1",
            "--max-batches",
            "2",
            "--set",
            "model.hidden_size=16",
            "--set",
            "model.embedding_size=16",
            "--threads",
            "1",
            "--json",
        ],
    );
    assert_ok(&o);
    let events: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"train"), "{kinds:?}");
    assert!(
        kinds.contains(&"epoch") && kinds.contains(&"test"),
        "{kinds:?}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["version"], 1);
    assert_eq!(summary["recipe"], "ptb-small");
    assert_eq!(summary["test"], read_summary(&env.path("run"))["test"]);
}
