//! Runs a target's cases with proptest's `TestRunner`: panics are caught and counted as
//! failures, each failing input is shrunk and saved, and the allocation limit is in force
//! while a case runs.

use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::alloc_limit::{ALLOCATION_LIMIT, arm};
use super::targets::Fixtures;

/// How long a target runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many cases (the tests).
    Cases(u64),
    /// Until this much time has passed (`cargo xtask fuzz`).
    Time(Duration),
}

/// One failing input, shrunk.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong: the panic message and place, or the rule broken.
    pub message: String,
    /// Which seed file the input started from.
    pub slot: usize,
    /// The input.
    pub input: Vec<u8>,
    /// Where it was saved, if it was.
    pub saved: Option<PathBuf>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = String::from_utf8_lossy(&self.input);
        let shown: String = shown.chars().take(300).collect();
        write!(
            f,
            "slot {}: {} ; input {:?}",
            self.slot, self.message, shown
        )?;
        if let Some(path) = &self.saved {
            write!(f, " (saved in {})", path.display())?;
        }
        Ok(())
    }
}

/// What a target's run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: String,
    /// Cases run, shrinking steps included.
    pub cases: u64,
    /// Distinct failures (by message).
    pub failures: Vec<Failure>,
}

/// Messages of panics while a case runs, on any thread (rayon's included).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static QUIET: AtomicBool = AtomicBool::new(false);

/// Installs, once, a panic hook that records panic messages and keeps them off stderr while
/// cases run (other panics reach the previous hook).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.load(Ordering::SeqCst) {
                let place = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("panic{place}: {message}"));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one input through `target`, catching panics.
///
/// # Errors
/// The failure's description: a panic (message and place) or a broken rule.
pub fn run_case(
    fixtures: &Fixtures,
    target: &str,
    slot: usize,
    input: &[u8],
) -> Result<(), String> {
    install_panic_hook();
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    QUIET.store(true, Ordering::SeqCst);
    let outcome = {
        let _limit = arm(ALLOCATION_LIMIT);
        catch_unwind(AssertUnwindSafe(|| fixtures.check(target, slot, input)))
    };
    QUIET.store(false, Ordering::SeqCst);
    match outcome {
        Ok(result) => result,
        Err(_) => {
            let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
            Err(panics.first().cloned().unwrap_or_else(|| "panic".into()))
        }
    }
}

/// The file holding the input a worker is on (read back when the worker dies).
pub fn current_case_file(dir: &Path, target: &str) -> PathBuf {
    dir.join(format!("{target}.current"))
}

/// Saves a failing input as `DIR/TARGET-HASH.slotN.bin`.
///
/// # Errors
/// When the file cannot be written.
pub fn save_failure(
    dir: &Path,
    target: &str,
    slot: usize,
    input: &[u8],
) -> std::io::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    let path = dir.join(format!("{target}-{:016x}.slot{slot}.bin", h.finish()));
    std::fs::create_dir_all(dir)?;
    std::fs::write(&path, input)?;
    Ok(path)
}

/// The slot a saved input names (`...slotN.bin`), 0 if none.
pub fn slot_of(path: &Path) -> usize {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.rsplit_once(".slot")
        .and_then(|(_, rest)| rest.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs `target` within `budget`, in rounds of proptest cases seeded from `seed`; `progress`
/// hears the number of cases after each round. With `save_dir`, each case's input is written
/// there before it runs (so that an abort can be traced) and failing inputs are saved.
pub fn run_target(
    target: &str,
    fixtures: &Fixtures,
    budget: Budget,
    seed: u64,
    save_dir: Option<&Path>,
    mut progress: impl FnMut(u64),
) -> Report {
    let started = Instant::now();
    let strategy = fixtures.strategy(target);
    let cases = Cell::new(0u64);
    let mut failures: Vec<Failure> = Vec::new();
    let mut round = 0u64;
    let mut planned = 0u64;
    loop {
        let round_cases = match budget {
            Budget::Cases(n) => {
                let left = n.saturating_sub(planned);
                if left == 0 {
                    break;
                }
                left.min(64)
            }
            Budget::Time(limit) => {
                if started.elapsed() >= limit {
                    break;
                }
                32
            }
        };
        planned += round_cases;
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        seed_bytes[8..16].copy_from_slice(&round.to_le_bytes());
        seed_bytes[16..]
            .copy_from_slice(target.as_bytes().get(..16).unwrap_or(b"fuzz-target-name"));
        round += 1;
        let config = Config {
            cases: round_cases as u32,
            failure_persistence: None,
            max_shrink_iters: 200,
            max_shrink_time: 20_000,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
        );
        let result = runner.run(&strategy, |(slot, input)| {
            cases.set(cases.get() + 1);
            if let Some(dir) = save_dir {
                let file = current_case_file(dir, target);
                let _ = std::fs::write(&file, &input);
                let _ = std::fs::write(file.with_extension("slot"), slot.to_string());
            }
            run_case(fixtures, target, slot, &input).map_err(TestCaseError::fail)
        });
        if let Err(TestError::Fail(message, (slot, input))) = result {
            let message = message.to_string();
            if !failures.iter().any(|f| f.message == message) {
                let saved = save_dir.and_then(|dir| save_failure(dir, target, slot, &input).ok());
                failures.push(Failure {
                    message,
                    slot,
                    input,
                    saved,
                });
            }
        }
        progress(cases.get());
        if failures.len() >= 10 {
            break;
        }
    }
    Report {
        target: target.to_owned(),
        cases: cases.get(),
        failures,
    }
}
