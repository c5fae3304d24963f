//! End-to-end tests of `lstm-lm ngram train|export` and of `eval`, `score`, `generate` and
//! `eval --mix` on n-gram run folders, through the real binary.
use std::path::Path;

use lstm_lm_ngram::ArpaModel;

#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, assert_one_line_error, lstm_lm, stderr, stdout};

fn ok(args: &[&str], dir: &Path) -> String {
    let o = lstm_lm(args, dir);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    a.is_finite() && b.is_finite() && (a - b).abs() <= tol * b.abs().max(1.0)
}

fn ngram_run(dir: &Path, order: &str) {
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let out = ok(
        &[
            "ngram",
            "train",
            "--data",
            "corpus.txt",
            "--order",
            order,
            "--out",
            "kn",
        ],
        dir,
    );
    assert!(
        out.contains("-gram Kneser-Ney model of 40 tokens (5 lines"),
        "{out}"
    );
    assert!(dir.join("kn/ngram.bin").is_file() && dir.join("kn/tokenizer.json").is_file());
}

#[test]
fn ngram_run_evaluates_scores_generates_and_exports_arpa() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ngram_run(dir, "3");

    let eval = ok(&["eval", "--model", "kn", "--data", "corpus.txt"], dir);
    assert!(
        eval.starts_with("loss ") && eval.contains("perplexity"),
        "{eval}"
    );
    let e = &json_lines(&ok(
        &["eval", "--model", "kn", "--data", "corpus.txt", "--json"],
        dir,
    ))[0];
    // 35 words and 5 line ends: the tokens of the word stream an LSTM run reads.
    assert_eq!(e["tokens"], 40);
    let ppl = e["ppl"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 30.0, "{ppl}");

    let line = "the keeper climbed the rocks";
    let text = ok(&["score", "--model", "kn", line], dir);
    assert!(
        text.contains("total log-probability") && text.contains("<eos>"),
        "{text}"
    );
    let s = &json_lines(&ok(&["score", "--model", "kn", line, "--json"], dir))[0];
    assert_eq!(s["tokens"].as_array().unwrap().len(), 6);

    // The exported ARPA file, read by the standard backoff rule, gives the same sentence
    // probability as `score`.
    let written = ok(
        &[
            "ngram", "export", "--model", "kn", "--format", "arpa", "--out", "kn.arpa",
        ],
        dir,
    );
    assert!(written.contains("ARPA, order 3"), "{written}");
    let arpa = std::fs::read_to_string(dir.join("kn.arpa")).unwrap();
    assert!(arpa.starts_with("\\data\\\nngram 1="), "{}", &arpa[..40]);
    let parsed = ArpaModel::parse(&arpa).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let theirs: f64 = parsed.sentence_log10(&words).iter().sum();
    let ours = s["total_logprob"].as_f64().unwrap() / std::f64::consts::LN_10;
    assert!(close(ours, theirs, 1e-6), "{ours} vs {theirs}");

    let a = ok(
        &[
            "generate",
            "--model",
            "kn",
            "--prompt",
            "the keeper",
            "--max-tokens",
            "12",
            "--seed",
            "3",
        ],
        dir,
    );
    assert!(
        a.starts_with("the keeper ") && a.len() > "the keeper ".len(),
        "{a:?}"
    );
    let b = ok(
        &[
            "generate",
            "--model",
            "kn",
            "--prompt",
            "the keeper",
            "--max-tokens",
            "12",
            "--seed",
            "3",
        ],
        dir,
    );
    assert_eq!(a, b, "the same seed gives the same text");
    let greedy = ok(
        &[
            "generate",
            "--model",
            "kn",
            "--prompt",
            "ships",
            "--max-tokens",
            "5",
            "--greedy",
        ],
        dir,
    );
    assert!(greedy.starts_with("ships passed the rocks"), "{greedy:?}");
}

/// A small word-level stream LSTM and a trigram on the same corpus, mixed: λ = 0 is the LSTM's
/// own evaluation, λ = 1 the n-gram's figure on the same tokens, and a mixture is never worse
/// than the weighted mean of the two losses.
#[test]
fn mix_interpolates_between_the_lstm_and_the_ngram() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ngram_run(dir, "3");
    ok(
        &[
            "train",
            "--preset",
            "wt2-small",
            "--data",
            "corpus.txt",
            "--valid",
            "corpus.txt",
            "--out",
            "lstm",
            "--epochs",
            "1",
            "--hidden-size",
            "16",
            "--embedding-size",
            "16",
            "--layers",
            "1",
            "--batch-size",
            "2",
            "--bptt",
            "5",
            "--lr",
            "1",
            "--quiet",
            "--sample-tokens",
            "0",
        ],
        dir,
    );
    let lstm = &json_lines(&ok(
        &["eval", "--model", "lstm", "--data", "corpus.txt", "--json"],
        dir,
    ))[0];
    let mixed = json_lines(&ok(
        &[
            "eval",
            "--model",
            "lstm",
            "--data",
            "corpus.txt",
            "--mix",
            "kn:0,1,0.5",
            "--json",
        ],
        dir,
    ));
    assert_eq!(mixed.len(), 3);
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    assert_eq!(mixed[0]["tokens"], lstm["tokens"]);
    assert!(
        close(f(&mixed[0], "ppl"), f(lstm, "ppl"), 1e-4),
        "{mixed:?} {lstm}"
    );
    assert!(close(f(&mixed[0], "lstm_ppl"), f(lstm, "ppl"), 1e-4));
    assert!(close(f(&mixed[1], "ppl"), f(&mixed[1], "ngram_ppl"), 1e-12));
    let mean = 0.5 * (f(&mixed[2], "lstm_loss") + f(&mixed[2], "ngram_loss"));
    assert!(f(&mixed[2], "loss") <= mean + 1e-9, "{mixed:?}");
    let text = ok(
        &[
            "eval",
            "--model",
            "lstm",
            "--data",
            "corpus.txt",
            "--mix",
            "kn:0.25",
        ],
        dir,
    );
    assert!(text.starts_with("mix λ=0.25  loss "), "{text}");

    // A tokenizer that is not the LSTM's is refused.
    std::fs::write(dir.join("other.txt"), "a b c\nc b a\n").unwrap();
    ok(
        &[
            "ngram",
            "train",
            "--data",
            "other.txt",
            "--order",
            "2",
            "--out",
            "other",
        ],
        dir,
    );
    let o = lstm_lm(
        &[
            "eval",
            "--model",
            "lstm",
            "--data",
            "corpus.txt",
            "--mix",
            "other:0.5",
        ],
        dir,
    );
    assert_one_line_error(&o, &["--mix needs both runs to share one tokenizer"]);
    let o = lstm_lm(
        &[
            "eval",
            "--model",
            "lstm",
            "--data",
            "corpus.txt",
            "--mix",
            "lstm:0.5",
        ],
        dir,
    );
    assert_one_line_error(&o, &["is not an n-gram run folder"]);
    let o = lstm_lm(
        &[
            "eval",
            "--model",
            "lstm",
            "--data",
            "corpus.txt",
            "--mix",
            "kn:1.5",
        ],
        dir,
    );
    assert_one_line_error(&o, &["--mix weight \"1.5\""]);
}

#[test]
fn bad_ngram_input_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    std::fs::write(dir.join("empty.txt"), "\n\n").unwrap();
    let train = |order: &str, data: &str| {
        lstm_lm(
            &[
                "ngram", "train", "--data", data, "--order", order, "--out", "kn",
            ],
            dir,
        )
    };
    assert_one_line_error(&train("0", "corpus.txt"), &["--order 0", "from 1 to 10"]);
    assert_one_line_error(&train("11", "corpus.txt"), &["--order 11", "from 1 to 10"]);
    assert_one_line_error(&train("3", "empty.txt"), &["no tokens"]);
    assert_one_line_error(&train("3", "missing.txt"), &["missing.txt"]);
    // A tiny corpus is not an error: the orders that lack counts take KenLM's fallback
    // discounts, and say so.
    let o = train("3", "corpus.txt");
    assert!(o.status.success());
    assert!(stderr(&o).contains("fallback discounts"), "{}", stderr(&o));
    std::fs::create_dir(dir.join("lstm")).unwrap();
    std::fs::write(dir.join("lstm/config.json"), "{}").unwrap();
    let o = lstm_lm(
        &["ngram", "train", "--data", "corpus.txt", "--out", "lstm"],
        dir,
    );
    assert_one_line_error(&o, &["\"lstm\" holds an LSTM run", "--out"]);
    assert!(!dir.join("lstm/tokenizer.json").exists());
    std::fs::create_dir(dir.join("plain")).unwrap();
    let o = lstm_lm(
        &[
            "ngram", "export", "--model", "plain", "--format", "arpa", "--out", "x.arpa",
        ],
        dir,
    );
    assert_one_line_error(&o, &["\"plain\" is not an n-gram run folder", "ngram.bin"]);
    // A damaged model file is named.
    std::fs::write(
        dir.join("kn/ngram.bin"),
        b"{\"format\":\"lstm-lm-ngram-model\"\n",
    )
    .unwrap();
    let o = lstm_lm(&["eval", "--model", "kn", "--data", "corpus.txt"], dir);
    assert_one_line_error(&o, &["ngram.bin", "not a usable n-gram model"]);
    // The char tokenizer's space cannot be an ARPA word.
    ok(
        &[
            "ngram",
            "train",
            "--data",
            "corpus.txt",
            "--tokenizer",
            "char",
            "--order",
            "3",
            "--out",
            "chars",
        ],
        dir,
    );
    let o = lstm_lm(
        &[
            "ngram", "export", "--model", "chars", "--format", "arpa", "--out", "c.arpa",
        ],
        dir,
    );
    assert_one_line_error(&o, &["ARPA", "whitespace"]);
    let eval = ok(&["eval", "--model", "chars", "--data", "corpus.txt"], dir);
    assert!(eval.contains("perplexity"), "{eval}");
}

/// `info` and `runs` know n-gram folders, and `train` does not overwrite one.
#[test]
fn info_runs_and_train_know_ngram_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ngram_run(dir, "3");
    let info = ok(&["info", "--model", "kn"], dir);
    assert!(info.contains("Kneser-Ney n-gram, order 3"), "{info}");
    assert!(
        info.contains("1-grams ") && info.contains("3-grams "),
        "{info}"
    );
    let json = &json_lines(&ok(&["info", "--model", "kn", "--json"], dir))[0];
    assert_eq!(json["kind"], "ngram");
    assert_eq!(json["order"], 3);
    assert_eq!(json["ngram_counts"].as_array().unwrap().len(), 3);
    assert!(json["ngram_counts"][0].as_u64().unwrap() > 0);
    let o = lstm_lm(&["info", "--model", "kn", "--print-config"], dir);
    assert_one_line_error(&o, &["\"kn\" is an n-gram run", "no training settings"]);

    let runs = ok(&["runs", "."], dir);
    let row = runs
        .lines()
        .find(|l| l.starts_with("kn "))
        .unwrap_or_else(|| panic!("{runs}"));
    assert!(row.contains("n-gram") && row.contains(" ngram "), "{row}");
    let listed = json_lines(&ok(&["runs", ".", "--json"], dir));
    assert!(listed.iter().any(|r| r["status"] == "ngram"), "{listed:?}");

    let before = std::fs::read(dir.join("kn/tokenizer.json")).unwrap();
    let o = lstm_lm(
        &[
            "train",
            "--data",
            "corpus.txt",
            "--out",
            "kn",
            "--epochs",
            "1",
        ],
        dir,
    );
    assert_one_line_error(&o, &["\"kn\" holds an n-gram run", "--out"]);
    assert_eq!(
        std::fs::read(dir.join("kn/tokenizer.json")).unwrap(),
        before
    );
    assert!(!dir.join("kn/config.json").exists() && !dir.join("kn/.lock").exists());
}

/// `ngram export --out -` and a long `generate` end quietly when their reader goes away.
#[test]
fn ngram_commands_end_quietly_when_the_reader_goes_away() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ngram_run(dir, "3");
    let commands: [&[&str]; 2] = [
        &[
            "ngram", "export", "--model", "kn", "--format", "arpa", "--out", "-",
        ],
        &[
            "generate",
            "--model",
            "kn",
            "--prompt",
            "the",
            "--max-tokens",
            "100000000",
        ],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The pipe's read end is closed here.
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
    }
}
