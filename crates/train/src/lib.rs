//! Training, evaluation, scoring and generation for lstm-lm.
//!
//! [`train`] runs the loop for both dataset recipes (Keras-style n-gram prefixes and the
//! contiguous stream with truncated backpropagation through time) and writes a run folder
//! ([`RunDir`]) with crash-safe checkpoints that resume exactly. [`evaluate`], [`score_ids`]
//! and [`Generator`] use a trained run.
#![warn(missing_docs)]

pub mod allocator;
mod atomic;
mod beam;
mod checkpoint;
pub mod data;
pub mod decoding;
mod device;
mod error;
mod evaluate;
mod generate;
pub mod host_optim;
pub mod json_events;
mod logit_rules;
pub mod loss;
mod metrics;
pub mod optim;
mod parallel;
pub mod plot;
mod run_dir;
mod run_lock;
pub mod runs;
pub mod schedule;
mod session;
pub mod settings;
mod stop_text;
mod torch_export;
mod torch_import;
mod trainer;
mod vector_export;
mod word_search;

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
pub use run_dir::{
    DataFileDigest, DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir,
    changed_data_files, load_weights, model_bytes,
};
pub use run_lock::{LOCK_FILE, LOCK_FORMAT, LOCK_FORMAT_VERSION, RunLock};
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
