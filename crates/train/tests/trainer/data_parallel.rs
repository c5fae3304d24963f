//! Data-parallel training (`TrainOptions::extra_devices`, `lstm-lm train --devices`): a batch
//! split across devices must train exactly as the whole batch on one device.
use std::path::Path;

use lstm_lm_model::burn::tensor::Device;
use lstm_lm_model::testing::max_abs_diff;
use lstm_lm_text_prep::synthetic::{SplitSizes, SyntheticConfig};
use lstm_lm_train::settings::{OptimizerKind, Recipe, TokenizerChoice, TrainSettings};
use lstm_lm_train::{
    DataFiles, LoadedRun, MetricEvent, TrainError, TrainOptions, TrainOutcome, read_events, train,
};

use crate::support::{finished, options, serial};

/// `settings` trained on `devices` copies of the flex device, to the end.
fn run(settings: &TrainSettings, data: &DataFiles, out: &Path, devices: usize) {
    let mut o = options(settings, data, out);
    o.extra_devices = vec![Device::flex(); devices - 1];
    finished(train(o).unwrap());
}

/// Loss and accuracy of every optimizer step (log_interval 1).
fn step_losses(run: &Path) -> Vec<(f64, f64)> {
    read_events(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            MetricEvent::Train { loss, accuracy, .. } => Some((loss, accuracy)),
            _ => None,
        })
        .collect()
}

fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    LoadedRun::load(run, Device::flex())
        .unwrap()
        .model
        .torch_state_dict()
        .into_iter()
        .map(|t| (t.name, t.data))
        .collect()
}

/// Trains `settings` on one device and on `devices` devices; returns the largest absolute
/// differences of the per-step losses and of the final weights.
fn compare(settings: &TrainSettings, data: &DataFiles, dir: &Path, devices: usize) -> (f64, f64) {
    let one = dir.join("one");
    let many = dir.join(format!("many-{devices}"));
    run(settings, data, &one, 1);
    run(settings, data, &many, devices);
    let (a, b) = (step_losses(&one), step_losses(&many));
    assert!(a.len() >= 4, "too few steps: {}", a.len());
    assert_eq!(a.len(), b.len());
    let losses = |steps: &[(f64, f64)]| steps.iter().map(|s| s.0).collect::<Vec<f64>>();
    let loss_diff =
        max_abs_diff(&losses(&a), &losses(&b)).unwrap_or_else(|e| panic!("losses: {e}"));
    // The run must actually learn something, or equal losses would prove little.
    assert!(a.last().unwrap().0 < a[0].0 - 0.05, "no learning: {a:?}");
    let (wa, wb) = (weights(&one), weights(&many));
    assert_eq!(wa.len(), wb.len());
    let mut weight_diff = 0.0f64;
    for ((na, va), (nb, vb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let diff = max_abs_diff(va, vb).unwrap_or_else(|e| panic!("{na}: {e}"));
        weight_diff = weight_diff.max(diff);
    }
    (loss_diff, weight_diff)
}

/// A synthetic corpus's training split alone.
fn synthetic(dir: &Path) -> DataFiles {
    let sizes = SplitSizes {
        train_tokens: 4_000,
        valid_tokens: 500,
        test_tokens: 100,
    };
    let (files, _) = crate::support::synthetic(dir, SyntheticConfig::default(), sizes, 3);
    DataFiles::train_only(&files.train[0])
}

/// Stream recipe, two layers of LSTM (state carried across windows, split and rejoined every
/// step), SGD (so the scale of the combined gradient matters), and an odd batch: the shards have
/// 3 and 2 rows, so an unweighted mean of the shards' gradients would differ from the batch's.
#[test]
fn two_devices_train_as_one_device_with_the_same_batch_stream() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(&tmp.path().join("data"));
    let mut s = TrainSettings::default();
    s.data.tokenizer = TokenizerChoice::Word;
    s.data.recipe = Recipe::Stream;
    s.data.batch_size = 5;
    s.data.bptt = 8;
    s.model.embedding_size = 16;
    s.model.hidden_size = 24;
    s.model.num_layers = 2;
    s.optim.optimizer = OptimizerKind::Sgd;
    s.optim.lr = 1.0;
    s.train.epochs = 2;
    s.train.max_batches = 8;
    s.train.log_interval = 1;
    let (loss_diff, weight_diff) = compare(&s, &data, tmp.path(), 2);
    assert!(loss_diff < 1e-5, "losses differ by {loss_diff}");
    assert!(weight_diff < 1e-5, "weights differ by {weight_diff}");
}

/// N-gram recipe with the Keras tokenizer (padding id 0, a short last batch, shuffling) and
/// Adam with clipping, split three ways.
#[test]
fn three_devices_train_as_one_device_with_the_same_batch_ngram() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let text: String = (0..30)
        .map(|i| match i % 3 {
            0 => "the keeper lit the lamp at dusk\n",
            1 => "a ship passed the rocks in the night\n",
            _ => "the lamp burned until the morning came\n",
        })
        .collect();
    let path = tmp.path().join("train.txt");
    std::fs::write(&path, text).unwrap();
    let data = DataFiles {
        train: vec![path],
        valid: None,
        test: None,
    };
    let mut s = TrainSettings::default();
    s.data.tokenizer = TokenizerChoice::KerasWord;
    s.data.recipe = Recipe::Ngram;
    s.data.batch_size = 16;
    s.model.embedding_size = 16;
    s.model.hidden_size = 24;
    s.optim.optimizer = OptimizerKind::Adam;
    s.optim.lr = 1e-2;
    s.optim.clip = Some(0.5);
    s.train.epochs = 2;
    s.train.log_interval = 1;
    let (loss_diff, weight_diff) = compare(&s, &data, tmp.path(), 3);
    assert!(loss_diff < 1e-5, "losses differ by {loss_diff}");
    assert!(weight_diff < 1e-5, "weights differ by {weight_diff}");
}

/// With dropout the shards draw their masks in device order from the one generator: a
/// multi-device run repeats itself exactly, but draws other masks than a single-device run
/// (so its trajectory is a different, equally valid, sample).
#[test]
fn dropout_with_two_devices_is_reproducible() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(&tmp.path().join("data"));
    let mut s = TrainSettings::default();
    s.data.batch_size = 4;
    s.data.bptt = 8;
    s.model.embedding_size = 16;
    s.model.hidden_size = 16;
    s.model.dropout = 0.3;
    s.train.epochs = 1;
    s.train.max_batches = 5;
    s.train.log_interval = 1;
    run(&s, &data, &tmp.path().join("a"), 2);
    run(&s, &data, &tmp.path().join("b"), 2);
    run(&s, &data, &tmp.path().join("one"), 1);
    let a = step_losses(&tmp.path().join("a"));
    assert_eq!(a, step_losses(&tmp.path().join("b")));
    assert_ne!(a, step_losses(&tmp.path().join("one")));
}

/// Interrupting a two-device stream run (whose carried state is joined from the shards into
/// the checkpoint) and resuming it repeats the uninterrupted two-device run.
#[test]
fn two_device_run_resumes_exactly() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(&tmp.path().join("data"));
    let mut s = TrainSettings::default();
    s.data.batch_size = 5;
    s.data.bptt = 8;
    s.model.embedding_size = 16;
    s.model.hidden_size = 16;
    s.model.num_layers = 2;
    s.model.dropout = 0.2;
    s.train.epochs = 1;
    s.train.max_batches = 8;
    s.train.log_interval = 1;
    let whole = tmp.path().join("whole");
    run(&s, &data, &whole, 2);
    let parts = tmp.path().join("parts");
    let options = |resume: bool| TrainOptions {
        extra_devices: vec![Device::flex()],
        resume,
        stop_at_step: (!resume).then_some(3),
        ..options(&s, &data, &parts)
    };
    assert!(matches!(
        train(options(false)).unwrap(),
        TrainOutcome::Interrupted { .. }
    ));
    assert!(matches!(
        train(options(true)).unwrap(),
        TrainOutcome::Finished(_)
    ));
    assert_eq!(step_losses(&whole), step_losses(&parts));
    assert!(weights(&whole) == weights(&parts), "final weights differ");
}

#[test]
fn more_devices_than_sequences_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(&tmp.path().join("data"));
    let mut s = TrainSettings::default();
    s.data.batch_size = 2;
    let out = tmp.path().join("run");
    let err = train(TrainOptions {
        extra_devices: vec![Device::flex(); 2],
        ..TrainOptions::new(s, data, &out)
    })
    .unwrap_err();
    assert!(matches!(err, TrainError::Settings(_)), "{err}");
    assert!(err.to_string().contains("3 devices"), "{err}");
    assert!(!out.join("config.json").exists());
}

/// AWD-LSTM's deterministic parts split across devices: AR and TAR are means over each shard,
/// weighted by its tokens like the loss, so with random BPTT lengths and per-layer widths two
/// devices still train as one; with the masks on too (each device drawing its own) a
/// two-device run repeats itself.
#[test]
fn awd_settings_with_two_devices() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(&tmp.path().join("data"));
    let mut s = TrainSettings::default();
    s.data.tokenizer = TokenizerChoice::Word;
    s.data.recipe = Recipe::Stream;
    s.data.batch_size = 6;
    s.data.bptt = 8;
    s.data.random_bptt = true;
    s.model.embedding_size = 16;
    s.model.hidden_size = 24;
    s.model.num_layers = 3;
    s.model.hidden_sizes = vec![24, 20, 16];
    s.model.tie_weights = true;
    s.regularisation.ar = 2.0;
    s.regularisation.tar = 1.0;
    s.optim.optimizer = OptimizerKind::Sgd;
    s.optim.lr = 1.0;
    s.train.epochs = 2;
    s.train.max_batches = 6;
    s.train.log_interval = 1;
    let (loss_diff, weight_diff) = compare(&s, &data, &tmp.path().join("plain"), 2);
    assert!(loss_diff < 1e-5, "losses differ by {loss_diff}");
    assert!(weight_diff < 1e-5, "weights differ by {weight_diff}");

    s.model.dropout = 0.3;
    s.regularisation.locked_dropout = true;
    s.regularisation.weight_drop = 0.4;
    s.regularisation.embedding_dropout = 0.1;
    run(&s, &data, &tmp.path().join("a"), 2);
    run(&s, &data, &tmp.path().join("b"), 2);
    let a = step_losses(&tmp.path().join("a"));
    assert!(a.iter().all(|(l, _)| l.is_finite()), "{a:?}");
    assert_eq!(a, step_losses(&tmp.path().join("b")));
}
