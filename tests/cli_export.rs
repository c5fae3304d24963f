//! End-to-end tests of `lstm-lm neighbors`, `export` and `import` through the real binary:
//! nearest words and analogies, safetensors/word2vec/projector files read back, the export →
//! import round trip scoring the same, and bad input for each command.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, assert_one_line_error, lstm_lm, stderr, stdout};

/// Trains a tiny run into `dir/name` with `extra` flags (about a second).
fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let mut args = vec![
        "train",
        "--data",
        "corpus.txt",
        "--out",
        name,
        "--epochs",
        "2",
        "--quiet",
        "--sample-tokens",
        "0",
    ];
    // Hidden 16 and embedding 8 unless `extra` says otherwise.
    for (flag, value) in [("--hidden-size", "16"), ("--embedding-size", "8")] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    let o = lstm_lm(&args, dir);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    dir.join(name)
}

fn ok(args: &[&str], dir: &Path) -> String {
    let o = lstm_lm(args, dir);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// `(similarity, word)` pairs of `neighbors`' human output, in printed order.
fn listed(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let (sim, word) = l.trim_start().split_once("  ").unwrap();
            (sim.parse().unwrap(), word.to_string())
        })
        .collect()
}

#[test]
fn neighbors_lists_nearest_words_and_analogies_without_the_query_words() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    train(dir, "run", &["--preset", "seed"]);

    let out = ok(&["neighbors", "--model", "run", "keeper", "-k", "4"], dir);
    assert_eq!(out.lines().next(), Some("keeper"), "{out}");
    let found = listed(&out);
    assert_eq!(found.len(), 4, "{out}");
    assert!(
        found.iter().all(|(s, w)| w != "keeper"
            && w != "<pad>"
            && s.is_finite()
            && (-1.0..=1.0).contains(s))
    );
    assert!(found.windows(2).all(|w| w[0].0 >= w[1].0), "{out}");

    // Keras lowercases: a capitalised word finds the same row.
    let capital = ok(&["neighbors", "--model", "run", "Keeper", "-k", "4"], dir);
    assert_eq!(listed(&capital), found);

    // Several words, the output table, JSON: one object per word.
    let out = ok(
        &[
            "neighbors",
            "--model",
            "run",
            "keeper",
            "sea",
            "--table",
            "output",
            "--json",
            "-k",
            "3",
        ],
        dir,
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["query"], "sea");
    assert_eq!(lines[1]["table"], "output");
    let n = lines[1]["neighbors"].as_array().unwrap();
    assert_eq!(n.len(), 3);
    assert!(n.iter().all(|x| x["word"] != "sea" && x["id"].is_u64()));

    // Analogy: the three words are never among the answers.
    let out = ok(
        &[
            "neighbors",
            "--model",
            "run",
            "--analogy",
            "keeper",
            "tower",
            "lamp",
            "-k",
            "20",
        ],
        dir,
    );
    assert!(out.starts_with("keeper : tower :: lamp : ?"), "{out}");
    let found = listed(&out);
    assert!(!found.is_empty());
    assert!(
        found
            .iter()
            .all(|(_, w)| !["keeper", "tower", "lamp"].contains(&w.as_str()))
    );

    // Bad input: one-line errors.
    let o = lstm_lm(&["neighbors", "--model", "run", "zebra"], dir);
    assert_one_line_error(&o, &["\"zebra\"", "not in the vocabulary"]);
    let o = lstm_lm(
        &[
            "neighbors",
            "--model",
            "run",
            "--analogy",
            "keeper",
            "zebra",
            "sea",
        ],
        dir,
    );
    assert_one_line_error(&o, &["\"zebra\"", "not in the vocabulary"]);
    // An unknown word among good ones prints nothing else.
    let o = lstm_lm(&["neighbors", "--model", "run", "keeper", "zebra"], dir);
    assert_one_line_error(&o, &["zebra"]);
    assert!(stdout(&o).is_empty());
    let o = lstm_lm(&["neighbors", "--model", "run", "keeper", "-k", "0"], dir);
    assert_one_line_error(&o, &["-k"]);
    let o = lstm_lm(
        &["neighbors", "--model", "run", "keeper", "--table", "hidden"],
        dir,
    );
    assert_one_line_error(&o, &["--table", "hidden"]);
    let o = lstm_lm(&["neighbors", "--model", "nowhere", "keeper"], dir);
    assert_one_line_error(&o, &["nowhere"]);

    // A reader that goes away (`| head -c 0`) ends the command quietly.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args([
            "neighbors",
            "--model",
            "run",
            "keeper",
            "sea",
            "lamp",
            "-k",
            "50",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_word_the_tokenizer_splits_is_refused_with_its_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    train(dir, "chars", &["--tokenizer", "char", "--bptt", "10"]);
    let out = ok(&["neighbors", "--model", "chars", "k", "-k", "2"], dir);
    assert_eq!(listed(&out).len(), 2, "{out}");
    let o = lstm_lm(&["neighbors", "--model", "chars", "sea"], dir);
    assert_one_line_error(&o, &["\"sea\"", "3 pieces", "\"s\" \"e\" \"a\""]);
}

/// A safetensors file: tensors (name → dtype, shape, bytes) and metadata.
type Tensors = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

/// Reads a safetensors file by its specification (8-byte header length, JSON header, data),
/// independently of the crate that wrote it.
fn read_safetensors(bytes: &[u8]) -> (Tensors, BTreeMap<String, String>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut tensors = Tensors::new();
    let mut metadata = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            for (k, s) in v.as_object().unwrap() {
                metadata.insert(k.clone(), s.as_str().unwrap().to_string());
            }
            continue;
        }
        let shape = v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let [a, b] = [0, 1].map(|i| v["data_offsets"][i].as_u64().unwrap() as usize);
        let dtype = v["dtype"].as_str().unwrap().to_string();
        tensors.insert(name, (dtype, shape, data[a..b].to_vec()));
    }
    (tensors, metadata)
}

/// Writes tensors and metadata as a safetensors file.
fn write_safetensors(tensors: &Tensors, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut data = Vec::new();
    for (name, (dtype, shape, bytes)) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut text = serde_json::to_string(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// Per-token log-probabilities `score --json` prints for `text`.
fn logprobs(run: &str, text: &str, dir: &Path) -> Vec<f64> {
    let out = ok(&["score", "--model", run, "--json", text], dir);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["logprob"].as_f64().unwrap())
        .collect()
}

fn assert_same_scores(a: &str, b: &str, dir: &Path) {
    for text in [
        "the keeper climbed the tower",
        "ships passed the cold sea at dawn",
    ] {
        let (x, y) = (logprobs(a, text, dir), logprobs(b, text, dir));
        assert_eq!(x.len(), y.len());
        assert!(!x.is_empty());
        for (p, q) in x.iter().zip(&y) {
            assert!(
                p.is_finite() && q.is_finite() && (p - q).abs() <= 1e-5,
                "{x:?} vs {y:?}"
            );
        }
    }
}

#[test]
fn safetensors_export_reads_back_and_imports_to_the_same_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A two-layer word-level stream model with untied weights.
    train(
        dir,
        "run",
        &["--layers", "2", "--bptt", "5", "--batch-size", "2"],
    );
    let out = ok(
        &[
            "export",
            "--model",
            "run",
            "--format",
            "safetensors",
            "--out",
            "run.safetensors",
        ],
        dir,
    );
    assert!(out.contains("run.safetensors"), "{out}");
    let (tensors, metadata) =
        read_safetensors(&std::fs::read(dir.join("run.safetensors")).unwrap());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap())
            .unwrap();
    let vocab = config["model"]["vocab_size"].as_u64().unwrap() as usize;
    let expected: Vec<(&str, Vec<usize>)> = vec![
        ("decoder.bias", vec![vocab]),
        ("decoder.weight", vec![vocab, 16]),
        ("encoder.weight", vec![vocab, 8]),
        ("rnn.bias_hh_l0", vec![64]),
        ("rnn.bias_hh_l1", vec![64]),
        ("rnn.bias_ih_l0", vec![64]),
        ("rnn.bias_ih_l1", vec![64]),
        ("rnn.weight_hh_l0", vec![64, 16]),
        ("rnn.weight_hh_l1", vec![64, 16]),
        ("rnn.weight_ih_l0", vec![64, 8]),
        ("rnn.weight_ih_l1", vec![64, 16]),
    ];
    let got: Vec<(&str, Vec<usize>)> = tensors
        .iter()
        .map(|(n, (_, s, _))| (n.as_str(), s.clone()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        tensors
            .values()
            .all(|(d, s, b)| d == "F32" && b.len() == 4 * s.iter().product::<usize>())
    );
    assert_eq!(metadata["format"], "lstm-lm-torch-state-dict");
    assert_eq!(metadata["version"], "1");
    assert_eq!(metadata["cell"], "lstm");
    assert_eq!(metadata["num_layers"], "2");
    assert_eq!(metadata["hidden_size"], "16");
    assert_eq!(metadata["embedding_size"], "8");
    assert_eq!(metadata["vocab_size"], vocab.to_string());
    assert_eq!(metadata["tie_weights"], "false");
    assert_eq!(metadata["tokenizer"], "word");

    let out = ok(
        &[
            "import",
            "--weights",
            "run.safetensors",
            "--tokenizer",
            "run/tokenizer.json",
            "--out",
            "back",
        ],
        dir,
    );
    assert!(out.contains("2 layer(s)") && out.contains("back"), "{out}");
    assert_same_scores("run", "back", dir);
    // The imported run is a run: info, eval and generate work on it.
    let info = ok(&["info", "--model", "back"], dir);
    assert!(info.contains("embedding 8, hidden 16"), "{info}");
    ok(&["eval", "--model", "back", "--data", "corpus.txt"], dir);
    let runs = ok(&["runs", "."], dir);
    let line = runs.lines().find(|l| l.starts_with("back ")).unwrap();
    assert!(line.contains("imported"), "{runs}");
    let text = ok(
        &[
            "generate",
            "--model",
            "back",
            "--prompt",
            "the",
            "--max-tokens",
            "3",
        ],
        dir,
    );
    assert!(text.starts_with("the"), "{text}");

    // A state dict with PyTorch's own tag and no settings (as safetensors.torch writes it)
    // imports by its shapes alone.
    let plain = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(
        dir.join("plain.safetensors"),
        write_safetensors(&tensors, &plain),
    )
    .unwrap();
    ok(
        &[
            "import",
            "--weights",
            "plain.safetensors",
            "--tokenizer",
            "run/tokenizer.json",
            "--out",
            "plain",
            "--cell",
            "lstm",
        ],
        dir,
    );
    assert_same_scores("run", "plain", dir);
}

#[test]
fn gru_rnn_and_tied_models_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (name, extra) in [
        (
            "gru",
            &[
                "--cell",
                "gru",
                "--tie-weights",
                "--hidden-size",
                "8",
                "--embedding-size",
                "8",
            ][..],
        ),
        ("rnn", &["--cell", "rnn", "--preset", "seed"][..]),
    ] {
        train(dir, name, extra);
        let file = format!("{name}.safetensors");
        ok(
            &[
                "export",
                "--model",
                name,
                "--format",
                "safetensors",
                "--out",
                &file,
            ],
            dir,
        );
        let (tensors, metadata) = read_safetensors(&std::fs::read(dir.join(&file)).unwrap());
        assert_eq!(metadata["cell"], name);
        assert_eq!(tensors.contains_key("decoder.weight"), name != "gru");
        let back = format!("{name}-back");
        ok(
            &[
                "import",
                "--weights",
                &file,
                "--tokenizer",
                &format!("{name}/tokenizer.json"),
                "--out",
                &back,
            ],
            dir,
        );
        assert_same_scores(name, &back, dir);
    }
}

#[test]
fn word2vec_and_projector_files_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    train(dir, "run", &["--preset", "seed"]);
    train(dir, "chars", &["--tokenizer", "char", "--bptt", "10"]);

    let out = ok(
        &[
            "export", "--model", "run", "--format", "word2vec", "--out", "run.vec",
        ],
        dir,
    );
    assert!(out.contains("words x 8"), "{out}");
    let text = std::fs::read_to_string(dir.join("run.vec")).unwrap();
    let mut lines = text.lines();
    let header: Vec<usize> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    let (count, dim) = (header[0], header[1]);
    assert_eq!(dim, 8);
    let mut words = HashSet::new();
    for line in lines.clone() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), dim + 1, "{line}");
        assert!(
            fields[1..]
                .iter()
                .all(|v| v.parse::<f32>().unwrap().is_finite())
        );
        assert!(
            words.insert(fields[0].to_string()),
            "duplicate {}",
            fields[0]
        );
    }
    assert_eq!(lines.count(), count);
    assert!(words.contains("keeper") && !words.contains("<pad>"));

    // Characters: the space is escaped so that the line still splits into dim + 1 fields.
    ok(
        &[
            "export",
            "--model",
            "chars",
            "--format",
            "word2vec",
            "--out",
            "chars.vec",
        ],
        dir,
    );
    let text = std::fs::read_to_string(dir.join("chars.vec")).unwrap();
    let dim: usize = text
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.split(' ').count() == dim + 1)
    );
    assert!(
        text.lines().any(|l| l.starts_with("\\s ")),
        "no escaped space"
    );

    for (run, table) in [("run", "input"), ("chars", "output")] {
        let folder = format!("{run}-projector");
        ok(
            &[
                "export",
                "--model",
                run,
                "--format",
                "projector",
                "--table",
                table,
                "--out",
                &folder,
            ],
            dir,
        );
        let vectors = std::fs::read_to_string(dir.join(&folder).join("vectors.tsv")).unwrap();
        let metadata = std::fs::read_to_string(dir.join(&folder).join("metadata.tsv")).unwrap();
        assert_eq!(vectors.lines().count(), metadata.lines().count());
        assert!(vectors.lines().count() > 5);
        let widths: HashSet<usize> = vectors.lines().map(|l| l.split('\t').count()).collect();
        assert_eq!(widths.len(), 1, "rows of different widths");
        assert!(metadata.lines().all(|w| !w.is_empty() && !w.contains('\t')));
    }
}

#[test]
fn bad_export_and_import_input_gives_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    train(dir, "run", &[]);
    let export = |format: &str, out: &str| {
        lstm_lm(
            &["export", "--model", "run", "--format", format, "--out", out],
            dir,
        )
    };
    assert_one_line_error(&export("onnx", "x.onnx"), &["--format", "onnx"]);
    assert_one_line_error(
        &export("safetensors", "no/such/folder/x.safetensors"),
        &["--out", "x.safetensors"],
    );
    assert_one_line_error(
        &export("word2vec", "no/such/folder/x.vec"),
        &["--out", "x.vec"],
    );
    let o = lstm_lm(
        &[
            "export",
            "--model",
            "run",
            "--format",
            "safetensors",
            "--table",
            "output",
            "--out",
            "x",
        ],
        dir,
    );
    assert_one_line_error(&o, &["--table"]);
    ok(
        &[
            "export",
            "--model",
            "run",
            "--format",
            "safetensors",
            "--out",
            "good.safetensors",
        ],
        dir,
    );

    let bytes = std::fs::read(dir.join("good.safetensors")).unwrap();
    let (tensors, metadata) = read_safetensors(&bytes);
    let import = |weights: &str, out: &str| {
        lstm_lm(
            &[
                "import",
                "--weights",
                weights,
                "--tokenizer",
                "run/tokenizer.json",
                "--out",
                out,
            ],
            dir,
        )
    };
    let variant = |name: &str, change: &dyn Fn(&mut Tensors)| {
        let mut t = tensors.clone();
        change(&mut t);
        std::fs::write(dir.join(name), write_safetensors(&t, &metadata)).unwrap();
    };
    // Missing and unexpected names are listed.
    variant("missing.safetensors", &|t| {
        t.remove("decoder.bias");
        t.remove("rnn.bias_hh_l0");
        let extra = t["rnn.weight_ih_l0"].clone();
        t.insert("rnn.weight_ih_l0_reverse".into(), extra);
    });
    assert_one_line_error(
        &import("missing.safetensors", "a"),
        &[
            "missing rnn.bias_hh_l0, decoder.bias",
            "unexpected rnn.weight_ih_l0_reverse",
        ],
    );
    // A tensor of the wrong shape.
    variant("shape.safetensors", &|t| {
        let e = t.get_mut("rnn.bias_ih_l0").unwrap();
        e.1 = vec![e.1[0] / 2, 2];
    });
    assert_one_line_error(
        &import("shape.safetensors", "b"),
        &["rnn.bias_ih_l0 is [32, 2], expected [64]"],
    );
    // No decoder.weight (tied) with embedding 8 != hidden 16.
    variant("untied.safetensors", &|t| {
        t.remove("decoder.weight");
    });
    assert_one_line_error(
        &import("untied.safetensors", "c"),
        &["decoder.weight", "tied"],
    );
    // Half precision.
    variant("half.safetensors", &|t| {
        let e = t.get_mut("decoder.bias").unwrap();
        e.0 = "F16".into();
        e.2.truncate(e.2.len() / 2);
    });
    assert_one_line_error(
        &import("half.safetensors", "d"),
        &["decoder.bias", "F16", "float32"],
    );
    // Not a safetensors file at all; a file that does not exist.
    std::fs::write(dir.join("junk.safetensors"), b"not a tensor file").unwrap();
    assert_one_line_error(
        &import("junk.safetensors", "e"),
        &["junk.safetensors", "not a safetensors file"],
    );
    assert_one_line_error(&import("absent.safetensors", "f"), &["absent.safetensors"]);
    // The wrong cell, an unknown cell, another tokenizer, an occupied --out.
    let o = lstm_lm(
        &[
            "import",
            "--weights",
            "good.safetensors",
            "--tokenizer",
            "run/tokenizer.json",
            "--out",
            "g",
            "--cell",
            "gru",
        ],
        dir,
    );
    assert_one_line_error(&o, &["lstm", "--cell says gru"]);
    let o = lstm_lm(
        &[
            "import",
            "--weights",
            "good.safetensors",
            "--tokenizer",
            "run/tokenizer.json",
            "--out",
            "g",
            "--cell",
            "lstmx",
        ],
        dir,
    );
    assert_one_line_error(&o, &["--cell", "lstmx"]);
    ok(
        &[
            "tokenize",
            "--kind",
            "char",
            "--input",
            "corpus.txt",
            "--out",
            "chars.json",
        ],
        dir,
    );
    let o = lstm_lm(
        &[
            "import",
            "--weights",
            "good.safetensors",
            "--tokenizer",
            "chars.json",
            "--out",
            "h",
        ],
        dir,
    );
    assert_one_line_error(&o, &["encoder.weight", "chars.json", "ids"]);
    assert_one_line_error(
        &import("good.safetensors", "run"),
        &["--out", "not an empty folder"],
    );
    // Nothing was left behind by the refused imports.
    for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        assert!(!dir.join(name).join("config.json").exists(), "{name}");
    }
}

/// The new commands' `--help` ends with examples, as every command's does.
#[test]
fn help_of_neighbors_export_and_import_ends_with_examples() {
    let tmp = tempfile::tempdir().unwrap();
    for command in ["neighbors", "export", "import"] {
        let help = ok(&[command, "--help"], tmp.path());
        let examples = help.find("Examples:").unwrap_or_else(|| panic!("{help}"));
        assert!(help[examples..].matches("lstm-lm ").count() >= 2, "{help}");
    }
}
