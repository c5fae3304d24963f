//! Integration tests of `lstm-lm tokenize`, `encode` and `decode`: each test runs the real
//! binary in a fresh temporary folder.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// A temporary folder to run `lstm-lm` in.
struct Dir {
    dir: TempDir,
}

/// What a run of the binary gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Dir {
    fn new() -> Self {
        Self {
            dir: TempDir::new().expect("cannot create a temporary folder"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.path(name), contents).expect("cannot write a test file");
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("cannot read a test file")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lstm-lm"));
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start lstm-lm");
        let mut input = child.stdin.take().expect("no stdin");
        input
            .write_all(stdin.as_bytes())
            .expect("cannot write stdin");
        drop(input);
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("lstm-lm did not finish");
        Run {
            code: status.code(),
            stdout: String::from_utf8(stdout).expect("stdout is not UTF-8"),
            stderr: String::from_utf8(stderr).expect("stderr is not UTF-8"),
        }
    }

    /// Runs a command that must succeed and returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "{args:?} failed: {}", run.stderr);
        assert_eq!(run.stderr, "", "{args:?} wrote to stderr");
        run.stdout
    }

    /// Runs a command that must fail with one `error:` line containing each of `needles`.
    fn fails(&self, args: &[&str], needles: &[&str]) -> String {
        let run = self.run(args);
        check_error(&run, needles);
        run.stderr
    }

    fn tokenize(&self, kind: &str, input: &str, out: &str) {
        self.ok(&["tokenize", "--kind", kind, "--input", input, "--out", out]);
    }
}

fn check_error(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{:?}", run.stderr);
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "not one line: {:?}",
        run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} not in {:?}",
            run.stderr
        );
    }
}

const CORPUS: &str = "The cat sat on the mat.\nThe dog sat too!\n\nA cat, a dog.\n";

#[test]
fn tokenize_keras_word_prints_a_summary() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    let out = d.ok(&[
        "tokenize",
        "--kind",
        "keras-word",
        "--input",
        "corpus.txt",
        "--out",
        "tok.json",
    ]);
    // the=1 cat=2 sat=3 dog=4 a=5 on=6 mat=7 too=8 (ties in order of first appearance).
    assert_eq!(
        out,
        "saved keras-word tokenizer to \"tok.json\"\n\
         vocabulary size: 9 (id 0 is padding)\n\
         input: 1 file, 4 lines, 14 tokens\n\
         most frequent tokens:\n\
         \x20     id       count  token\n\
         \x20      1           3  \"the\"\n\
         \x20      2           2  \"cat\"\n\
         \x20      3           2  \"sat\"\n\
         \x20      4           2  \"dog\"\n\
         \x20      5           2  \"a\"\n\
         \x20      6           1  \"on\"\n\
         \x20      7           1  \"mat\"\n\
         \x20      8           1  \"too\"\n"
    );
    let json: serde_json::Value = serde_json::from_str(&d.read("tok.json")).unwrap();
    assert_eq!(json["model"]["lstm_lm"]["kind"], "keras-word");
    assert_eq!(json["model"]["vocab"]["the"], 1);
}

#[test]
fn tokenize_word_counts_lines_and_files() {
    let d = Dir::new();
    d.write("a.txt", "x y\nx\n");
    d.write("b.txt", "y z");
    let out = d.ok(&[
        "tokenize", "--kind", "word", "--input", "a.txt", "b.txt", "--out", "tok.json",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "saved word tokenizer to \"tok.json\"");
    // x y <eos> z <unk>
    assert_eq!(lines[1], "vocabulary size: 5");
    assert_eq!(lines[2], "input: 2 files, 3 lines, 8 tokens");
    assert_eq!(lines[5], "       2           3  \"<eos>\"");
}

#[test]
fn encode_and_decode_round_trip_every_kind() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    for kind in ["word", "char", "bpe"] {
        let tok = format!("{kind}.json");
        let mut args = vec![
            "tokenize",
            "--kind",
            kind,
            "--input",
            "corpus.txt",
            "--out",
            &tok,
        ];
        if kind == "bpe" {
            args.extend(["--vocab-size", "270"]);
        }
        d.ok(&args);
        let ids = d.ok(&["encode", "--tokenizer", &tok, "corpus.txt"]);
        assert_eq!(ids.lines().count(), 4, "{kind}");
        d.write("ids.txt", &ids);
        let text = d.ok(&["decode", "--tokenizer", &tok, "ids.txt"]);
        assert_eq!(text, CORPUS, "{kind}");
    }
}

#[test]
fn encode_prints_ids_per_line() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("keras-word", "corpus.txt", "tok.json");
    d.write("in.txt", "the CAT, a bird\n\nmat\n");
    assert_eq!(
        d.ok(&["encode", "--tokenizer", "tok.json", "in.txt"]),
        "1 2 5\n\n7\n"
    );
    assert_eq!(
        d.ok(&["encode", "--tokenizer", "tok.json", "--json", "in.txt"]),
        "[1,2,5]\n[]\n[7]\n"
    );
    d.write("ids.txt", "1 2 5\n[7, 0, 1]\n");
    assert_eq!(
        d.ok(&["decode", "--tokenizer", "tok.json", "ids.txt"]),
        "the cat a\nmat the\n"
    );
}

#[test]
fn encode_and_decode_read_standard_input() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("word", "corpus.txt", "tok.json");
    let run = d.run_with_stdin(
        &["encode", "--tokenizer", "tok.json", "-"],
        "The cat\nzebra",
    );
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), "0 1 6\n13 6\n"));
    let run = d.run_with_stdin(&["decode", "--tokenizer", "tok.json"], "0 1 6\n13 6\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "The cat\n<unk>\n")
    );
}

#[test]
fn tokenize_rejects_flags_of_other_kinds() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    let base = ["tokenize", "--input", "corpus.txt", "--out", "tok.json"];
    let with =
        |extra: &[&'static str]| -> Vec<&str> { base.iter().chain(extra).copied().collect() };
    d.fails(
        &with(&["--kind", "keras-word", "--vocab-size", "300"]),
        &["--vocab-size applies only to --kind bpe; leave it out for --kind keras-word"],
    );
    d.fails(
        &with(&["--kind", "char", "--num-words", "10"]),
        &["--num-words applies only to --kind keras-word"],
    );
    d.fails(
        &with(&["--kind", "word", "--oov", "<OOV>"]),
        &["--oov applies only to --kind keras-word"],
    );
    d.fails(
        &with(&["--kind", "bpe", "--vocab-size", "100"]),
        &["--vocab-size 100 is too small"],
    );
    assert!(!d.path("tok.json").exists());
}

#[test]
fn tokenize_names_a_missing_input() {
    let d = Dir::new();
    d.fails(
        &[
            "tokenize", "--kind", "word", "--input", "nope.txt", "--out", "tok.json",
        ],
        &["cannot read \"nope.txt\"", "No such file"],
    );
}

#[test]
fn tokenize_names_a_file_that_is_not_utf8() {
    let d = Dir::new();
    d.write("latin1.txt", b"ok\ncaf\xe9\n");
    d.fails(
        &[
            "tokenize",
            "--kind",
            "char",
            "--input",
            "latin1.txt",
            "--out",
            "tok.json",
        ],
        &["\"latin1.txt\" is not valid UTF-8 at byte 6"],
    );
}

#[test]
fn tokenize_names_an_unwritable_output() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.fails(
        &[
            "tokenize",
            "--kind",
            "word",
            "--input",
            "corpus.txt",
            "--out",
            "no/such/dir/tok.json",
        ],
        &["--out \"no/such/dir/tok.json\"", "cannot write"],
    );
}

#[test]
fn encode_names_a_missing_tokenizer() {
    let d = Dir::new();
    d.write("in.txt", "x\n");
    d.fails(
        &["encode", "--tokenizer", "missing.json", "in.txt"],
        &[
            "cannot use --tokenizer \"missing.json\"",
            "cannot read \"missing.json\"",
        ],
    );
}

#[test]
fn encode_names_a_corrupt_tokenizer() {
    let d = Dir::new();
    d.write("in.txt", "x\n");
    d.write("bad.json", "{\"version\": \"1.0\", \"model\": ");
    d.fails(
        &["encode", "--tokenizer", "bad.json", "in.txt"],
        &[
            "\"bad.json\" is not a usable tokenizer file",
            "re-create it with `lstm-lm tokenize`",
        ],
    );
    d.write("empty.json", "");
    d.fails(
        &["decode", "--tokenizer", "empty.json", "in.txt"],
        &["\"empty.json\""],
    );
}

#[test]
fn encode_names_a_missing_input() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("word", "corpus.txt", "tok.json");
    d.fails(
        &["encode", "--tokenizer", "tok.json", "gone.txt"],
        &["cannot read \"gone.txt\""],
    );
}

#[test]
fn encode_names_input_that_is_not_utf8() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("word", "corpus.txt", "tok.json");
    d.write("in.txt", b"fine\nbad \xff here\n");
    d.fails(
        &["encode", "--tokenizer", "tok.json", "in.txt"],
        &["\"in.txt\" is not valid UTF-8 at byte 9 (line 2)"],
    );
}

#[test]
fn decode_names_a_bad_id() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("word", "corpus.txt", "tok.json");
    d.write("ids.txt", "0 1\n2 x 3\n");
    d.fails(
        &["decode", "--tokenizer", "tok.json", "ids.txt"],
        &["line 2 of \"ids.txt\"", "\"x\" is not a token id"],
    );
    d.write("ids.txt", "[1, -2]\n");
    d.fails(
        &["decode", "--tokenizer", "tok.json", "ids.txt"],
        &["line 1 of \"ids.txt\"", "not a JSON array of token ids"],
    );
}

#[test]
fn decode_names_an_id_out_of_range() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("word", "corpus.txt", "tok.json");
    d.write("ids.txt", "1\n1 99\n");
    let stderr = d.fails(
        &["decode", "--tokenizer", "tok.json", "ids.txt"],
        &["line 2 of \"ids.txt\""],
    );
    assert!(
        stderr.contains(
            "id 99 is out of range for --tokenizer \"tok.json\", whose ids go from 0 to 13"
        ),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let d = Dir::new();
    let run = d.run(&["tokenize", "--input", "x.txt", "--out", "t.json"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--kind"), "{}", run.stderr);
    let run = d.run(&["tokenize", "--kind", "words", "--input", "x", "--out", "t"]);
    assert_eq!(run.code, Some(2));
}

#[test]
fn closed_stdout_is_not_an_error() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("char", "corpus.txt", "tok.json");
    d.write("big.txt", "the cat sat on the mat\n".repeat(50_000));
    let mut child = d
        .command(&["encode", "--tokenizer", "tok.json", "big.txt"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// Runs `args` with its standard output a pipe that is closed before anything is read.
fn reader_gone_at_once(d: &Dir, args: &[&str]) -> Output {
    let mut child = d
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// Every text command ends with status 0 and nothing on stderr when its reader goes away,
/// before it wrote anything or in the middle of a long output.
#[test]
fn every_text_command_ends_quietly_when_its_reader_goes_away() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    d.tokenize("word", "corpus.txt", "tok.json");
    d.write("big.txt", "the cat sat on the mat\n".repeat(50_000));
    d.write("ids.txt", "1 2 3 4 5 6\n".repeat(50_000));
    let commands: [&[&str]; 4] = [
        &[
            "tokenize",
            "--kind",
            "word",
            "--input",
            "corpus.txt",
            "--out",
            "t2.json",
        ],
        &["encode", "--tokenizer", "tok.json", "big.txt"],
        &["encode", "--tokenizer", "tok.json", "--json", "big.txt"],
        &["decode", "--tokenizer", "tok.json", "ids.txt"],
    ];
    for args in commands {
        let output = reader_gone_at_once(&d, args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{args:?}");
    }
    // Decoding a long output, the reader leaving after the first line.
    let mut child = d
        .command(&["decode", "--tokenizer", "tok.json", "ids.txt"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(!line.is_empty());
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// A BPE vocabulary size past what a model can have is refused before any training, naming
/// the flag and the limit.
#[test]
fn tokenize_refuses_a_vocabulary_past_the_limit() {
    let d = Dir::new();
    d.write("corpus.txt", CORPUS);
    let max = usize::MAX.to_string();
    d.fails(
        &[
            "tokenize",
            "--kind",
            "bpe",
            "--vocab-size",
            &max,
            "--input",
            "corpus.txt",
            "--out",
            "t.json",
        ],
        &["--vocab-size 18446744073709551615 is above the limit of 16777216"],
    );
}

fn run_bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm-lm"))
        .args(args)
        .output()
        .expect("the lstm-lm binary runs")
}

/// Every subcommand's `--help` ends with examples, and `completions` names every subcommand.
#[test]
fn help_ends_with_examples_and_completions_know_every_command() {
    let commands = [
        "tokenize",
        "encode",
        "decode",
        "train",
        "generate",
        "eval",
        "score",
        "info",
        "plot",
        "runs",
        "completions",
    ];
    for command in commands {
        let o = run_bin(&[command, "--help"]);
        assert!(o.status.success(), "{command} --help");
        let help = String::from_utf8_lossy(&o.stdout);
        let examples = help
            .find("Examples:")
            .unwrap_or_else(|| panic!("{command} --help has no examples:\n{help}"));
        assert!(
            help[examples..].matches("lstm-lm ").count() >= 2,
            "{command}: fewer than two examples:\n{help}"
        );
    }
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let o = run_bin(&["completions", shell]);
        assert!(o.status.success(), "completions {shell}");
        let script = String::from_utf8_lossy(&o.stdout);
        for command in commands {
            assert!(script.contains(command), "{shell} script lacks {command}");
        }
    }
    let o = run_bin(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// `lstm-lm man --out DIR` (what `cargo xtask man` runs) writes a page per command.
#[test]
fn man_pages_are_written_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let o = run_bin(&["man", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for page in [
        "lstm-lm.1",
        "lstm-lm-train.1",
        "lstm-lm-generate.1",
        "lstm-lm-plot.1",
    ] {
        let text =
            std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is not a man page"
        );
    }
}
