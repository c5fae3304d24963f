//! Resuming runs: periodic checkpoints in the middle of an epoch, runs killed before their
//! first checkpoint, and what a resume checks before it continues.
use std::path::{Path, PathBuf};

use lstm_lm_model::BackendKind;
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_train::settings::{CheckpointEvery, Recipe, TokenizerChoice, TrainSettings};
use lstm_lm_train::{
    Checkpoint, DataFiles, LoadedRun, MetricEvent, ProgressMode, RunDir, TrainOptions,
    TrainOutcome, read_events, train,
};

/// burn's CPU backends draw dropout masks from one process-wide generator: training runs in
/// this binary take turns so that each sees only its own draws.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn options(settings: &TrainSettings, data: &DataFiles, out: &Path) -> TrainOptions {
    TrainOptions {
        settings: settings.clone(),
        data: data.clone(),
        out: out.to_path_buf(),
        backend: BackendKind::Flex,
        device: Device::flex(),
        extra_devices: Vec::new(),
        resume: false,
        epochs_override: None,
        stop: None,
        progress: ProgressMode::Quiet,
        stop_at_step: None,
        crash_at_step: None,
    }
}

fn resume_options(out: &Path) -> TrainOptions {
    let mut o = options(&TrainSettings::default(), &DataFiles::default(), out);
    o.resume = true;
    o
}

/// Lines of 4 to 9 words from a 30-word vocabulary, drawn by a fixed LCG: enough text for a
/// few batches of either recipe, the same on every machine.
fn corpus_text(lines: usize, salt: u64) -> String {
    let mut x = 0x2545_F491_4F6C_DD1D_u64 ^ salt;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    };
    let mut text = String::new();
    for _ in 0..lines {
        let words = 4 + next(6);
        let line: Vec<String> = (0..words).map(|_| format!("w{}", next(30))).collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

fn write_data(dir: &Path) -> DataFiles {
    std::fs::create_dir_all(dir).unwrap();
    let train_file = dir.join("train.txt");
    let valid_file = dir.join("valid.txt");
    std::fs::write(&train_file, corpus_text(60, 1)).unwrap();
    std::fs::write(&valid_file, corpus_text(10, 2)).unwrap();
    DataFiles {
        train: vec![train_file],
        valid: Some(valid_file),
        test: None,
    }
}

/// Two epochs of five batches, dropout on, two layers: every source of run-to-run difference
/// (dropout masks, shuffling, carried state, optimizer state) matters.
fn settings(recipe: Recipe) -> TrainSettings {
    let mut s = TrainSettings::default();
    s.data.tokenizer = TokenizerChoice::Word;
    s.data.recipe = recipe;
    s.data.batch_size = 4;
    s.data.bptt = 5;
    s.model.embedding_size = 16;
    s.model.hidden_size = 24;
    s.model.num_layers = 2;
    s.model.dropout = 0.3;
    s.optim.lr = 1e-2;
    s.train.epochs = 2;
    s.train.max_batches = 5;
    s.train.log_interval = 2;
    s.train.checkpoint_every = CheckpointEvery::Never;
    s
}

fn finished(outcome: TrainOutcome) {
    match outcome {
        TrainOutcome::Finished(_) => {}
        TrainOutcome::Interrupted { .. } => panic!("run was interrupted"),
    }
}

/// The final weights (those of the last checkpoint) and the best model's, as bit patterns:
/// a bit-for-bit comparison, NaN included.
fn weights(run: &Path) -> Vec<(String, Vec<u32>)> {
    let dir = RunDir::new(run);
    let config = dir.load_config().unwrap();
    let last = Checkpoint::load(&dir, &config.model, &Device::flex().autodiff())
        .unwrap()
        .model;
    let best = LoadedRun::load(run, Device::flex()).unwrap().model;
    let bits = |prefix: &str, model: &lstm_lm_model::LanguageModel| {
        model
            .torch_state_dict()
            .into_iter()
            .map(|t| {
                let bits = t.data.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
                (format!("{prefix}{}", t.name), bits)
            })
            .collect::<Vec<_>>()
    };
    let mut all = bits("last ", &last);
    all.extend(bits("best ", &best));
    all
}

fn epoch_losses(run: &Path) -> Vec<(usize, f64, Option<f64>)> {
    read_events(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            MetricEvent::Epoch {
                epoch,
                train_loss,
                valid_loss,
                ..
            } => Some((epoch, train_loss, valid_loss)),
            _ => None,
        })
        .collect()
}

fn latest_checkpoint(run: &Path) -> PathBuf {
    Checkpoint::latest(&RunDir::new(run)).unwrap().unwrap()
}

/// A run killed (no save on the way out) after step 8 of 10 resumes from the periodic
/// checkpoint of step 6, in the middle of epoch 2, and ends with the weights, bit for bit, and
/// the epoch losses of a run that never stopped and never wrote a periodic checkpoint.
fn killed_run_resumes_from_its_periodic_checkpoint(recipe: Recipe) {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(&tmp.path().join("data"));
    let s = settings(recipe);
    let whole = tmp.path().join("whole");
    finished(train(options(&s, &data, &whole)).unwrap());

    let mut periodic = s.clone();
    periodic.train.checkpoint_every = CheckpointEvery::Steps(3);
    let killed = tmp.path().join("killed");
    let mut first = options(&periodic, &data, &killed);
    first.crash_at_step = Some(8);
    let e = train(first).expect_err("the simulated crash is an error");
    assert!(e.to_string().contains("simulated crash"), "{e}");
    let latest = latest_checkpoint(&killed);
    assert!(
        latest.ends_with("checkpoints/step-0000000006"),
        "{latest:?}"
    );
    let config = RunDir::new(&killed).load_config().unwrap();
    let ck = Checkpoint::load(
        &RunDir::new(&killed),
        &config.model,
        &Device::flex().autodiff(),
    )
    .unwrap();
    assert_eq!(
        (ck.trainer.epochs_done, ck.trainer.batches_done),
        (1, 1),
        "step 6 is the first batch of epoch 2"
    );
    assert_eq!(ck.carried.is_some(), recipe == Recipe::Stream);

    finished(train(resume_options(&killed)).unwrap());
    assert_eq!(epoch_losses(&whole), epoch_losses(&killed));
    assert_eq!(epoch_losses(&whole).len(), 2);
    assert!(
        weights(&whole) == weights(&killed),
        "final weights differ from the uninterrupted run"
    );
}

#[test]
fn stream_run_killed_mid_epoch_resumes_exactly_from_a_periodic_checkpoint() {
    killed_run_resumes_from_its_periodic_checkpoint(Recipe::Stream);
}

#[test]
fn ngram_run_killed_mid_epoch_resumes_exactly_from_a_periodic_checkpoint() {
    killed_run_resumes_from_its_periodic_checkpoint(Recipe::Ngram);
}

/// The default setting writes checkpoints by training time, and a time setting is kept in
/// `config.json` as the user wrote it.
#[test]
fn checkpoint_every_is_recorded_in_config_json() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(&tmp.path().join("data"));
    let mut s = settings(Recipe::Stream);
    s.train.epochs = 1;
    s.train.checkpoint_every = TrainSettings::default().train.checkpoint_every;
    let out = tmp.path().join("run");
    finished(train(options(&s, &data, &out)).unwrap());
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json["settings"]["train"]["checkpoint_every"], "10m",
        "{text}"
    );
}
