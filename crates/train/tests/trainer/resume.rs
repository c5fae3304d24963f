//! Resuming runs: periodic checkpoints in the middle of an epoch, runs killed before their
//! first checkpoint, and what a resume checks before it continues.
use std::path::{Path, PathBuf};

use lstm_lm_model::burn::tensor::Device;
use lstm_lm_train::settings::{CheckpointEvery, Recipe, TokenizerChoice, TrainSettings};
use lstm_lm_train::{Checkpoint, DataFiles, LoadedRun, RunDir, TrainOptions, TrainOutcome, train};

use crate::support::{corpus_text, epoch_figures, finished, options, serial};

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

    finished(train(TrainOptions::resume(&killed)).unwrap());
    assert_eq!(epoch_figures(&whole), epoch_figures(&killed));
    assert_eq!(epoch_figures(&whole).len(), 2);
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

fn interrupted(outcome: TrainOutcome) -> PathBuf {
    match outcome {
        TrainOutcome::Interrupted { checkpoint } => checkpoint,
        TrainOutcome::Finished(_) => panic!("expected an interruption"),
    }
}

/// A stream run stopped (as Ctrl-C does) after `step` steps, in `tmp/run`.
fn stopped_run(tmp: &Path, s: &TrainSettings, step: u64) -> (DataFiles, PathBuf) {
    let data = write_data(&tmp.join("data"));
    let out = tmp.join("run");
    let mut o = options(s, &data, &out);
    o.stop_at_step = Some(step);
    interrupted(train(o).unwrap());
    (data, out)
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn error_of(o: TrainOptions) -> String {
    let e = train(o).expect_err("the resume is refused").to_string();
    assert_eq!(e.lines().count(), 1, "not one line: {e}");
    e
}

/// Killed before its first checkpoint, a run has `config.json` but no `checkpoint.json`:
/// `--resume` starts it again with its saved settings, and it ends as a run that never stopped.
#[test]
fn run_killed_before_its_first_checkpoint_starts_again_on_resume() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(&tmp.path().join("data"));
    let s = settings(Recipe::Stream);
    let whole = tmp.path().join("whole");
    finished(train(options(&s, &data, &whole)).unwrap());

    let killed = tmp.path().join("killed");
    let mut first = options(&s, &data, &killed);
    first.crash_at_step = Some(2);
    assert!(train(first).is_err());
    assert!(killed.join("config.json").exists());
    assert!(!killed.join("checkpoint.json").exists());
    finished(train(TrainOptions::resume(&killed)).unwrap());
    assert_eq!(epoch_figures(&whole), epoch_figures(&killed));
    assert!(weights(&whole) == weights(&killed), "final weights differ");
}

/// An edited `config.json` (here `log_interval = 0`, a division by zero in the loop) and an
/// `--epochs 0` are one-line errors, not panics.
#[test]
fn resume_validates_the_saved_settings_and_the_epochs_override() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = stopped_run(tmp.path(), &settings(Recipe::Stream), 3);
    let config = out.join("config.json");
    let saved = std::fs::read_to_string(&config).unwrap();
    edit_json(&config, |v| {
        v["settings"]["train"]["log_interval"] = 0.into()
    });
    let e = error_of(TrainOptions::resume(&out));
    assert!(
        e.contains("config.json") && e.contains("log_interval"),
        "{e}"
    );
    edit_json(&config, |v| {
        v["settings"]["model"]["hidden_size"] = 0.into()
    });
    let e = error_of(TrainOptions::resume(&out));
    assert!(e.contains("config.json"), "{e}");

    std::fs::write(&config, saved).unwrap();
    let mut o = TrainOptions::resume(&out);
    o.epochs_override = Some(0);
    let e = error_of(o);
    assert!(e.contains("--epochs"), "{e}");
    finished(train(TrainOptions::resume(&out)).unwrap());
}

/// A training file changed after the run started: resuming is refused, naming the file and
/// the flag; with the flag the epoch in progress restarts without the carried state and
/// `config.json` records the new digest.
#[test]
fn changed_data_is_refused_and_accepted_with_the_flag() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = stopped_run(tmp.path(), &settings(Recipe::Stream), 3);
    let config = RunDir::new(&out).load_config().unwrap();
    assert_eq!(config.data_digests.len(), 2, "train and valid recorded");
    let train_file = &data.train[0];
    assert_eq!(
        config.data_digests[0].bytes,
        std::fs::metadata(train_file).unwrap().len()
    );
    assert_eq!(config.data_digests[0].sha256.len(), 64);

    // Same size, other content: only the hash can tell.
    let text = std::fs::read_to_string(train_file).unwrap();
    std::fs::write(train_file, text.replace("w1 ", "w2 ")).unwrap();
    let e = error_of(TrainOptions::resume(&out));
    assert!(
        e.contains("train.txt") && e.contains("--accept-changed-data"),
        "{e}"
    );

    let mut o = TrainOptions::resume(&out);
    o.accept_changed_data = true;
    o.stop_at_step = Some(3);
    interrupted(train(o).unwrap());
    let run = RunDir::new(&out);
    let config = run.load_config().unwrap();
    let ck = Checkpoint::load(&run, &config.model, &Device::flex().autodiff()).unwrap();
    assert_eq!(
        (ck.trainer.global_step, ck.trainer.batches_done),
        (3, 0),
        "the epoch restarts"
    );
    assert!(ck.carried.is_none());
    let now = lstm_lm_train::DataFileDigest::of_file(train_file).unwrap();
    assert_eq!(config.data_digests[0], now);
    // Accepted once, the run resumes without the flag.
    finished(train(TrainOptions::resume(&out)).unwrap());
}

/// A checkpoint further into its epoch than an epoch now lasts (`per_epoch - batches_done`
/// once underflowed) and a carried state of another batch size (once a panic in burn) are
/// errors; `--accept-changed-data` restarts the epoch instead.
#[test]
fn a_checkpoint_that_no_longer_fits_is_an_error_or_an_epoch_restart() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = stopped_run(tmp.path(), &settings(Recipe::Stream), 4);
    let config = out.join("config.json");
    edit_json(&config, |v| {
        v["settings"]["train"]["max_batches"] = 2.into()
    });
    let e = error_of(TrainOptions::resume(&out));
    assert!(
        e.contains("batch 4 of epoch 1") && e.contains("--accept-changed-data"),
        "{e}"
    );
    edit_json(&config, |v| {
        v["settings"]["train"]["max_batches"] = 5.into();
        v["settings"]["data"]["batch_size"] = 3.into();
    });
    let e = error_of(TrainOptions::resume(&out));
    assert!(
        e.contains("state of 4 sequences") && e.contains("data.batch_size is 3"),
        "{e}"
    );
    let mut o = TrainOptions::resume(&out);
    o.accept_changed_data = true;
    finished(train(o).unwrap());
}

/// `trainer.json`, `checkpoint.json` and `state.safetensors` carry a format tag and version;
/// a newer version or a foreign tag is a one-line error naming the file.
#[test]
fn checkpoint_files_carry_a_format_and_newer_versions_are_refused() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = stopped_run(tmp.path(), &settings(Recipe::Stream), 3);
    let ck = latest_checkpoint(&out);
    let names: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"state.safetensors".to_string()),
        "{names:?}"
    );
    assert!(!names.contains(&"state.bin".to_string()), "{names:?}");
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let trainer = ck.join("trainer.json");
    let pointer = out.join("checkpoint.json");
    assert_eq!(json(&trainer)["format"], "lstm-lm-trainer");
    assert_eq!(json(&trainer)["version"], 2);
    assert_eq!(json(&pointer)["format"], "lstm-lm-checkpoint-pointer");
    assert_eq!(json(&pointer)["version"], 1);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(
        metrics.starts_with(r#"{"format":"lstm-lm-metrics","version":1}"#),
        "{metrics}"
    );

    for (file, key, value, needle) in [
        (&trainer, "version", serde_json::json!(7), "newer lstm-lm"),
        (&trainer, "format", serde_json::json!("other"), "'other'"),
        (&pointer, "version", serde_json::json!(7), "newer lstm-lm"),
        (
            &pointer,
            "latest",
            serde_json::json!("../elsewhere"),
            "checkpoints/",
        ),
    ] {
        let saved = std::fs::read(file).unwrap();
        edit_json(file, |v| v[key] = value);
        let e = error_of(TrainOptions::resume(&out));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(e.contains(&name) && e.contains(needle), "{name} {key}: {e}");
        std::fs::write(file, saved).unwrap();
    }
    // A state file declaring batch 0 (once `chunks_exact(0)`).
    let state = ck.join("state.safetensors");
    let saved = std::fs::read(&state).unwrap();
    let empty: Vec<u8> = Vec::new();
    let views: Vec<(String, safetensors::tensor::TensorView)> = (0..2)
        .flat_map(|k| ["hidden", "cell"].map(|p| format!("layers.{k}.{p}")))
        .map(|n| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![0, 24], &empty)
                    .unwrap();
            (n, view)
        })
        .collect();
    let tags = std::collections::HashMap::from([
        ("format".to_string(), "lstm-lm-carried-state".to_string()),
        ("version".to_string(), "1".to_string()),
    ]);
    std::fs::write(&state, safetensors::serialize(views, Some(tags)).unwrap()).unwrap();
    let e = error_of(TrainOptions::resume(&out));
    assert!(
        e.contains("state.safetensors") && e.contains("[0, 24]"),
        "{e}"
    );
    std::fs::write(&state, saved).unwrap();
    // Version 1 (before NT-ASGD's history and average) still resumes.
    edit_json(&trainer, |v| {
        v["version"] = serde_json::json!(1);
        let fields = v.as_object_mut().unwrap();
        fields.remove("valid_losses");
        fields.remove("asgd");
    });
    finished(train(TrainOptions::resume(&out)).unwrap());
}

/// Files written before the tags existed: a `trainer.json` and `checkpoint.json` without
/// `format`/`version` read as version 0; a `config.json` without data digests loads and gains
/// them on resume.
#[test]
fn untagged_files_of_older_runs_still_resume() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(Recipe::Stream);
    s.train.epochs = 1;
    let data = write_data(&tmp.path().join("data"));
    let out = tmp.path().join("run");
    finished(train(options(&s, &data, &out)).unwrap());
    let ck = latest_checkpoint(&out);
    let untag = |v: &mut serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("format");
        o.remove("version");
    };
    edit_json(&ck.join("trainer.json"), untag);
    edit_json(&out.join("checkpoint.json"), untag);
    edit_json(&out.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("data_digests");
        v["settings"]["train"]
            .as_object_mut()
            .unwrap()
            .remove("checkpoint_every");
    });
    let mut o = TrainOptions::resume(&out);
    o.epochs_override = Some(2);
    finished(train(o).unwrap());
    let config = RunDir::new(&out).load_config().unwrap();
    assert_eq!(config.data_digests.len(), 2);
}

/// AWD-LSTM's settings on a tiny three-layer model: per-layer sizes with a tied top layer,
/// locked dropout, weight drop, embedding dropout, AR/TAR, random BPTT and NT-ASGD with a
/// patience of one epoch, trained hard enough that validation stalls and averaging starts.
fn awd_settings() -> TrainSettings {
    let mut s = settings(Recipe::Stream);
    s.model.num_layers = 3;
    s.model.hidden_sizes = vec![24, 20, 16];
    s.model.tie_weights = true;
    s.model.dropout = 0.3;
    s.model.dropout_input = Some(0.2);
    s.model.dropout_hidden = Some(0.1);
    s.regularisation.locked_dropout = true;
    s.regularisation.weight_drop = 0.3;
    s.regularisation.embedding_dropout = 0.1;
    s.regularisation.ar = 2.0;
    s.regularisation.tar = 1.0;
    s.data.random_bptt = true;
    s.optim.optimizer = lstm_lm_train::settings::OptimizerKind::Sgd;
    s.optim.lr = 30.0;
    s.optim.clip = Some(0.25);
    s.optim.nt_asgd = true;
    s.optim.nonmono = 1;
    s.train.epochs = 6;
    s
}

/// A regularised run killed in the middle of an epoch after NT-ASGD started averaging resumes
/// from its periodic checkpoint (masks, random window lengths, the running mean and the
/// switch epoch all restored) and ends bit for bit where the uninterrupted run ends.
#[test]
fn regularised_run_with_averaging_resumes_exactly() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(&tmp.path().join("data"));
    let s = awd_settings();
    let whole = tmp.path().join("whole");
    finished(train(options(&s, &data, &whole)).unwrap());
    let dir = RunDir::new(&whole);
    let config = dir.load_config().unwrap();
    let end = Checkpoint::load(&dir, &config.model, &Device::flex().autodiff()).unwrap();
    let progress = end
        .trainer
        .asgd
        .expect("validation stalled and averaging started");
    assert!(
        progress.switched_after_epoch < s.train.epochs && progress.averaged_steps > 0,
        "averaging must start before the last epoch for this test: {progress:?}, valid losses {:?}",
        end.trainer.valid_losses
    );
    assert!(end.averaged.is_some());
    assert_eq!(end.trainer.valid_losses.len(), 6);

    // Kill it in the middle of epoch 6, after the switch, with a checkpoint two steps before.
    let mut periodic = s.clone();
    periodic.train.checkpoint_every = CheckpointEvery::Steps(2);
    let killed = tmp.path().join("killed");
    let mut first = options(&periodic, &data, &killed);
    first.crash_at_step = Some(28);
    let e = train(first).expect_err("the simulated crash is an error");
    assert!(e.to_string().contains("simulated crash"), "{e}");
    let ck = Checkpoint::load(
        &RunDir::new(&killed),
        &config.model,
        &Device::flex().autodiff(),
    )
    .unwrap();
    assert!(ck.trainer.batches_done > 0, "{:?}", ck.trainer);
    assert_eq!(ck.trainer.asgd.is_some(), ck.averaged.is_some());
    assert!(
        ck.trainer.asgd.is_some(),
        "the checkpoint is after the switch"
    );
    finished(train(TrainOptions::resume(&killed)).unwrap());
    assert_eq!(epoch_figures(&whole), epoch_figures(&killed));
    assert!(
        weights(&whole) == weights(&killed),
        "final weights differ from the uninterrupted run"
    );
}
