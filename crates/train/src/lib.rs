//! Training, evaluation, scoring and generation for lstm-lm.
//!
//! [`train`] runs the loop for both dataset recipes (Keras-style n-gram prefixes and the
//! contiguous stream with truncated backpropagation through time) and writes a run folder
//! ([`RunDir`]) with crash-safe checkpoints that resume exactly. [`LoadedRun`] uses a trained
//! run: generation with every control ([`GenerateOptions`], [`Conversation`]), scoring,
//! evaluation and sentence vectors.
//!
//! Train in a few lines, then generate, score and embed from the run folder:
//!
//! ```
//! use lstm_lm_model::BackendKind;
//! use lstm_lm_model::burn::tensor::Device;
//! use lstm_lm_train::{
//!     DataFiles, EmbedOptions, GenerateOptions, LoadedRun, ProgressMode, TrainOptions,
//!     TrainOutcome, TrainSettings, train,
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
//! let outcome = train(TrainOptions {
//!     settings,
//!     data: DataFiles { train: vec![corpus], valid: None, test: None },
//!     out: dir.join("run"),
//!     backend: BackendKind::Flex,
//!     device: Device::flex(),
//!     extra_devices: Vec::new(),
//!     resume: false,
//!     epochs_override: None,
//!     accept_changed_data: false,
//!     stop: None,
//!     progress: ProgressMode::Quiet,
//!     on_event: None,
//!     stop_at_step: None,
//!     crash_at_step: None,
//! })
//! .unwrap();
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

mod adaptive_eval;
pub mod allocator;
mod atomic;
mod batch_score;
mod beam;
pub mod cache_pointer;
mod checkpoint;
pub mod data;
pub mod decoding;
mod device;
pub mod dynamic_eval;
mod error;
mod evaluate;
mod generate;
pub mod host_optim;
pub mod json_events;
mod logit_rules;
pub mod loss;
mod metrics;
mod mixture;
mod ngram_lm;
pub mod optim;
mod parallel;
pub mod plot;
mod run_dir;
mod run_lock;
pub mod runs;
pub mod schedule;
mod sentence_vectors;
mod session;
pub mod settings;
mod stop_text;
mod text_batches;
mod torch_export;
mod torch_import;
mod trainer;
mod vector_export;
mod word_search;

pub use adaptive_eval::{
    AdaptedEval, CachedTextScore, Figures, GridPoint, StreamScores, Tuning, best_point,
    evaluate_adapted, gradient_stats_file, score_stream, stream_ids, tune_cache, tune_dynamic,
};
pub use atomic::write_atomic;
pub use checkpoint::{
    Checkpoint, LoadedCheckpoint, POINTER_FORMAT, POINTER_FORMAT_VERSION, STATE_FORMAT,
    STATE_FORMAT_VERSION, TRAINER_FORMAT, TRAINER_FORMAT_VERSION, TrainerState,
};
pub use decoding::{Conversation, GenerateOptions, GeneratedToken, Generation, StopReason};
pub use device::{on_pool, setup_device, setup_threads};
pub use error::TrainError;
pub use evaluate::{EvalResult, evaluate};
pub use generate::{Generator, GeneratorState, SamplingConfig, score_ids};
pub use logit_rules::{apply_repetition_penalty, log_prob_of, no_repeat_ngram_bans};
pub use metrics::{
    EventSink, METRICS_FORMAT, METRICS_FORMAT_VERSION, MetricEvent, MetricsFile, ProgressMode,
    read_events,
};
pub use mixture::{MixtureResult, check_same_tokenizer, evaluate_mixture};
pub use ngram_lm::{LoadedNgramRun, NgramEvalResult, draw};
pub use run_dir::{
    DataFileDigest, DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir,
    changed_data_files, load_weights, model_bytes,
};
pub use run_lock::{LOCK_FILE, LOCK_FORMAT, LOCK_FORMAT_VERSION, RunLock};
pub use sentence_vectors::{EmbedOptions, LayerChoice, Pooling};
pub use session::{LoadedRun, TextScore};
pub use settings::TrainSettings;
pub use stop_text::StopText;
pub use torch_export::{
    TORCH_EXPORT_FORMAT, TORCH_EXPORT_FORMAT_VERSION, export_safetensors, torch_state_dict_bytes,
};
pub use torch_import::{ImportOptions, import_torch};
pub use trainer::{TrainOptions, TrainOutcome, TrainSummary, format_secs, train};
pub use vector_export::{VectorExport, escape_token, export_projector, export_word2vec};
pub use word_search::{WordNeighbor, WordSearch, word_id};
