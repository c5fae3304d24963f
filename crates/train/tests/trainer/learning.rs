//! Learning tests: measurable facts about training, not "it ran".
use std::path::Path;

use lstm_lm_model::burn::tensor::Device;
use lstm_lm_model::{BackendKind, CellKind};
use lstm_lm_text_prep::synthetic::{SplitSizes, SyntheticConfig};
use lstm_lm_train::settings::{OptimizerKind, Recipe, TokenizerChoice, TrainSettings};
use lstm_lm_train::{DataFiles, LoadedRun, SamplingConfig, TrainOptions, TrainOutcome, train};

use crate::support::{epoch_figures, finished, serial};

/// A new quiet run on `device`.
fn options(settings: TrainSettings, data: DataFiles, out: &Path, device: Device) -> TrainOptions {
    TrainOptions {
        device,
        ..TrainOptions::new(settings, data, out)
    }
}

/// The default synthetic corpus with `train_tokens` of training text and its perplexity.
fn synthetic(dir: &Path, train_tokens: usize) -> (DataFiles, f64) {
    let sizes = SplitSizes {
        train_tokens,
        valid_tokens: 20_000,
        test_tokens: 5_000,
    };
    crate::support::synthetic(dir, SyntheticConfig::default(), sizes, 7)
}

fn stream_settings() -> TrainSettings {
    let mut s = TrainSettings::default();
    s.data.tokenizer = TokenizerChoice::Word;
    s.data.recipe = Recipe::Stream;
    s.data.batch_size = 32;
    s.data.bptt = 20;
    s.model.embedding_size = 32;
    s.model.hidden_size = 64;
    s.model.num_layers = 1;
    s.optim.optimizer = OptimizerKind::Adam;
    s.optim.lr = 1e-2;
    s.optim.clip = Some(1.0);
    s.train.epochs = 3;
    s
}

/// A first-order Markov source of known entropy rate H: a small LSTM must get within 10% of
/// the best possible validation perplexity exp(H).
#[test]
fn synthetic_corpus_perplexity_within_ten_percent_of_the_true_value() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (files, true_ppl) = synthetic(&tmp.path().join("data"), 120_000);
    let out = tmp.path().join("run");
    let valid_file = files.valid.clone().unwrap();
    let summary = finished(train(options(stream_settings(), files, &out, Device::flex())).unwrap());
    let best = summary.best_valid.unwrap();
    // The summary reports the best epoch's own validation; the saved model gives the same.
    let again = LoadedRun::load(&out, Device::flex())
        .unwrap()
        .evaluate_file(&valid_file)
        .unwrap();
    assert!(
        (again.loss - best.loss).abs() <= 1e-9 && again.tokens == best.tokens,
        "saved model: {again:?}, summary: {best:?}"
    );
    let valid = best.ppl;
    eprintln!("true perplexity {true_ppl:.4}, validation perplexity {valid:.4}");
    assert!(
        valid <= 1.10 * true_ppl,
        "validation perplexity {valid:.3} is more than 10% above the true {true_ppl:.3}"
    );
    // Below the source's entropy would mean leaking the validation text.
    assert!(valid >= 0.97 * true_ppl, "{valid} < {true_ppl}");
}

/// Lines of distinct words: each word determines the next, so a model that learned the corpus
/// reproduces any line greedily from its first word.
#[test]
fn tiny_corpus_is_memorised_and_greedy_generation_reproduces_it() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        "amber boats drift under quiet northern bridges",
        "seven lanterns guard the winding harbour road",
        "old keepers whistle while patient gulls circle",
    ];
    let corpus = tmp.path().join("tiny.txt");
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let mut s = TrainSettings::preset("seed").unwrap();
    s.data.batch_size = 8;
    s.model.embedding_size = 16;
    s.model.hidden_size = 32;
    s.optim.lr = 0.01;
    s.train.epochs = 150;
    let out = tmp.path().join("run");
    let files = DataFiles::train_only(corpus);
    let summary = finished(train(options(s, files, &out, Device::flex())).unwrap());
    assert!(
        summary.last_train_loss < 0.05,
        "loss {}",
        summary.last_train_loss
    );
    let run = LoadedRun::load(&out, Device::flex()).unwrap();
    let greedy = SamplingConfig {
        greedy: true,
        ..SamplingConfig::default()
    };
    for line in lines {
        let (first, rest) = line.split_once(' ').unwrap();
        let mut text = String::new();
        run.generate(first, rest.split(' ').count(), &greedy, 0, |p| {
            text.push_str(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(text.trim(), rest, "from {first:?}");
    }
}

/// Stopping mid-epoch (as Ctrl-C does) and resuming gives the loss trajectory and the weights
/// of a run that never stopped, dropout included.
#[test]
fn resumed_run_repeats_the_uninterrupted_trajectory() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (files, _) = synthetic(&tmp.path().join("data"), 12_000);
    let mut s = stream_settings();
    s.model.dropout = 0.2;
    s.model.num_layers = 2;
    s.train.epochs = 2;
    let whole = tmp.path().join("whole");
    finished(train(options(s.clone(), files.clone(), &whole, Device::flex())).unwrap());

    let parts = tmp.path().join("parts");
    let mut first = options(s.clone(), files.clone(), &parts, Device::flex());
    first.stop_at_step = Some(7);
    match train(first).unwrap() {
        TrainOutcome::Interrupted { .. } => {}
        TrainOutcome::Finished(_) => panic!("expected an interruption"),
    }
    let mut second = options(s, files, &parts, Device::flex());
    second.resume = true;
    finished(train(second).unwrap());

    let a = epoch_figures(&whole);
    let b = epoch_figures(&parts);
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "trajectories differ");
    // The same values (the files differ in their parameter ids, which are per process).
    let wa = LoadedRun::load(&whole, Device::flex())
        .unwrap()
        .model
        .torch_state_dict();
    let wb = LoadedRun::load(&parts, Device::flex())
        .unwrap()
        .model
        .torch_state_dict();
    assert!(wa == wb, "final weights differ");
}

/// A crash in the middle of writing a checkpoint leaves the previous one loadable.
#[test]
fn crash_during_checkpoint_write_keeps_the_previous_checkpoint() {
    let _turn = serial();
    use lstm_lm_train::{Checkpoint, RunDir, TrainerState};
    let tmp = tempfile::tempdir().unwrap();
    let (files, _) = synthetic(&tmp.path().join("data"), 4_000);
    let mut s = stream_settings();
    s.train.epochs = 1;
    let out = tmp.path().join("run");
    finished(train(options(s, files, &out, Device::flex())).unwrap());
    let run = RunDir::new(&out);
    let config = run.load_config().unwrap();
    let device = Device::flex().autodiff();
    let before = Checkpoint::load(&run, &config.model, &device).unwrap();
    let step_before = before.trainer.global_step;
    let optimizer = lstm_lm_train::optim::build_optimizer(&config.settings.optim);
    let optimizer = Checkpoint::restore_optimizer(optimizer, before.optimizer.clone()).unwrap();
    let later = TrainerState {
        global_step: step_before + 100,
        ..before.trainer.clone()
    };
    for fail_after in 0..4 {
        let r = Checkpoint::save_with_fault(
            &run,
            &before.model,
            &optimizer,
            &later,
            None,
            None,
            Some(fail_after),
        );
        assert!(r.is_err());
        let again = Checkpoint::load(&run, &config.model, &device).unwrap();
        assert_eq!(
            again.trainer.global_step, step_before,
            "fail_after {fail_after}"
        );
    }
    // A complete save moves the pointer.
    Checkpoint::save_atomic(&run, &before.model, &optimizer, &later, None).unwrap();
    let after = Checkpoint::load(&run, &config.model, &device).unwrap();
    assert_eq!(after.trainer.global_step, step_before + 100);
}

/// Weights trained on ndarray load on flex and give the same logits.
#[test]
fn model_trained_on_ndarray_gives_the_same_logits_on_flex() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (files, _) = synthetic(&tmp.path().join("data"), 3_000);
    let mut s = stream_settings();
    s.train.epochs = 1;
    s.model.cell = CellKind::Gru;
    let out = tmp.path().join("run");
    let mut opts = options(s, files, &out, ndarray());
    opts.backend = BackendKind::Ndarray;
    finished(train(opts).unwrap());
    let on_ndarray = LoadedRun::load(&out, ndarray()).unwrap();
    let on_flex = LoadedRun::load(&out, Device::flex()).unwrap();
    let text = on_flex.tokenizer.decode(&[4, 5, 6, 7, 8]);
    let a = on_ndarray.score(&text).unwrap();
    let b = on_flex.score(&text).unwrap();
    assert_eq!(a.tokens.len(), b.tokens.len());
    for ((_, x), (_, y)) in a.tokens.iter().zip(&b.tokens) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

fn ndarray() -> Device {
    lstm_lm_model::device_for(BackendKind::Ndarray, 0).unwrap()
}
