//! Evaluation-time adaptation on a tiny trained run: the cache pointer and dynamic evaluation
//! against the plain model, the no-peeking property of dynamic evaluation, and the grid
//! searches, on flex and ndarray.
use std::path::PathBuf;
use std::sync::OnceLock;

use lstm_lm_model::BackendKind;
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_train::cache_pointer::{CacheConfig, LAMBDA_GRID, THETA_GRID};
use lstm_lm_train::dynamic_eval::{DynamicConfig, DynamicModel, DynamicRule, gradient_stats};
use lstm_lm_train::settings::{CheckpointEvery, Recipe, TokenizerChoice, TrainSettings};
use lstm_lm_train::{
    DataFiles, LoadedRun, TrainOptions, evaluate_adapted, score_stream, stream_ids, train,
    tune_cache, tune_dynamic,
};

use crate::support::{corpus_text, finished, serial};

struct Fixture {
    _tmp: tempfile::TempDir,
    run: PathBuf,
    /// A text that repeats itself: what a cache and dynamic evaluation can exploit.
    repeated: PathBuf,
    /// Another text for statistics and tuning.
    valid: PathBuf,
}

/// One tiny stream run (2×24 LSTM with dropout, a few batches), trained once per test binary.
fn fixture() -> &'static Fixture {
    static RUN: OnceLock<Fixture> = OnceLock::new();
    RUN.get_or_init(|| {
        let _turn = serial();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let train_file = dir.join("train.txt");
        std::fs::write(&train_file, corpus_text(120, 1)).unwrap();
        // Four copies: each of the two evaluation columns reads two.
        let repeated = dir.join("repeated.txt");
        std::fs::write(&repeated, corpus_text(12, 7).repeat(4)).unwrap();
        let valid = dir.join("valid.txt");
        std::fs::write(&valid, corpus_text(30, 2)).unwrap();
        let mut s = TrainSettings::default();
        s.data.tokenizer = TokenizerChoice::Word;
        s.data.recipe = Recipe::Stream;
        s.data.batch_size = 4;
        s.data.eval_batch_size = 2;
        s.data.bptt = 6;
        s.model.embedding_size = 16;
        s.model.hidden_size = 24;
        s.model.num_layers = 2;
        s.model.dropout = 0.2;
        s.optim.lr = 1.0;
        s.train.epochs = 2;
        s.train.checkpoint_every = CheckpointEvery::Never;
        let run = dir.join("run");
        finished(
            train(TrainOptions::new(
                s,
                DataFiles::train_only(train_file),
                &run,
            ))
            .unwrap(),
        );
        Fixture {
            _tmp: tmp,
            run,
            repeated,
            valid,
        }
    })
}

fn devices() -> Vec<Device> {
    use lstm_lm_model::device_for;
    [BackendKind::Flex, BackendKind::Ndarray]
        .into_iter()
        .map(|k| device_for(k, 0).unwrap())
        .collect()
}

fn load(device: Device) -> LoadedRun {
    LoadedRun::load(&fixture().run, device).unwrap()
}

fn sgd(lr: f64, decay: f64) -> DynamicConfig {
    DynamicConfig {
        lr,
        decay,
        ..DynamicConfig::new(DynamicRule::Sgd)
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    a.is_finite() && b.is_finite() && (a - b).abs() <= tol * b.abs().max(1.0)
}

/// λ = 0 is the plain model exactly, and the plain figure is `eval`'s.
#[test]
fn a_cache_of_weight_zero_is_the_plain_model() {
    let f = fixture();
    for device in devices() {
        let run = load(device);
        let plain = run.evaluate_file(&f.repeated).unwrap();
        let cache = CacheConfig {
            window: 50,
            theta: 0.7,
            lambda: 0.0,
        };
        let r = evaluate_adapted(&run, &f.repeated, Some(cache), None, None, None).unwrap();
        assert_eq!(r.cache.unwrap(), r.plain);
        assert_eq!(r.tokens, plain.tokens);
        assert!(close(r.plain.loss, plain.loss, 1e-5), "{r:?} vs {plain:?}");
    }
}

/// On a text that repeats itself, the cache and dynamic evaluation each lower the loss, and
/// the plain figure is reported next to them.
#[test]
fn cache_and_dynamic_evaluation_exploit_repetition() {
    let f = fixture();
    for device in devices() {
        let run = load(device);
        let cache = CacheConfig {
            window: 200,
            theta: 0.5,
            lambda: 0.3,
        };
        let r = evaluate_adapted(
            &run,
            &f.repeated,
            Some(cache),
            Some(sgd(0.5, 0.0)),
            None,
            None,
        )
        .unwrap();
        let plain = r.plain.loss;
        assert!(plain.is_finite());
        for (name, figures) in [
            ("cache", r.cache),
            ("dynamic", r.dynamic),
            ("both", r.dynamic_cache),
        ] {
            let loss = figures.unwrap().loss;
            assert!(
                loss.is_finite() && loss < plain - 0.05,
                "{name}: {loss} vs plain {plain}"
            );
        }
    }
}

/// Dynamic evaluation never scores a token with weights that saw it: every score taken before
/// the point where a text is changed (in every column of the stream) is the same bit for bit,
/// although the weights change after every window; the scores after it differ.
#[test]
fn dynamic_evaluation_scores_before_it_learns() {
    let f = fixture();
    for device in devices() {
        let run = load(device);
        let text = std::fs::read_to_string(&f.valid).unwrap();
        let ids = stream_ids(&run, &text, "--dynamic", None).unwrap();
        let columns = run.config.settings.data.eval_batch_size;
        let bptt = run.config.settings.data.bptt;
        let rows = ids.len() / columns;
        // The middle of the third window of every column: a rule that learned from a window
        // before scoring it would change the scores of that window's first steps.
        let cut = 2 * bptt + bptt / 2;
        assert!(rows > cut + bptt, "the text is too short for the test");
        let mut poisoned = ids.clone();
        for c in 0..columns {
            for step in cut..rows - 1 {
                let p = c * rows + step + 1;
                poisoned[p] = (poisoned[p] + 7) % run.model.vocab_size() as u32;
            }
        }
        let config = sgd(2.0, 0.0);
        let mut model = DynamicModel::new(&run, config, None).unwrap();
        let clean = score_stream(&run, &ids, None, Some(&mut model)).unwrap();
        let mut model = DynamicModel::new(&run, config, None).unwrap();
        let dirty = score_stream(&run, &poisoned, None, Some(&mut model)).unwrap();
        let plain = score_stream(&run, &ids, None, None).unwrap();
        assert_eq!(clean.positions, dirty.positions);
        let (mut before, mut after_differ, mut adapted) = (0, 0, 0);
        for (k, &p) in clean.positions.iter().enumerate() {
            let step = (p - 1) % rows;
            if step < cut {
                assert_eq!(
                    clean.model[k].to_bits(),
                    dirty.model[k].to_bits(),
                    "position {p} (step {step}) was scored after the model saw later tokens"
                );
                before += 1;
            } else if clean.model[k] != dirty.model[k] {
                after_differ += 1;
            }
            if step >= bptt && (clean.model[k] - plain.model[k]).abs() > 1e-4 {
                adapted += 1;
            }
        }
        assert!(before >= columns * cut, "{before}");
        assert!(after_differ > 0);
        assert!(adapted > 0, "the weights never changed");
        // The first window is scored by the trained weights.
        for (k, &p) in clean.positions.iter().enumerate() {
            if (p - 1) % rows < bptt {
                assert!((clean.model[k] - plain.model[k]).abs() < 1e-5);
            }
        }
    }
}

/// The RMS rule runs from statistics of another text and, with a decay of 1, scores every
/// window with the trained weights moved by one normalised step at most.
#[test]
fn rms_rule_uses_statistics_and_decay() {
    let f = fixture();
    let run = load(Device::flex());
    let text = std::fs::read_to_string(&f.valid).unwrap();
    let stats = gradient_stats(&run, &text, 2, 6, None).unwrap();
    assert!(stats.segments > 0);
    let rms = DynamicConfig::new(DynamicRule::Rms);
    assert!(DynamicModel::new(&run, rms, None).is_err());
    let r = evaluate_adapted(&run, &f.repeated, None, Some(rms), Some(&stats), None).unwrap();
    let dynamic = r.dynamic.unwrap();
    assert!(
        dynamic.loss.is_finite() && dynamic.loss < r.plain.loss,
        "{r:?}"
    );
}

/// `tune_cache` and `tune_dynamic` return the grid's best point, and evaluating with it gives
/// the figures they report.
#[test]
fn tuning_picks_the_best_point_of_the_grid() {
    let f = fixture();
    let run = load(Device::flex());
    let t = tune_cache(&run, &f.repeated, 100, None).unwrap();
    assert_eq!(t.grid.len(), THETA_GRID.len() * LAMBDA_GRID.len());
    let min = t
        .grid
        .iter()
        .map(|p| p.figures.loss)
        .reduce(f64::min)
        .unwrap();
    assert_eq!(t.best.figures.loss, min);
    assert!(t.best.figures.loss < t.plain.loss);
    let again = evaluate_adapted(
        &run,
        &f.repeated,
        Some(CacheConfig {
            window: 100,
            theta: t.best.a,
            lambda: t.best.b,
        }),
        None,
        None,
        None,
    )
    .unwrap();
    assert!(close(again.cache.unwrap().loss, t.best.figures.loss, 1e-9));

    let mut seen = 0;
    let t = tune_dynamic(&run, &f.valid, DynamicRule::Sgd, None, None, |_| seen += 1).unwrap();
    assert_eq!(seen, t.grid.len());
    let min = t
        .grid
        .iter()
        .map(|p| p.figures.loss)
        .reduce(f64::min)
        .unwrap();
    assert_eq!(t.best.figures.loss, min);
    let again = evaluate_adapted(
        &run,
        &f.valid,
        None,
        Some(sgd(t.best.a, t.best.b)),
        None,
        None,
    )
    .unwrap();
    assert!(close(
        again.dynamic.unwrap().loss,
        t.best.figures.loss,
        1e-6
    ));
}

/// `score --cache`: λ = 0 is `score`, and a repeated sentence scores better the second time.
#[test]
fn scoring_with_a_cache() {
    let run = load(Device::flex());
    let text = "w1 w2 w3 w4 w5 w6 w1 w2 w3 w4 w5 w6";
    let plain = run.score(text).unwrap();
    let zero = run
        .score_with_cache(
            text,
            &CacheConfig {
                window: 20,
                theta: 1.0,
                lambda: 0.0,
            },
        )
        .unwrap();
    for ((_, a), (_, b)) in plain.tokens.iter().zip(&zero.score.tokens) {
        assert!(close(*a, *b, 1e-5), "{a} vs {b}");
    }
    assert!(close(zero.plain_ppl, plain.ppl, 1e-5));
    let cached = run
        .score_with_cache(
            text,
            &CacheConfig {
                window: 20,
                theta: 1.0,
                lambda: 0.5,
            },
        )
        .unwrap();
    assert!(cached.score.ppl < cached.plain_ppl, "{cached:?}");
    assert_eq!(cached.score.ids, plain.ids);
}
