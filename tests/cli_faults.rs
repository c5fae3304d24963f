//! Fault injection through the real `lstm-lm train` binary: SIGKILL at seeded random moments
//! (inside checkpoint writes too), a full disk during a checkpoint write, two trainers on one
//! run folder, and SIGTERM.
//!
//! The faults come from outside (signals) or from the hooks of the atomic writer
//! (`LSTM_LM_FAULT_*`, documented in `crates/train/src/atomic.rs`). Every run is tiny (a
//! five-line corpus, a 16-unit LSTM), so the whole file takes seconds. The waits below are
//! bounds against a hang, not timing assertions.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use lstm_lm_train::{Checkpoint, RunDir};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "support/cli.rs"]
mod support;
use support::{CORPUS, assert_one_line_error as assert_clean_error, stderr, stdout};

/// How long a wait for a run's files may take before the test gives up (a hang, not speed).
const PATIENCE: Duration = Duration::from_secs(120);

fn command(args: &[&str], dir: &Path, env: &[(&str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lstm-lm"));
    c.args(args).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn lstm_lm(args: &[&str], dir: &Path, env: &[(&str, String)]) -> Output {
    command(args, dir, env)
        .output()
        .expect("the lstm-lm binary runs")
}

/// A started `lstm-lm`, killed when dropped: a failed assertion must not leave a run of
/// 100000 epochs behind.
struct Trainer(Option<Child>);

impl Trainer {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the process is still ours")
    }

    /// Hands the process over (to wait for it); it is no longer killed on drop.
    fn into_child(mut self) -> Child {
        self.0.take().expect("the process is still ours")
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(args: &[&str], dir: &Path, env: &[(&str, String)]) -> Trainer {
    Trainer(Some(
        command(args, dir, env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the lstm-lm binary starts"),
    ))
}

/// A fresh run of the seed preset on the tiny corpus, 8 batches of 4 prefixes per epoch,
/// dropout on (so the per-step random masks are part of what a resume must repeat).
fn fresh_args<'a>(out: &'a str, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--preset",
        "seed",
        "--data",
        "corpus.txt",
        "--out",
        out,
        "--epochs",
        epochs,
        "--batch-size",
        "4",
        "--hidden-size",
        "16",
        "--embedding-size",
        "8",
        "--dropout",
        "0.3",
        "--seed",
        "11",
        "--threads",
        "1",
        "--quiet",
        "--sample-tokens",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

fn resume_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--resume",
        out,
        "--threads",
        "1",
        "--quiet",
        "--sample-tokens",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's id, which is not reaped (and so not reused) before
    // the `wait` that follows.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

fn killed_by(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// The folder `checkpoint.json` names, if there is one.
fn latest_checkpoint(run: &Path) -> Option<PathBuf> {
    let text = std::fs::read(run.join("checkpoint.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    Some(run.join(v["latest"].as_str()?))
}

/// Every file of the newest checkpoint and the pointer to it, by name.
fn checkpoint_files(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = latest_checkpoint(run).expect("the run has a checkpoint");
    let mut files = BTreeMap::new();
    files.insert(
        "checkpoint.json".to_string(),
        std::fs::read(run.join("checkpoint.json")).unwrap(),
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read(entry.path()).unwrap(),
        );
    }
    files
}

fn trainer_step(run: &Path) -> Option<u64> {
    let dir = latest_checkpoint(run)?;
    let text = std::fs::read(dir.join("trainer.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v["global_step"].as_u64()
}

/// Temporary files of the atomic writer (`.NAME.tmp-PID`) anywhere in the run folder.
fn temporaries(run: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![run.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if entry.file_name().to_string_lossy().contains(".tmp-") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_second_trainer_is_refused_while_the_first_runs_and_a_killed_ones_lock_does_not_block() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let run = dir.join("run");
    // Runs until it is killed.
    let mut first = spawn(
        &fresh_args("run", "100000", &["--checkpoint-every", "3"]),
        dir,
        &[],
    );
    wait_for("the first checkpoint", || latest_checkpoint(&run).is_some());
    let holder = format!("process {}", first.child().id());

    let o = lstm_lm(&resume_args("run", &["--epochs", "1"]), dir, &[]);
    assert_clean_error(&o, &["\"run\"", "in use", &holder]);
    let o = lstm_lm(&fresh_args("run", "1", &[]), dir, &[]);
    assert_clean_error(&o, &["\"run\"", "in use", &holder]);
    assert!(
        first.child().try_wait().unwrap().is_none(),
        "the refused trainers stopped the first one"
    );

    let mut first = first.into_child();
    first.kill().unwrap();
    assert_eq!(killed_by(first.wait().unwrap()), Some(libc::SIGKILL));
    // The killed process's lock file is still there; its lock died with it.
    assert!(run.join(".lock").exists());
    let o = lstm_lm(&resume_args("run", &["--epochs", "1"]), dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn sigterm_saves_a_checkpoint_exits_143_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let run = dir.join("run");
    let mut child = spawn(
        &fresh_args("run", "100000", &["--checkpoint-every", "off"]),
        dir,
        &[],
    );
    // The end of epoch 1 writes the first checkpoint; stop the run in epoch 2 or later.
    wait_for("the first checkpoint", || trainer_step(&run).is_some());
    let before = trainer_step(&run).unwrap();
    signal(child.child(), libc::SIGTERM);
    let out = child.into_child().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("checkpoint saved"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let saved = trainer_step(&run).unwrap();
    assert!(
        saved >= before,
        "checkpoint went back from {before} to {saved}"
    );
    let trainer: serde_json::Value = serde_json::from_slice(
        &std::fs::read(latest_checkpoint(&run).unwrap().join("trainer.json")).unwrap(),
    )
    .unwrap();
    let epochs = trainer["epochs_done"].as_u64().unwrap() + 1;

    let target = epochs.to_string();
    let o = lstm_lm(&resume_args("run", &["--epochs", &target]), dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("trained {epochs} epochs")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let run = dir.join("run");
    // Two epochs of 8 steps, a checkpoint every 5 steps and at each epoch's end.
    let o = lstm_lm(
        &fresh_args("run", "2", &["--checkpoint-every", "5"]),
        dir,
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let before = checkpoint_files(&run);

    // The disk fills after 100 more bytes of checkpoint files: in the first checkpoint of the
    // resumed run, at step 20 in the middle of epoch 3.
    let full = [
        ("LSTM_LM_FAULT_ENOSPC_AFTER_BYTES", "100".to_string()),
        ("LSTM_LM_FAULT_PATHS", "checkpoints".to_string()),
    ];
    let o = lstm_lm(&resume_args("run", &["--epochs", "3"]), dir, &full);
    assert_clean_error(&o, &["No space left on device", "checkpoints"]);
    assert_eq!(
        checkpoint_files(&run),
        before,
        "the previous checkpoint changed"
    );
    assert_eq!(temporaries(&run), Vec::<PathBuf>::new());

    // Space is back.
    let o = lstm_lm(&resume_args("run", &["--epochs", "3"]), dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained 3 epochs"), "{}", stdout(&o));
    assert_eq!(trainer_step(&run), Some(24));
}

/// How one kill in [`sigkill_at_seeded_moments_then_resume_gives_the_uninterrupted_weights`]
/// chooses its moment.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This many milliseconds after the process starts (start-up, data, first steps).
    AfterMs(u64),
    /// This many microseconds after the n-th new checkpoint of this process appears: in the
    /// next step or in the next checkpoint's write.
    AfterCheckpoint(u64, u64),
    /// While the atomic writer holds its n-th temporary file, before the rename (the writer
    /// pauses there, see `LSTM_LM_FAULT_PAUSE_MS`).
    InsideWrite(usize),
}

/// Counts the checkpoints that appear after a given one.
struct NewCheckpoints {
    last: Option<u64>,
    new: u64,
}

impl NewCheckpoints {
    fn since(step: Option<u64>) -> Self {
        NewCheckpoints { last: step, new: 0 }
    }

    fn count(&mut self, run: &Path) -> u64 {
        let now = trainer_step(run);
        if now.is_some() && now != self.last {
            self.last = now;
            self.new += 1;
        }
        self.new
    }
}

/// The weights of the last checkpoint and of the best model, as bit patterns (a bit-for-bit
/// comparison, NaN included; the burnpack files themselves differ in their random parameter
/// ids), and the checkpoint's `trainer.json` without the training time.
fn final_state(run: &Path) -> (Vec<(String, Vec<u32>)>, serde_json::Value) {
    let dir = RunDir::new(run);
    let config = dir.load_config().unwrap();
    let last = Checkpoint::load(&dir, &config.model, &Device::flex().autodiff())
        .unwrap()
        .model;
    let best = dir.load_model(&config, &Device::flex()).unwrap();
    let mut weights = Vec::new();
    for (which, model) in [("last", &last), ("best", &best)] {
        for t in model.torch_state_dict() {
            let bits = t.data.iter().map(|v| v.to_bits()).collect();
            weights.push((format!("{which} {}", t.name), bits));
        }
    }
    let trainer = latest_checkpoint(run).unwrap().join("trainer.json");
    let mut trainer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trainer).unwrap()).unwrap();
    trainer.as_object_mut().unwrap().remove("elapsed_s");
    (weights, trainer)
}

#[test]
fn sigkill_at_seeded_moments_then_resume_gives_the_uninterrupted_weights() {
    const KILLS: usize = 24;
    // 12 epochs of 8 steps: more than the kills below can get through (each lets a process
    // write at most two new checkpoints, then train at most 1.5 ms longer).
    const EPOCHS: &str = "12";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    // A checkpoint after every step, so a kill anywhere loses at most one step.
    let every = ["--checkpoint-every", "1"];

    let o = lstm_lm(&fresh_args("reference", EPOCHS, &every), dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = dir.join("reference");

    let run = dir.join("run");
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut kills = 0;
    let mut inside_writes = 0;
    let mut restarts = 0;
    while kills < KILLS {
        let moment = match rng.random_range(0..10) {
            // The first kill lands in the first checkpoint's first file: the run has its
            // config.json but no checkpoint yet, and the next start begins it again.
            _ if kills == 0 => Moment::InsideWrite(1),
            0..3 => Moment::AfterMs(rng.random_range(0..120)),
            3..6 => Moment::AfterCheckpoint(rng.random_range(1..=2), rng.random_range(0..1500)),
            _ => Moment::InsideWrite(rng.random_range(1..=6)),
        };
        let env: Vec<(&str, String)> = match moment {
            Moment::InsideWrite(_) => vec![
                ("LSTM_LM_FAULT_PAUSE_MS", "30".to_string()),
                ("LSTM_LM_FAULT_PATHS", "checkpoint".to_string()),
            ],
            _ => Vec::new(),
        };
        // A run killed before config.json exists is started again; after, it is resumed
        // (from its checkpoint, or from the beginning when it has none yet).
        let args = if run.join("config.json").exists() {
            if latest_checkpoint(&run).is_none() {
                restarts += 1;
            }
            resume_args("run", &[])
        } else {
            fresh_args("run", EPOCHS, &every)
        };
        let step_before = trainer_step(&run);
        let mut trainer = spawn(&args, dir, &env);
        let child = trainer.child();
        let pid = child.id();
        let mine = format!(".tmp-{pid}");
        let start = Instant::now();
        let mut running = || {
            assert!(start.elapsed() < PATIENCE, "{moment:?} never came");
            std::thread::sleep(Duration::from_millis(1));
            child.try_wait().unwrap().is_none()
        };
        match moment {
            Moment::AfterMs(ms) => {
                // Two new checkpoints at most: a fast disk must not let a few starts finish the
                // whole run.
                let mut checkpoints = NewCheckpoints::since(step_before);
                while start.elapsed() < Duration::from_millis(ms)
                    && checkpoints.count(&run) < 2
                    && running()
                {}
            }
            Moment::AfterCheckpoint(n, us) => {
                let mut checkpoints = NewCheckpoints::since(step_before);
                while checkpoints.count(&run) < n && running() {}
                std::thread::sleep(Duration::from_micros(us));
            }
            Moment::InsideWrite(n) => {
                let mut seen: Vec<PathBuf> = Vec::new();
                while seen.len() < n && running() {
                    for t in temporaries(&run) {
                        let name = t.to_string_lossy();
                        if name.contains("checkpoint")
                            && name.ends_with(&mine)
                            && !seen.contains(&t)
                        {
                            seen.push(t);
                        }
                    }
                }
            }
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if killed_by(status) != Some(libc::SIGKILL) {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            panic!("{moment:?}: the run ended on its own ({status}) after {kills} kills: {err}");
        }
        kills += 1;
        // A temporary file of the killed process left on disk: the kill landed between the
        // write of a file and its rename.
        if temporaries(&run)
            .iter()
            .any(|t| t.to_string_lossy().ends_with(&mine))
        {
            inside_writes += 1;
        }
        eprintln!(
            "DEBUG {moment:?} before {step_before:?} after {:?} inside {inside_writes}",
            trainer_step(&run)
        );
    }
    assert!(
        inside_writes >= 5,
        "only {inside_writes} of {kills} kills landed inside a write"
    );

    let o = lstm_lm(&resume_args("run", &[]), dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("trained {EPOCHS} epochs")),
        "{}",
        stdout(&o)
    );
    // The lock holder cleared what killed writers left at the top of the run folder.
    let left: Vec<PathBuf> = temporaries(&run)
        .into_iter()
        .filter(|t| t.parent() == Some(run.as_path()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let (weights, trainer) = final_state(&run);
    let (expected_weights, expected_trainer) = final_state(&reference);
    assert_eq!(trainer, expected_trainer);
    assert!(!weights.is_empty());
    for ((name, bits), (_, expected)) in weights.iter().zip(&expected_weights) {
        assert!(
            bits == expected,
            "{name} differs from the uninterrupted run's"
        );
    }
    assert_eq!(weights.len(), expected_weights.len());
    assert!(restarts >= 1, "no resume of a run without a checkpoint");
    eprintln!(
        "{kills} kills, {inside_writes} of them inside a write; {restarts} resumes without a checkpoint"
    );
}
