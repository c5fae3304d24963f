//! End-to-end tests of `lstm-lm generate`'s controls through the real binary: beam search,
//! repetition rules, stop strings and end of text, token probabilities, many samples, prompts
//! from a file as JSON lines, and the interactive session driven through a pseudo-terminal.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, assert_one_line_error, lstm_lm, stderr, stdout};

/// A word-level stream model that has learned the five-line corpus (it ends lines with
/// `<eos>`), trained once per test.
fn stream_run(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let o = lstm_lm(
        &[
            "train",
            "--data",
            "corpus.txt",
            "--out",
            "run",
            "--recipe",
            "stream",
            "--tokenizer",
            "word",
            "--epochs",
            "60",
            "--hidden-size",
            "32",
            "--embedding-size",
            "16",
            "--batch-size",
            "1",
            "--bptt",
            "8",
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--quiet",
            "--sample-tokens",
            "0",
        ],
        dir,
    );
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    dir.join("run")
}

fn generate(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["generate", "--model", "run"];
    args.extend_from_slice(extra);
    lstm_lm(&args, dir)
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn stop_conditions_beams_and_repetition_rules_shape_the_continuation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    stream_run(dir);
    // The learned line ends with <eos>: --stop-at-eos ends there, the text has no newline.
    let eos = &json_lines(&generate(
        dir,
        &[
            "--prompt",
            "the keeper",
            "--greedy",
            "--max-tokens",
            "40",
            "--stop-at-eos",
            "--json",
        ],
    ))[0];
    assert_eq!(eos["stop_reason"], "eos", "{eos}");
    let text = eos["text"].as_str().unwrap();
    assert!(
        !text.contains('\n') && text.split_whitespace().count() >= 2,
        "{eos}"
    );
    // A stop string: the text ends just before the second word it would have printed.
    let second = text.split_whitespace().nth(1).unwrap();
    let stopped = &json_lines(&generate(
        dir,
        &[
            "--prompt",
            "the keeper",
            "--greedy",
            "--max-tokens",
            "40",
            "--stop",
            second,
            "--json",
        ],
    ))[0];
    assert_eq!(stopped["stop_reason"], "stop", "{stopped}");
    let want = &text[..text.find(second).unwrap()];
    assert_eq!(stopped["text"], want, "{stopped}");
    // Plain output: the prompt then the continuation, and the same for the stop string.
    let plain = stdout(&generate(
        dir,
        &[
            "--prompt",
            "the keeper",
            "--greedy",
            "--max-tokens",
            "40",
            "--stop",
            second,
        ],
    ));
    assert_eq!(plain, format!("the keeper{want}\n"));
    // Beam search is deterministic and never repeats a bigram with --no-repeat-ngram 2.
    let beam_args = [
        "--prompt",
        "the",
        "--beams",
        "4",
        "--no-repeat-ngram",
        "2",
        "--max-tokens",
        "25",
        "--json",
    ];
    let beam = json_lines(&generate(dir, &beam_args));
    assert_eq!(beam, json_lines(&generate(dir, &beam_args)));
    let generated = ids(&beam[0]);
    assert_eq!(generated.len(), 25, "{}", beam[0]);
    let logprobs = beam[0]["logprobs"].as_array().unwrap();
    assert!(
        logprobs.iter().all(|x| x.as_f64().unwrap() <= 0.0),
        "{}",
        beam[0]
    );
    let bigrams: Vec<_> = generated.windows(2).collect();
    let distinct: HashSet<_> = bigrams.iter().collect();
    assert_eq!(
        distinct.len(),
        bigrams.len(),
        "a bigram repeats: {generated:?}"
    );
    // Greedy from "the" loops through the learned lines; a strong repetition penalty makes
    // the same number of tokens more varied.
    let distinct_words = |extra: &[&str]| {
        let mut args = vec![
            "--prompt",
            "the",
            "--greedy",
            "--max-tokens",
            "30",
            "--json",
        ];
        args.extend_from_slice(extra);
        ids(&json_lines(&generate(dir, &args))[0])
            .into_iter()
            .collect::<HashSet<_>>()
            .len()
    };
    let plain_variety = distinct_words(&[]);
    let penalised_variety = distinct_words(&["--repetition-penalty", "50"]);
    assert!(
        penalised_variety > plain_variety,
        "{penalised_variety} vs {plain_variety}"
    );
}

#[test]
fn probabilities_samples_and_prompt_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    stream_run(dir);
    // --show-probs: one line per token, a probability and the token as a JSON string; the
    // learned continuation is likely.
    let o = generate(
        dir,
        &[
            "--prompt",
            "the keeper",
            "--greedy",
            "--max-tokens",
            "4",
            "--show-probs",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines {
        let (p, token) = line.split_once('\t').unwrap();
        let p: f64 = p.parse().unwrap();
        assert!(p > 0.2 && p <= 1.0, "{line}");
        let token: String = serde_json::from_str(token).unwrap();
        assert!(!token.is_empty(), "{line}");
    }
    // Samples: distinct seeds, reproducible one by one.
    let samples = json_lines(&generate(
        dir,
        &[
            "--prompt",
            "the",
            "--max-tokens",
            "12",
            "--num-samples",
            "4",
            "--temperature",
            "2",
            "--json",
        ],
    ));
    let seeds: Vec<u64> = samples
        .iter()
        .map(|s| s["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [0, 1, 2, 3]);
    let texts: HashSet<&str> = samples
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert!(texts.len() >= 2, "{samples:?}");
    let third = &json_lines(&generate(
        dir,
        &[
            "--prompt",
            "the",
            "--max-tokens",
            "12",
            "--seed",
            "2",
            "--temperature",
            "2",
            "--json",
        ],
    ))[0];
    assert_eq!(third["text"], samples[2]["text"]);
    // A prompt file: results in input order, each the same as when generated alone; a prompt
    // of unknown words gets an error of its own and the exit status 1.
    let prompts = [
        "the keeper",
        "ships passed",
        "zzz qqq",
        "the gulls",
        "the lamp",
    ];
    std::fs::write(dir.join("prompts.txt"), prompts.join("\n") + "\n").unwrap();
    let o = generate(
        dir,
        &["--prompts", "prompts.txt", "--max-tokens", "10", "--json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 of 5 prompts failed"),
        "{}",
        stderr(&o)
    );
    let results: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 5);
    for (i, (r, p)) in results.iter().zip(prompts).enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["prompt"], p);
        if i == 2 {
            assert!(r["error"].as_str().unwrap().contains("no token"), "{r}");
            continue;
        }
        let alone = &json_lines(&generate(
            dir,
            &["--prompt", p, "--max-tokens", "10", "--json"],
        ))[0];
        assert_eq!(r["text"], alone["text"], "prompt {p:?}");
    }
}

#[test]
fn bad_generation_flags_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    stream_run(dir);
    for (args, needle) in [
        (vec!["--beams", "0"], "--beams"),
        (vec!["--beams", "2", "--num-samples", "2"], "--num-samples"),
        (vec!["--repetition-penalty", "0"], "--repetition-penalty"),
        (vec!["--repetition-penalty", "-1"], "--repetition-penalty"),
        (vec!["--stop", ""], "--stop"),
        (vec!["--num-samples", "0"], "--num-samples"),
        (vec!["--no-repeat-ngram", "1000"], "--no-repeat-ngram"),
        (vec!["--prompts", "missing.txt"], "missing.txt"),
    ] {
        let mut all = vec!["--prompt", "the"];
        all.retain(|_| !args.contains(&"--prompts"));
        all.extend_from_slice(&args);
        assert_one_line_error(&generate(dir, &all), &[needle]);
    }
}

/// The interactive session on a pseudo-terminal: a prompt is continued, in-line commands
/// answer, Ctrl-C stops an endless continuation without ending the session, and /quit ends it
/// with status 0.
#[cfg(unix)]
#[test]
fn interactive_session_through_a_pseudo_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    stream_run(dir);
    let mut term = pty::Terminal::spawn(
        env!("CARGO_BIN_EXE_lstm-lm"),
        &[
            "generate",
            "--model",
            "run",
            "--interactive",
            "--greedy",
            "--max-tokens",
            "5",
        ],
        dir,
    );
    // Every line is typed only once the prompt is shown: a line typed earlier sits in the
    // terminal's input queue, and a Ctrl-C there drops it instead of stopping a continuation.
    term.expect("> ");
    term.send("the keeper\n");
    term.expect("climbed the tower");
    for (line, reply) in [
        ("/temp 0.5\n", "temperature 0.5"),
        ("/topk 0\n", "top-k off"),
        ("/bogus\n", "unknown command /bogus"),
        ("/tokens 100000000\n", "100000000 tokens"),
        ("/reset\n", "state reset"),
    ] {
        term.expect("> ");
        term.send(line);
        term.expect(reply);
    }
    term.expect("> ");
    term.send("the\n");
    // The terminal echoes the line; then the endless continuation starts (every word comes
    // with its space): once a word is out, stop it.
    term.expect("the\r\n");
    term.expect(" ");
    term.send("\x03");
    term.expect("(stopped)");
    term.expect("> ");
    term.send("/greedy\n");
    term.expect("greedy");
    term.expect("> ");
    term.send("/tokens 3\n");
    term.expect("3 tokens");
    term.expect("> ");
    term.send("/quit\n");
    assert_eq!(term.wait(), Some(0), "{}", term.seen());
    // `--prompt -` on a terminal is the same session; Ctrl-D leaves it.
    let mut term = pty::Terminal::spawn(
        env!("CARGO_BIN_EXE_lstm-lm"),
        &[
            "generate",
            "--model",
            "run",
            "--prompt",
            "-",
            "--greedy",
            "--max-tokens",
            "3",
        ],
        dir,
    );
    term.expect("> ");
    term.send("the gulls\n");
    term.expect("the gulls\r\n ");
    term.expect("\n> ");
    term.send("\x04");
    assert_eq!(term.wait(), Some(0), "{}", term.seen());
}

#[cfg(unix)]
mod pty {
    //! A minimal pseudo-terminal driver: the child gets the terminal as its controlling
    //! terminal (so Ctrl-C reaches it as SIGINT), the test reads what it prints and types.
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{Receiver, channel};
    use std::time::{Duration, Instant};

    pub struct Terminal {
        child: Child,
        writer: std::fs::File,
        output: Receiver<Vec<u8>>,
        seen: String,
        /// How far `expect` has read in `seen`.
        cursor: usize,
    }

    impl Terminal {
        pub fn spawn(program: &str, args: &[&str], dir: &Path) -> Self {
            let (mut master, mut slave) = (0, 0);
            // SAFETY: openpty writes two new descriptors into the two integers.
            let rc = unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            assert_eq!(rc, 0, "openpty failed");
            // SAFETY: both descriptors were just opened and are owned here alone.
            let (master, slave) =
                unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
            let mut cmd = Command::new(program);
            cmd.args(args)
                .current_dir(dir)
                .stdin(Stdio::from(slave.try_clone().unwrap()))
                .stdout(Stdio::from(slave.try_clone().unwrap()))
                .stderr(Stdio::from(slave));
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("the binary starts on the terminal");
            let writer = std::fs::File::from(master.try_clone().unwrap());
            let mut reader = std::fs::File::from(master);
            let (tx, output) = channel();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Ends with EIO when the child has gone and the terminal closes.
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
            Terminal {
                child,
                writer,
                output,
                seen: String::new(),
                cursor: 0,
            }
        }

        pub fn send(&mut self, text: &str) {
            self.writer.write_all(text.as_bytes()).unwrap();
            self.writer.flush().unwrap();
        }

        /// Waits (up to a minute) until `needle` appears after what was expected before.
        pub fn expect(&mut self, needle: &str) {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(at) = self.seen[self.cursor..].find(needle) {
                    self.cursor += at + needle.len();
                    return;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match self.output.recv_timeout(left) {
                    Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                    Err(_) => panic!(
                        "{needle:?} did not appear; the terminal shows:\n{}",
                        self.seen
                    ),
                }
            }
        }

        pub fn seen(&self) -> &str {
            &self.seen
        }

        pub fn wait(&mut self) -> Option<i32> {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status.code();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            None
        }
    }
}
