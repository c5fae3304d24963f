//! The training loop shared by both recipes.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use lstm_lm_model::{BackendKind, LanguageModel, RecurrentState};

use crate::activation_reg::ActivationPenalty;
use crate::asgd::{AsgdProgress, AveragedWeights};
use crate::checkpoint::{Checkpoint, TrainerState};
use crate::data::{self, Batch};
use crate::evaluate::{EvalResult, evaluate};
use crate::loss::projected_cross_entropy;
use crate::metrics::{BatchFigures, EventSink, MetricEvent, MetricsFile, Progress, ProgressMode};
use crate::optim::{build_optimizer, clip_global_norm};
use crate::run_dir::{
    DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir, changed_data_files, model_bytes,
};
use crate::run_lock::RunLock;
use crate::schedule::Schedule;
use crate::settings::{CheckpointEvery, Recipe};
use crate::{TrainError, TrainSettings};

/// What to train, where, and how to report.
pub struct TrainOptions {
    /// Merged, validated settings (ignored on resume: the run's own settings are used).
    pub settings: TrainSettings,
    /// Training data (ignored on resume).
    pub data: DataFiles,
    /// The run folder.
    pub out: PathBuf,
    /// Backend name recorded in `config.json`.
    pub backend: BackendKind,
    /// Device to train on (without autodiff; the trainer adds it). With `extra_devices`, the
    /// main device: it holds the optimizer state, validates and writes checkpoints.
    pub device: Device,
    /// Further devices for data-parallel training (without autodiff): each batch is split by
    /// rows between `device` and these, every device runs forward and backward on its share, and
    /// the gradients are combined on `device` weighted by target tokens, so a step equals the
    /// single-device step on the whole batch. Empty: train on `device` alone. The same device may
    /// appear more than once (the CPU backends have one device; the shards then run as threads).
    pub extra_devices: Vec<Device>,
    /// Continue the run in `out` from its latest checkpoint.
    pub resume: bool,
    /// On resume, train up to this many epochs instead of the saved setting.
    pub epochs_override: Option<usize>,
    /// On resume, accept data files whose size or content changed since the run started (or
    /// a checkpoint that no longer fits the data): the epoch in progress restarts from its
    /// first batch without the carried state, and `config.json` records the new digests.
    pub accept_changed_data: bool,
    /// Set from another thread (Ctrl-C) to save a checkpoint and stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Progress display.
    pub progress: ProgressMode,
    /// Receives every event written to `metrics.jsonl`, as it is written (`train --json`).
    pub on_event: Option<EventSink>,
    /// Behave as if interrupted once this many optimizer steps are done (tests and scripted
    /// runs: the same path as Ctrl-C).
    pub stop_at_step: Option<u64>,
    /// Behave as if the process were killed once this many optimizer steps are done: return
    /// an error at once and write nothing more, leaving the run folder as a `SIGKILL` would
    /// (tests of the periodic checkpoints).
    pub crash_at_step: Option<u64>,
}

impl TrainOptions {
    /// A new run of `settings` on `data` into the folder `out`, on the default CPU backend
    /// (flex), quietly (`metrics.jsonl` is still written), with nothing else switched on: no
    /// resume, no extra devices, no stop flag, no event sink. Change the fields for the rest.
    pub fn new(settings: TrainSettings, data: DataFiles, out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            settings,
            data,
            out: out.into(),
            backend: BackendKind::Flex,
            device: Device::flex(),
            extra_devices: Vec::new(),
            resume: false,
            epochs_override: None,
            accept_changed_data: false,
            stop: None,
            progress: ProgressMode::Quiet,
            on_event: None,
            stop_at_step: None,
            crash_at_step: None,
        }
    }

    /// Continues the run in `out` from its latest checkpoint, with the settings and data it
    /// was started with.
    pub fn resume(out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            resume: true,
            ..TrainOptions::new(TrainSettings::default(), DataFiles::default(), out)
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum TrainOutcome {
    /// All epochs ran (or early stopping ended the run).
    Finished(TrainSummary),
    /// The stop flag was raised; a checkpoint was saved.
    Interrupted {
        /// The checkpoint folder to resume from.
        checkpoint: PathBuf,
    },
}

/// Figures of a finished run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Epochs completed.
    pub epochs: usize,
    /// Best validation loss, if there was validation data.
    pub best_valid: Option<EvalResult>,
    /// Test evaluation of the best model, if there was test data.
    pub test: Option<EvalResult>,
    /// Mean training loss of the last epoch.
    pub last_train_loss: f64,
    /// Training seconds (across resumes).
    pub elapsed_s: f64,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Training tokens (targets) processed by this call (not counting earlier runs of a
    /// resumed run).
    pub train_tokens: u64,
    /// Seconds this call spent in training batches (forward, backward, optimizer step),
    /// without validation and checkpointing: `train_tokens / train_s` is the training
    /// throughput, measured as the PyTorch reference (`shared/bench/torch_lm_train.py`) does.
    pub train_s: f64,
}

fn step_seed(seed: u64, step: u64) -> u64 {
    // SplitMix64 of (seed, step): distinct, well-mixed seeds for every step's dropout masks,
    // so a resumed run draws exactly the masks the uninterrupted run would have drawn.
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Trains (or resumes) a run. See the crate docs for the run folder layout.
///
/// Runs on a thread of the CPU thread pool (see [`on_pool`](crate::on_pool)).
pub fn train(opts: TrainOptions) -> Result<TrainOutcome, TrainError> {
    crate::on_pool(move || train_here(opts))
}

fn train_here(mut opts: TrainOptions) -> Result<TrainOutcome, TrainError> {
    let run = RunDir::new(&opts.out);
    // Checked before the lock is taken, so a refused command writes nothing into the folder.
    if !run.config_path().exists() && lstm_lm_ngram::is_ngram_run(run.root()) {
        return Err(TrainError::RunDir(format!(
            "\"{}\" holds an n-gram run (ngram.bin), whose tokenizer.json would be replaced: choose another --out folder",
            run.root().display()
        )));
    }
    // Held until training ends; a new run's folder is locked as soon as it is created.
    let mut _lock = RunLock::acquire_if_present(run.root())?;
    let (config, tokenizer, fresh) = if opts.resume {
        let config = load_config_for_resume(&run, opts.epochs_override)?;
        let tokenizer = run.load_tokenizer(&config)?;
        (config, tokenizer, false)
    } else {
        opts.settings.validate()?;
        if run.config_path().exists() {
            return Err(already_holds_a_run(&run));
        }
        let tokenizer = data::fit_tokenizer_on_files(&opts.settings.data, &opts.data)?;
        let model = opts.settings.model.model_config(tokenizer.vocab_size());
        let config = RunConfig {
            format: RUN_FORMAT.into(),
            version: RUN_FORMAT_VERSION,
            settings: opts.settings.clone(),
            model,
            ngram_width: None,
            data: opts.data.clone(),
            data_digests: Vec::new(),
            backend: opts.backend.to_string(),
        };
        (config, tokenizer, true)
    };
    let settings = config.settings.clone();
    let n_devices = 1 + opts.extra_devices.len();
    if n_devices > settings.data.batch_size {
        return Err(TrainError::Settings(format!(
            "{} devices need at least {} sequences per batch (data.batch_size is {}): every device trains on a share of the batch",
            n_devices, n_devices, settings.data.batch_size
        )));
    }
    // A resumed run continues from its checkpoint; one killed before its first checkpoint
    // starts again from the beginning with its saved settings and tokenizer.
    let from_checkpoint = !fresh && Checkpoint::latest(&run)?.is_some();
    if !fresh && !from_checkpoint {
        eprintln!(
            "\"{}\" has no checkpoint yet (it stopped before its first one): starting it again from the beginning with its saved settings",
            run.root().display()
        );
    }
    let digests = config.data.digests()?;
    // On resume, the data must be what the run trained on so far.
    let changed = changed_data_files(&config.data_digests, &digests);
    if !changed.is_empty() && !opts.accept_changed_data {
        return Err(TrainError::Data(format!(
            "the data changed since the run started: {}: restore it, or pass --accept-changed-data to train on the new content (the current epoch restarts)",
            changed.join("; ")
        )));
    }
    let quiet = opts.progress == ProgressMode::Quiet;
    let prepared = data::prepare_files(&settings.data, &tokenizer, &config.data, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })?;
    let mut config = config;
    config.ngram_width = prepared.ngram_width;
    let digests_changed = config.data_digests != digests;
    config.data_digests = digests;
    if fresh {
        run.create()?;
        if _lock.is_none() {
            _lock = Some(RunLock::acquire(run.root())?);
            // Another new run may have claimed the folder since the check above.
            if run.config_path().exists() {
                return Err(already_holds_a_run(&run));
            }
        }
        run.save_tokenizer(&tokenizer)?;
        run.save_config(&config)?;
    }

    let inference_device = opts.device.clone();
    let device = opts.device.clone().autodiff();
    let devices: Vec<Device> = std::iter::once(device.clone())
        .chain(opts.extra_devices.iter().map(|d| d.clone().autodiff()))
        .collect();
    let seed = settings.train.seed;
    device.seed(seed);
    let mut optimizer = build_optimizer(&settings.optim);
    let (model, mut st, mut carried, averaged) = if from_checkpoint {
        let ck = Checkpoint::load(&run, &config.model, &device)?;
        optimizer = Checkpoint::restore_optimizer(optimizer, ck.optimizer)?;
        (ck.model, ck.trainer, ck.carried, ck.averaged)
    } else {
        (
            config.model.init(&device)?,
            TrainerState::default(),
            None,
            None,
        )
    };
    let mut model = model.with_regularisation(settings.regularisation.model_regularisation());
    let penalty = crate::activation_reg::ActivationPenalty::of(&settings.regularisation);
    // NT-ASGD's running mean (on the device without autodiff), once averaging has started.
    let mut averaged: Option<AveragedWeights> = match (averaged, st.asgd) {
        (Some(mean), Some(progress)) if progress.averaged_steps > 0 => Some(
            AveragedWeights::resumed(mean.valid(), progress.averaged_steps),
        ),
        _ => None,
    };

    let schedule = Schedule::new(settings.schedule.clone(), settings.optim.lr);
    let d = &settings.data;
    let width = prepared.ngram_width.unwrap_or(d.bptt);
    let per_epoch = capped(
        prepared.train.num_batches(d.batch_size, width),
        settings.train.max_batches,
    );
    if per_epoch == 0 {
        return Err(TrainError::Data(format!(
            "the training data is too small for one batch of {} sequences{}: use a smaller data.batch_size or more text",
            d.batch_size,
            if d.recipe == Recipe::Stream {
                format!(" of {} steps", d.bptt)
            } else {
                String::new()
            }
        )));
    }
    // Random BPTT: an epoch's window lengths, a function of (seed, epoch) alone.
    let window_lengths = |epoch: usize| {
        d.random_bptt.then(|| {
            let steps = crate::random_bptt::steps_per_column(&prepared.train, d.batch_size);
            crate::random_bptt::window_lengths(seed, epoch, steps, d.bptt)
        })
    };
    let batches_in = |lengths: &Option<Vec<usize>>| match lengths {
        Some(lengths) => capped(lengths.len(), settings.train.max_batches),
        None => per_epoch,
    };
    if from_checkpoint {
        // Where the checkpoint stands must still fit the data and the settings.
        let per_epoch = batches_in(&window_lengths(st.epochs_done + 1));
        let mut restart = Vec::new();
        if !changed.is_empty() {
            restart.push("the data changed".to_string());
        }
        if st.batches_done > per_epoch {
            restart.push(format!(
                "the checkpoint is at batch {} of epoch {} but an epoch now has {per_epoch} batches",
                st.batches_done,
                st.epochs_done + 1
            ));
        }
        if let Some(state) = &carried
            && state.batch_size() != d.batch_size
        {
            restart.push(format!(
                "the checkpoint carries the state of {} sequences but data.batch_size is {}",
                state.batch_size(),
                d.batch_size
            ));
        }
        if !restart.is_empty() && !opts.accept_changed_data {
            return Err(TrainError::RunDir(format!(
                "{}: restore the data and \"{}\", or pass --accept-changed-data to restart the epoch",
                restart.join("; "),
                run.config_path().display()
            )));
        }
        if !restart.is_empty() && (st.batches_done > 0 || carried.is_some()) {
            eprintln!(
                "{}: epoch {} restarts from its first batch",
                restart.join("; "),
                st.epochs_done + 1
            );
            st.batches_done = 0;
            st.epoch_loss_sum = 0.0;
            st.epoch_tokens = 0;
            carried = None;
            // The restart is on disk before config.json accepts the new data, so a crash in
            // between asks for --accept-changed-data again rather than resuming mid-epoch.
            Checkpoint::save_atomic_with_average(
                &run,
                &model,
                &optimizer,
                &st,
                None,
                averaged.as_ref().map(|a| &a.model),
            )?;
        }
    }
    if !fresh && digests_changed {
        run.save_config(&config)?;
    }
    let mut metrics = MetricsFile::open(&run.metrics_path(), (!fresh).then_some(st.global_step))?;
    metrics.set_sink(opts.on_event.take());
    let total_steps = (per_epoch * settings.train.epochs) as u64;
    let pad = tokenizer.pad_id();
    let started = Instant::now();
    let elapsed_before = st.elapsed_s;
    let steps_at_start = st.global_step;
    let mut last_train_loss = f64::NAN;
    let mut stopped_early = false;
    // The validation figures of the best epoch seen in this session.
    let mut best_valid_seen: Option<EvalResult> = None;
    let mut train_tokens = 0u64;
    let mut train_s = 0.0f64;
    let stop = opts.stop.clone();
    let stop_at = opts.stop_at_step;
    let stop_requested = |step: u64| {
        stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || stop_at.is_some_and(|n| step >= n)
    };
    let checkpoint_every = settings.train.checkpoint_every;
    let mut last_checkpoint = Instant::now();

    while st.epochs_done < settings.train.epochs {
        let epoch = st.epochs_done + 1;
        let shuffle = (settings.train.shuffle && d.recipe == Recipe::Ngram)
            .then(|| step_seed(seed, epoch as u64));
        let window_lengths = window_lengths(epoch);
        let per_epoch = batches_in(&window_lengths);
        let progress = Progress::new(
            opts.progress,
            epoch,
            settings.train.epochs,
            per_epoch,
            st.batches_done,
        );
        let mut window_loss = 0.0;
        let mut window_correct = 0.0;
        let mut window_tokens = 0u64;
        let mut window_start = Instant::now();
        let epoch_start = Instant::now();
        let batches = match &window_lengths {
            Some(lengths) => crate::random_bptt::batches(&prepared.train, d.batch_size, lengths)?,
            None => prepared.train.batches(d.batch_size, width, shuffle)?,
        };
        let batches = batches
            .skip(st.batches_done)
            .take(per_epoch.saturating_sub(st.batches_done));
        // Time spent writing mid-epoch checkpoints, kept out of `train_s`.
        let mut checkpoint_s = 0.0f64;
        for batch in batches {
            if opts.crash_at_step.is_some_and(|n| st.global_step >= n) {
                progress.finish();
                return Err(TrainError::RunDir(format!(
                    "simulated crash at step {} (TrainOptions::crash_at_step)",
                    st.global_step
                )));
            }
            if stop_requested(st.global_step) {
                progress.finish();
                st.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                let dir = Checkpoint::save_atomic_with_average(
                    &run,
                    &model,
                    &optimizer,
                    &st,
                    carried.as_ref(),
                    averaged.as_ref().map(|a| &a.model),
                )?;
                return Ok(TrainOutcome::Interrupted { checkpoint: dir });
            }
            device.seed(step_seed(seed, st.global_step));
            let lr = schedule.lr(
                &st.schedule,
                epoch,
                st.global_step as f64 / total_steps as f64,
            );
            // A random-length window's loss is a mean over its steps: scale the step with them.
            let lr = if d.random_bptt {
                lr * batch.width as f64 / d.bptt as f64
            } else {
                lr
            };
            let tokens = batch.targets.len() as u64;
            let (loss, correct, next_state, mut grads) = if devices.len() == 1 {
                let (loss, correct, next_state, grads) = forward_backward(
                    &model,
                    &batch,
                    d.recipe,
                    carried.take(),
                    pad,
                    penalty,
                    &device,
                );
                (
                    loss,
                    correct,
                    next_state,
                    GradientsParams::from_grads(grads, &model),
                )
            } else {
                crate::parallel::forward_backward_parallel(
                    &model,
                    &batch,
                    d.recipe,
                    carried.take(),
                    pad,
                    &devices,
                    &inference_device,
                    |replica, shard, state, device| {
                        forward_loss(replica, shard, d.recipe, state, pad, penalty, device)
                    },
                )
            };
            if !loss.is_finite() {
                progress.finish();
                let checkpoint =
                    Checkpoint::latest(&run)?.unwrap_or_else(|| run.root().to_path_buf());
                return Err(TrainError::NonFiniteLoss {
                    value: loss,
                    epoch,
                    batch: st.batches_done + 1,
                    checkpoint,
                });
            }
            if let Some(max) = settings.optim.clip {
                clip_global_norm(&model, &mut grads, max);
            }
            model = optimizer.step(lr, model, grads);
            if let Some(progress) = st.asgd.as_mut() {
                match averaged.as_mut() {
                    Some(mean) => mean.add(&model),
                    None => averaged = Some(AveragedWeights::first(&model)),
                }
                progress.averaged_steps = averaged.as_ref().map_or(0, |a| a.count);
            }
            carried = next_state.map(RecurrentState::detach);
            st.global_step += 1;
            st.batches_done += 1;
            st.epoch_loss_sum += loss * tokens as f64;
            st.epoch_tokens += tokens;
            st.tokens_seen += tokens;
            train_tokens += tokens;
            window_loss += loss * tokens as f64;
            window_correct += correct;
            window_tokens += tokens;
            // ETAs from this session's pace: the epoch's batches left and the run's steps left.
            let pace = started.elapsed().as_secs_f64() / (st.global_step - steps_at_start) as f64;
            let epoch_eta = pace * per_epoch.saturating_sub(st.batches_done) as f64;
            let run_eta = pace * total_steps.saturating_sub(st.global_step) as f64;
            let window_figures = || BatchFigures {
                loss: window_loss / window_tokens.max(1) as f64,
                tok_per_s: window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9),
                epoch_eta_s: epoch_eta,
                run_eta_s: run_eta,
            };
            progress.batch_done(window_figures);
            if st.batches_done % settings.train.log_interval == 0 || st.batches_done == per_epoch {
                let figures = window_figures();
                let elapsed = elapsed_before + started.elapsed().as_secs_f64();
                let event = MetricEvent::Train {
                    epoch,
                    batch: st.batches_done,
                    step: st.global_step,
                    loss: figures.loss,
                    ppl: figures.loss.exp(),
                    accuracy: window_correct / window_tokens.max(1) as f64,
                    lr,
                    tok_per_s: figures.tok_per_s,
                    elapsed_s: elapsed,
                    eta_s: run_eta,
                    tokens: Some(st.tokens_seen),
                };
                metrics.write(&event)?;
                progress.log(&format!(
                    "epoch {epoch}/{} step {}/{per_epoch} | lr {lr:.4e} | {}",
                    settings.train.epochs,
                    st.batches_done,
                    figures.describe()
                ));
                window_loss = 0.0;
                window_correct = 0.0;
                window_tokens = 0;
                window_start = Instant::now();
            }
            // Periodic checkpoint in the middle of the epoch (the epoch's last batch is followed
            // by the end-of-epoch checkpoint anyway): the same content the Ctrl-C path saves.
            let due = match checkpoint_every {
                CheckpointEvery::Steps(n) => st.global_step.is_multiple_of(n),
                CheckpointEvery::Seconds(s) => last_checkpoint.elapsed().as_secs() >= s,
                CheckpointEvery::Never => false,
            };
            if due && st.batches_done < per_epoch {
                let t = Instant::now();
                st.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                Checkpoint::save_atomic_with_average(
                    &run,
                    &model,
                    &optimizer,
                    &st,
                    carried.as_ref(),
                    averaged.as_ref().map(|a| &a.model),
                )?;
                checkpoint_s += t.elapsed().as_secs_f64();
                last_checkpoint = Instant::now();
            }
        }
        train_s += epoch_start.elapsed().as_secs_f64() - checkpoint_s;
        progress.finish();

        // End of epoch: validate, keep the best model, checkpoint.
        let train_loss = st.epoch_loss_sum / st.epoch_tokens.max(1) as f64;
        last_train_loss = train_loss;
        // Under NT-ASGD the averaged weights are the model that is evaluated and saved.
        let current = match &averaged {
            Some(mean) => mean.model.clone(),
            None => model.valid(),
        };
        let valid = match &prepared.valid {
            Some(split) => Some(evaluate(&current, split, d, width, pad, &inference_device)?),
            None => None,
        };
        if let Some(v) = &valid {
            if settings.optim.nt_asgd
                && st.asgd.is_none()
                && crate::asgd::should_switch(&st.valid_losses, v.loss, settings.optim.nonmono)
            {
                st.asgd = Some(AsgdProgress {
                    switched_after_epoch: epoch,
                    averaged_steps: 0,
                });
                if opts.progress != ProgressMode::Quiet {
                    eprintln!(
                        "NT-ASGD: validation loss has not improved on the best from before the last {} epochs; averaging the weights from epoch {} on",
                        settings.optim.nonmono,
                        epoch + 1
                    );
                }
            }
            st.valid_losses.push(v.loss);
        }
        schedule.end_epoch(&mut st.schedule, valid.as_ref().map(|v| v.loss));
        let improved = match (&valid, st.best_valid_loss) {
            (Some(v), Some(best)) => v.loss < best,
            (Some(_), None) => true,
            (None, _) => true,
        };
        if improved {
            if let Some(v) = &valid {
                st.best_valid_loss = Some(v.loss);
                best_valid_seen = Some(v.clone());
            }
            st.epochs_without_improvement = 0;
            crate::atomic::write_atomic(&run.model_path(), &model_bytes(&current)?)?;
        } else {
            st.epochs_without_improvement += 1;
        }
        st.epochs_done += 1;
        st.batches_done = 0;
        st.epoch_loss_sum = 0.0;
        st.epoch_tokens = 0;
        carried = None;
        st.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
        let lr_now = schedule.lr(
            &st.schedule,
            epoch + 1,
            st.global_step as f64 / total_steps as f64,
        );
        metrics.write(&MetricEvent::Epoch {
            epoch,
            step: st.global_step,
            train_loss,
            valid_loss: valid.as_ref().map(|v| v.loss),
            valid_ppl: valid.as_ref().map(|v| v.ppl),
            valid_accuracy: valid.as_ref().map(|v| v.accuracy),
            lr: lr_now,
            elapsed_s: st.elapsed_s,
            best: improved,
            tokens: Some(st.tokens_seen),
        })?;
        if settings.train.plot {
            let runs = [crate::plot::RunCurves::load(run.root())?];
            let opts = crate::plot::PlotOptions::default();
            crate::plot::write_plot(&crate::plot::curves_path(run.root()), &runs, &opts)?;
        }
        if opts.progress != ProgressMode::Quiet {
            let v = valid
                .as_ref()
                .map(|v| {
                    format!(
                        " | valid loss {:.4} ppl {:.2} acc {:.3}",
                        v.loss, v.ppl, v.accuracy
                    )
                })
                .unwrap_or_default();
            eprintln!(
                "epoch {epoch}/{} done | train loss {train_loss:.4}{v} | {}{}",
                settings.train.epochs,
                format_secs(st.elapsed_s),
                if improved && valid.is_some() {
                    " | best"
                } else {
                    ""
                }
            );
        }
        Checkpoint::save_atomic_with_average(
            &run,
            &model,
            &optimizer,
            &st,
            None,
            averaged.as_ref().map(|a| &a.model),
        )?;
        last_checkpoint = Instant::now();
        if let Some(patience) = settings.train.early_stopping
            && valid.is_some()
            && st.epochs_without_improvement >= patience
            && st.epochs_done < settings.train.epochs
        {
            stopped_early = true;
            if opts.progress != ProgressMode::Quiet {
                eprintln!("early stopping: validation loss has not improved for {patience} epochs");
            }
            break;
        }
    }

    // Final figures with the best model. Its validation figures are those of the epoch that
    // saved it when this session saw that epoch (the saved weights are the same); after a
    // resume that did not improve on them, the saved model is evaluated again.
    let best = run.load_model(&config, &inference_device)?;
    let best_valid = match (&prepared.valid, best_valid_seen) {
        (Some(_), Some(seen)) => Some(seen),
        (Some(split), None) => Some(evaluate(&best, split, d, width, pad, &inference_device)?),
        (None, _) => None,
    };
    let test = match &prepared.test {
        Some(split) => {
            let t = evaluate(&best, split, d, width, pad, &inference_device)?;
            metrics.write(&MetricEvent::Test {
                step: st.global_step,
                loss: t.loss,
                ppl: t.ppl,
                accuracy: t.accuracy,
                tokens: t.tokens,
            })?;
            Some(t)
        }
        None => None,
    };
    Ok(TrainOutcome::Finished(TrainSummary {
        epochs: st.epochs_done,
        best_valid,
        test,
        last_train_loss,
        elapsed_s: st.elapsed_s,
        stopped_early,
        train_tokens,
        train_s,
    }))
}

/// The run's `config.json` for a resume, its settings validated (an edited file must not reach
/// the loop), with the epoch count of `--epochs` when given.
fn load_config_for_resume(
    run: &RunDir,
    epochs_override: Option<usize>,
) -> Result<RunConfig, TrainError> {
    let mut config = run.load_config()?;
    let path = run.config_path();
    let invalid = |e: String| {
        TrainError::RunDir(format!(
            "\"{}\": {e}: fix the file or restore it",
            path.display()
        ))
    };
    config
        .settings
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    config
        .model
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(epochs) = epochs_override {
        if epochs == 0 {
            return Err(TrainError::Settings(
                "--epochs must be at least 1 (on --resume: the run's total number of epochs)"
                    .into(),
            ));
        }
        config.settings.train.epochs = epochs;
    }
    Ok(config)
}

fn already_holds_a_run(run: &RunDir) -> TrainError {
    TrainError::RunDir(format!(
        "\"{}\" already holds a run: pass --resume to continue it, or choose another --out",
        run.root().display()
    ))
}

fn capped(n: usize, max: usize) -> usize {
    if max == 0 { n } else { n.min(max) }
}

/// Seconds as `45s`, `2m30s` or `2h10m`, as the progress lines and summaries print them.
pub fn format_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Forward, loss and backward for one batch. Returns the loss value, the number of correct
/// predictions, the state to carry (stream recipe) and the gradients.
fn forward_backward(
    model: &LanguageModel,
    batch: &Batch,
    recipe: Recipe,
    state: Option<RecurrentState>,
    pad: Option<u32>,
    penalty: ActivationPenalty,
    device: &Device,
) -> (f64, f64, Option<RecurrentState>, burn::tensor::Gradients) {
    let (objective, figures, next) =
        forward_loss(model, batch, recipe, state, pad, penalty, device);
    let (value, correct) = loss_figures(figures);
    let grads = objective.backward();
    (value, correct, next, grads)
}

/// The loss value and the correct count of [`forward_loss`] (its `[2]` figures), read back in
/// one transfer (NaN and 0 when they cannot be read).
pub(crate) fn loss_figures(figures: Tensor<1>) -> (f64, f64) {
    let figures = figures
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_else(|_| vec![f32::NAN, 0.0]);
    (figures[0] as f64, figures[1] as f64)
}

/// Forward pass and loss for one batch: the objective to differentiate (the loss, a mean over
/// non-padding targets, plus the AR/TAR `penalty` when on; in the autodiff graph), the figures
/// `[loss, correct predictions]` (`[2]`, detached: the loss without the penalty) and the state
/// to carry.
fn forward_loss(
    model: &LanguageModel,
    batch: &Batch,
    recipe: Recipe,
    state: Option<RecurrentState>,
    pad: Option<u32>,
    penalty: ActivationPenalty,
    device: &Device,
) -> (Tensor<1>, Tensor<1>, Option<RecurrentState>) {
    let ids = data::ids_tensor(&batch.inputs, batch.batch, batch.width, device);
    let targets = data::targets_tensor(&batch.targets, device);
    let mut extra = None;
    let (hidden, next) = match recipe {
        Recipe::Ngram => {
            let positions = data::targets_tensor(&batch.positions, device);
            let (hidden, _) = model.hidden_at(ids, positions, None);
            (hidden, None)
        }
        Recipe::Stream if penalty.is_on() => {
            let (top, s) = model.regularised_hidden_states(ids, state);
            extra = penalty.penalty(&top);
            let [b, t, h] = top.dropped.dims();
            (top.dropped.reshape([b * t, h]), Some(s))
        }
        Recipe::Stream => {
            let (hidden, s) = model.hidden_states(ids, state);
            let [b, t, h] = hidden.dims();
            (hidden.reshape([b * t, h]), Some(s))
        }
    };
    let (loss, correct) = projected_cross_entropy(model, hidden, targets, pad);
    let figures = Tensor::cat(vec![loss.clone().detach(), correct], 0);
    let objective = match extra {
        Some(p) => loss + p,
        None => loss,
    };
    (objective, figures, next)
}
