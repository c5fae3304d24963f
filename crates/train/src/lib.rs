//! Training, evaluation, scoring and generation for lstm-lm.
//!
//! [`train`] runs the loop for both dataset recipes (Keras-style n-gram prefixes and the
//! contiguous stream with truncated backpropagation through time) and writes a run folder
//! ([`RunDir`]) with crash-safe checkpoints that resume exactly. [`evaluate`], [`score_ids`]
//! and [`Generator`] use a trained run.
#![warn(missing_docs)]

pub mod allocator;
mod atomic;
mod checkpoint;
pub mod data;
mod device;
mod error;
mod evaluate;
mod generate;
pub mod host_optim;
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
mod session;
pub mod settings;
mod trainer;

pub use atomic::write_atomic;
pub use checkpoint::{
    Checkpoint, LoadedCheckpoint, POINTER_FORMAT, POINTER_FORMAT_VERSION, STATE_FORMAT,
    STATE_FORMAT_VERSION, TRAINER_FORMAT, TRAINER_FORMAT_VERSION, TrainerState,
};
pub use device::{on_pool, setup_device, setup_threads};
pub use error::TrainError;
pub use evaluate::{EvalResult, evaluate};
pub use generate::{Generator, SamplingConfig, score_ids};
pub use metrics::{
    METRICS_FORMAT, METRICS_FORMAT_VERSION, MetricEvent, MetricsFile, ProgressMode, read_events,
};
pub use mixture::{MixtureResult, check_same_tokenizer, evaluate_mixture};
pub use ngram_lm::{LoadedNgramRun, NgramEvalResult, draw};
pub use run_dir::{
    DataFileDigest, DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir,
    changed_data_files, load_weights, model_bytes,
};
pub use run_lock::{LOCK_FILE, LOCK_FORMAT, LOCK_FORMAT_VERSION, RunLock};
pub use session::{LoadedRun, TextScore};
pub use settings::TrainSettings;
pub use trainer::{TrainOptions, TrainOutcome, TrainSummary, format_secs, train};
