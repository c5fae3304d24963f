//! The fuzz targets of `cargo xtask fuzz`, a bounded number of cases each (about a minute in
//! all, in release on two cores), and the inputs they found, kept as regression tests.
//!
//! Single allocations past 1 GiB abort this test binary while a case runs (the inputs are in
//! `target/fuzz-tests/`); panics and errors that are not one line fail the test of the target.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use xtask::fuzz::{Budget, Fixtures, LimitedAllocator, run_target};

#[global_allocator]
static ALLOCATOR: LimitedAllocator = LimitedAllocator;

/// The fixtures, made once; targets take turns (the allocation limit is process-wide, and
/// burn's CPU backends share one random generator).
fn fixtures() -> (MutexGuard<'static, ()>, &'static Fixtures) {
    static TURN: Mutex<()> = Mutex::new(());
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let fixtures = FIXTURES.get_or_init(|| Fixtures::new().expect("fuzz fixtures"));
    (turn, fixtures)
}

fn save_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-tests")
}

fn fuzz(target: &str, cases: u64) {
    let (_turn, fixtures) = fixtures();
    let report = run_target(
        target,
        fixtures,
        Budget::Cases(cases),
        20_26,
        Some(save_dir().as_path()),
        |_| {},
    );
    eprintln!(
        "{target}: {} cases, {} failures",
        report.cases,
        report.failures.len()
    );
    let failures: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    assert!(failures.is_empty(), "{target}:\n{}", failures.join("\n"));
    assert!(
        report.cases >= cases,
        "{target} ran {} of {cases} cases",
        report.cases
    );
}

/// One input through one target, as the fuzzer runs it.
fn case(target: &str, slot: &str, input: &[u8]) -> Result<(), String> {
    let (_turn, fixtures) = fixtures();
    let slot = fixtures
        .slots(target)
        .iter()
        .position(|s| s == slot)
        .unwrap_or_else(|| panic!("{target} has no slot {slot}"));
    xtask::fuzz::runner::run_case(fixtures, target, slot, input)
}

#[test]
fn fuzz_tokenizer_json() {
    fuzz("tokenizer-json", 400);
}

#[test]
fn fuzz_config_json() {
    fuzz("config-json", 150);
}

#[test]
fn fuzz_checkpoint() {
    fuzz("checkpoint", 200);
}

#[test]
fn fuzz_model_bpk() {
    fuzz("model-bpk", 200);
}

#[test]
fn fuzz_corpus() {
    fuzz("corpus", 300);
}

#[test]
fn fuzz_prompt() {
    fuzz("prompt", 200);
}

#[test]
fn every_target_has_slots_and_a_test() {
    let (_turn, fixtures) = fixtures();
    let source = include_str!("fuzz.rs");
    for t in xtask::fuzz::TARGETS {
        assert!(!fixtures.slots(t.name).is_empty(), "{} has no slot", t.name);
        assert!(
            source.contains(&format!("fuzz(\"{}\"", t.name)),
            "{} is not tested",
            t.name
        );
    }
}

/// Corpus bytes the random inputs rarely make: a 10 MB line (with and without spaces), NUL,
/// lone CR, invalid UTF-8 in the middle and at the end, an empty file.
#[test]
fn corpus_extremes_give_results_or_one_line_errors() {
    let words = "word ".repeat(2_000_000);
    let run = "x".repeat(10_000_000);
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 10 MB line of words",
            format!("a b\n{words}\nc d\n").into_bytes(),
        ),
        ("a 10 MB word", format!("a b\n{run}\n").into_bytes()),
        ("NUL", b"a\0b c\0\nd e\0\n".to_vec()),
        ("lone CR", b"a b\rc d\re f\r".to_vec()),
        ("invalid UTF-8 inside", b"a b\n\xff\xfe c\n".to_vec()),
        ("a cut character at the end", b"a b c\n\xe2\x82".to_vec()),
        ("empty", Vec::new()),
        ("spaces only", b" \n\t\n \r\n".to_vec()),
    ];
    for (what, bytes) in &inputs {
        for (slot, ..) in xtask::fuzz::targets::corpus_slots() {
            if bytes.len() > 1_000_000 && slot.contains("ngram") {
                // Every prefix of a 2-million-word line: quadratic by design of the recipe.
                continue;
            }
            // Byte-level BPE works on a line at a time (its pre-tokenizer cannot be cut inside
            // one): a 10 MB line of words takes half a minute and a 1 MB word minutes, so it gets
            // 100 kB here.
            let bytes = if slot.starts_with("bpe") && bytes.len() > 100_000 {
                let mut short = bytes[..100_000].to_vec();
                short.extend_from_slice(
                    b"
c d
",
                );
                short
            } else {
                bytes.clone()
            };
            let started = std::time::Instant::now();
            if let Err(message) = case("corpus", slot, &bytes) {
                panic!("{what} with {slot}: {message}");
            }
            eprintln!(
                "{what} with {slot}: {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// The seed file of a slot, parsed, edited by `edit`, and written back as the fuzzer does.
fn edited_json(target: &str, slot: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let bytes = {
        let (_turn, fixtures) = fixtures();
        match target {
            "tokenizer-json" => {
                let (_, b) = fixtures.tokenizers.iter().find(|(n, _)| n == slot).unwrap();
                b.clone()
            }
            _ => {
                let run = fixtures.runs.iter().find(|r| r.name == slot).unwrap();
                std::fs::read(run.dir.join("config.json")).unwrap()
            }
        }
    };
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    edit(&mut value);
    serde_json::to_vec_pretty(&value).unwrap()
}

/// Found by the fuzzer: a keras-word tokenizer.json whose vocabulary gives one word the id
/// 2^31 - 1 made loading serialize a vocabulary of 2^31 entries (an allocation of 2 GiB,
/// past the limit: this test binary aborted). Now the ids are checked first.
#[test]
fn keras_tokenizer_with_an_id_far_past_the_vocabulary_is_refused_before_allocating() {
    let bytes = edited_json("tokenizer-json", "keras-word", |v| {
        v["model"]["vocab"]["sat"] = 2_147_483_647u32.into();
    });
    case("tokenizer-json", "keras-word", &bytes).unwrap();
    let err = lstm_lm_text_prep::TextTokenizer::from_json(
        std::str::from_utf8(&bytes).unwrap(),
        Path::new("tokenizer.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("its vocabulary has no token with id"), "{err}");
}

/// Found by the fuzzer: a config.json with an unknown field whose name holds a line break gave
/// a two-line error (serde quotes the name as it is).
#[test]
fn a_config_error_quoting_a_line_break_is_one_line() {
    let bytes = edited_json("config-json", "word-stream", |v| {
        v["settings"]["train"]["\n"] = 1.into();
    });
    case("config-json", "word-stream", &bytes).unwrap();
}

/// Found by the fuzzer: init_range = 1e308 passed validation (it is finite) and burn's uniform
/// initialisation panicked on the overflowing width 2e308. Now validation refuses it.
#[test]
fn an_init_range_whose_width_overflows_is_refused() {
    let bytes = edited_json("config-json", "char-stream", |v| {
        v["model"]["init_range"] = 1e308.into();
    });
    case("config-json", "char-stream", &bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let (_turn, fixtures) = fixtures();
        let run = fixtures
            .runs
            .iter()
            .find(|r| r.name == "char-stream")
            .unwrap();
        for name in ["config.json", "tokenizer.json", "model.bpk"] {
            std::fs::copy(run.dir.join(name), dir.path().join(name)).unwrap();
        }
    }
    std::fs::write(dir.path().join("config.json"), &bytes).unwrap();
    let err = lstm_lm_train::RunDir::new(dir.path())
        .load_config()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("init_range = 100000000") || err.contains("init_range = 1e308"),
        "{err}"
    );
    assert!(err.contains("between 1e-30 and 1e6"), "{err}");
}

/// Found by the fuzzer: init_range = 1e-310 (positive, so it passed) rounds to an empty f32
/// range, and burn's uniform initialisation panicked. Now validation refuses it.
#[test]
fn an_init_range_that_rounds_to_zero_is_refused() {
    let bytes = edited_json("config-json", "keras-ngram", |v| {
        v["model"]["init_range"] = 1e-310.into();
    });
    case("config-json", "keras-ngram", &bytes).unwrap();
}

/// Item "limits checked before allocating": a model.bpk whose header claims a tensor of
/// 2^31 - 1 rows is refused with an error, without allocating for the claim (the allocation
/// limit is in force).
#[test]
fn bpk_claiming_a_huge_tensor_is_refused_before_allocating() {
    let (dir, config) = {
        let (_turn, fixtures) = fixtures();
        let run = fixtures
            .runs
            .iter()
            .find(|r| r.name == "word-stream")
            .unwrap();
        let config = lstm_lm_train::RunDir::new(&run.dir).load_config().unwrap();
        (run.dir.clone(), config)
    };
    let mut bytes = std::fs::read(dir.join("model.bpk")).unwrap();
    // Burnpack: magic, version, header length (u32 little-endian at 6), CBOR header.
    let header_len = u32::from_le_bytes(bytes[6..10].try_into().unwrap()) as usize;
    let key = b"eshape";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at] & 0xe0, 0x80, "shape is a CBOR array");
    let first = at + 1;
    let old_len = match bytes[first] {
        b if b < 0x18 => 1,
        0x18 => 2,
        0x19 => 3,
        0x1a => 5,
        other => panic!("unexpected CBOR item {other:#x}"),
    };
    bytes.splice(first..first + old_len, [0x1a, 0x7f, 0xff, 0xff, 0xff]);
    let new_len = (header_len + 5 - old_len) as u32;
    bytes[6..10].copy_from_slice(&new_len.to_le_bytes());
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("model.bpk");
    std::fs::write(&path, &bytes).unwrap();
    let result = {
        let (_turn, _) = fixtures();
        let _limit = xtask::fuzz::alloc_limit::arm(xtask::fuzz::ALLOCATION_LIMIT);
        lstm_lm_train::load_weights(
            &path,
            &config.model,
            &lstm_lm_model::burn::tensor::Device::flex(),
        )
    };
    let Err(err) = result else {
        panic!("a huge tensor claim must be refused");
    };
    let err = err.to_string();
    assert!(err.contains("model.bpk"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

/// Item "limits checked before allocating": a config.json claiming an absurd hidden size is
/// refused when the run is loaded, naming the limit, before any weight is allocated.
#[test]
fn config_claiming_an_absurd_hidden_size_is_refused_naming_the_limit() {
    let bytes = edited_json("config-json", "word-stream", |v| {
        v["model"]["hidden_size"] = 1_000_000_000u64.into();
    });
    let work = tempfile::tempdir().unwrap();
    {
        let (_turn, fixtures) = fixtures();
        let run = fixtures
            .runs
            .iter()
            .find(|r| r.name == "word-stream")
            .unwrap();
        for name in ["config.json", "tokenizer.json", "model.bpk"] {
            std::fs::copy(run.dir.join(name), work.path().join(name)).unwrap();
        }
    }
    std::fs::write(work.path().join("config.json"), &bytes).unwrap();
    let result = {
        let (_turn, _) = fixtures();
        let _limit = xtask::fuzz::alloc_limit::arm(xtask::fuzz::ALLOCATION_LIMIT);
        lstm_lm_train::LoadedRun::load(work.path(), lstm_lm_model::burn::tensor::Device::flex())
    };
    let Err(err) = result else {
        panic!("an absurd hidden size must be refused");
    };
    let err = err.to_string();
    assert!(
        err.contains("config.json") && err.contains("hidden_size") && err.contains("limit"),
        "{err}"
    );
}

/// Found by the fuzzer: an optimizer.bpk whose record names one tensor without its parameter
/// id made burn assert while restoring the optimizer ("Optimizer record tensors should carry a
/// parameter id"), a panic on resume. Now it is the error "the saved optimizer state is
/// corrupt".
#[test]
fn optimizer_record_without_a_parameter_id_is_an_error() {
    let (slot, mut bytes) = {
        let (_turn, fixtures) = fixtures();
        let (path, bytes) = fixtures
            .checkpoint_files
            .iter()
            .find(|(p, _)| p.ends_with("optimizer.bpk"))
            .unwrap();
        (path.display().to_string(), bytes.clone())
    };
    let key = b"param_id";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    bytes[at] = b'q';
    case("checkpoint", &slot, &bytes).unwrap();
}
