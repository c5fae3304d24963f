//! Training for lstm-lm: the loop, optimizers, schedules, checkpoints and metrics.
//!
//! [`train`] runs the loop for both dataset recipes (Keras-style n-gram prefixes and the
//! contiguous stream with truncated backpropagation through time) and writes a run folder
//! ([`RunDir`]) with crash-safe checkpoints that resume exactly. Using a trained run
//! (generation, scoring, evaluation, sentence vectors, export) lives in `lstm-lm-infer`, which
//! this crate builds on for validation and samples and re-exports, so a training program needs
//! one dependency.
//!
//! Train in a few lines, then generate, score and embed from the run folder:
//!
//! ```
//! use lstm_lm_model::burn::tensor::Device;
//! use lstm_lm_train::{
//!     DataFiles, EmbedOptions, GenerateOptions, LoadedRun, TrainOptions, TrainOutcome,
//!     TrainSettings, train,
//! };
//!
//! let dir = std::env::temp_dir().join(format!("lstm-lm-train-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let corpus = dir.join("corpus.txt");
//! std::fs::write(&corpus, "the keeper lit the lamp\nthe lamp burned all night\n").unwrap();
//! let settings = TrainSettings::preset("seed")
//!     .and_then(|s| s.set("train.epochs=3"))
//!     .and_then(|s| s.set("model.hidden_size=16"))
//!     .unwrap();
//! // On flex (the default CPU backend), quietly; the fields of `TrainOptions` say the rest.
//! let options = TrainOptions::new(settings, DataFiles::train_only(corpus), dir.join("run"));
//! let outcome = train(options).unwrap();
//! assert!(matches!(outcome, TrainOutcome::Finished(s) if s.epochs == 3));
//!
//! let run = LoadedRun::load(&dir.join("run"), Device::flex()).unwrap();
//! let opts = GenerateOptions { max_tokens: 5, ..GenerateOptions::default() };
//! let generated = run.generate_with("the keeper", &opts, |_token| Ok(())).unwrap();
//! assert_eq!(generated.ids.len(), 5);
//! let score = run.score("the lamp burned").unwrap();
//! assert!(score.total_logprob < 0.0 && score.ppl.is_finite());
//! let vectors = run.embed_many(&["the lamp".to_string()], &EmbedOptions::default());
//! assert_eq!(vectors[0].as_ref().unwrap().len(), 16);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![warn(missing_docs)]

pub mod activation_reg;
pub mod allocator;
pub mod asgd;
mod atomic;
mod checkpoint;
mod error;
pub mod host_optim;
pub mod json_events;
mod metrics;
pub mod optim;
mod parallel;
pub mod plot;
pub mod random_bptt;
mod run_lock;
pub mod runs;
pub mod schedule;
mod trainer;

// The inference layer's modules, under the paths the trainer's code has always used.
pub use lstm_lm_infer::{
    cache_pointer, data, decoding, dynamic_eval, evaluate, loss, run_dir, settings,
};

pub use atomic::write_atomic;
pub use checkpoint::{
    Checkpoint, LoadedCheckpoint, POINTER_FORMAT, POINTER_FORMAT_VERSION, STATE_FORMAT,
    STATE_FORMAT_VERSION, TRAINER_FORMAT, TRAINER_FORMAT_VERSION, TrainerState,
};
pub use error::TrainError;
pub use lstm_lm_infer::{
    AdaptedEval, CachedTextScore, Conversation, DataFileDigest, DataFiles, EmbedOptions,
    EvalResult, Figures, GenerateOptions, GeneratedToken, Generation, Generator, GeneratorState,
    GridPoint, IMPORTED_BACKEND, ImportOptions, InferError, LayerChoice, LoadedNgramRun, LoadedRun,
    MixtureResult, NgramEvalResult, Pooling, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir,
    SamplingConfig, StopReason, StopText, StreamScores, TORCH_EXPORT_FORMAT,
    TORCH_EXPORT_FORMAT_VERSION, TextScore, TrainSettings, Tuning, VectorExport, WordNeighbor,
    WordSearch, apply_repetition_penalty, best_point, changed_data_files, check_same_tokenizer,
    draw, escape_token, evaluate_adapted, evaluate_mixture, export_projector, export_safetensors,
    export_word2vec, gradient_stats_file, import_torch, load_weights, log_prob_of, model_bytes,
    no_repeat_ngram_bans, on_pool, score_ids, score_stream, setup_device, setup_threads,
    stream_ids, torch_state_dict_bytes, tune_cache, tune_dynamic, word_id,
};
pub use metrics::{
    EventSink, METRICS_FORMAT, METRICS_FORMAT_VERSION, MetricEvent, MetricsFile, ProgressMode,
    read_events,
};
pub use run_lock::{LOCK_FILE, LOCK_FORMAT, LOCK_FORMAT_VERSION, RunLock};
pub use trainer::{TrainOptions, TrainOutcome, TrainSummary, format_secs, train};
